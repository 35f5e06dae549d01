//! Interquartile mean (Agarwal et al. 2021, rliable): the mean of the middle 50%, cutting
//! ⌊n/4⌋ values from each end (scipy's `trim_mean(x, 0.25)`), with a bootstrap CI.

use super::bootstrap::{percentile_ci, Estimate};

/// Interquartile mean of `values` (NaN for none).
pub fn iqm(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.to_vec();
    v.sort_by(f64::total_cmp);
    let cut = v.len() / 4;
    let mid = &v[cut..v.len() - cut];
    if mid.is_empty() {
        return f64::NAN;
    }
    mid.iter().sum::<f64>() / mid.len() as f64
}

/// IQM with a percentile-bootstrap CI over units.
pub fn iqm_ci(values: &[f64], level: f64, resamples: usize, seed: u64) -> Estimate {
    percentile_ci(values, iqm, level, resamples, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_examples() {
        assert_eq!(iqm(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]), 4.5);
        // An outlier beyond the quartiles does not move it.
        assert_eq!(iqm(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 1000.0]), 4.5);
        assert_eq!(iqm(&[2.0, 4.0, 9.0]), 5.0);
        let e = iqm_ci(&[1.0; 12], 0.95, 200, 0);
        assert_eq!((e.point, e.lower, e.upper), (1.0, 1.0, 1.0));
    }
}
