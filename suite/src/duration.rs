//! Durations for people: `1 h 05 min`, `12 min 30 s`, `45 s` — in progress lines, plans and
//! logs alike.

/// `1 h 05 min`, `12 min 30 s`, `45 s`.
pub fn human(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        3600..=172_799 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{:.1} days", seconds / 86400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(45.2), "45 s");
        assert_eq!(human(750.0), "12 min 30 s");
        assert_eq!(human(3900.0), "1 h 05 min");
        assert_eq!(human(3.0 * 86400.0), "3.0 days");
    }
}
