//! Performance profiles (Dolan & Moré 2002; AlgoPerf's scoring): for each optimizer, the
//! fraction of tasks on which its final loss is within a factor τ of the best optimizer's.

/// ρ(τ) for each optimizer at each τ. `losses[task][optimizer]`, lower is better; a non-finite
/// loss (diverged) never counts as within any τ.
pub fn performance_profile(losses: &[Vec<f64>], taus: &[f64]) -> Vec<Vec<f64>> {
    let n_opt = losses.first().map_or(0, Vec::len);
    let ratios: Vec<Vec<f64>> = losses
        .iter()
        .map(|row| {
            let best = row.iter().copied().filter(|x| x.is_finite()).fold(f64::INFINITY, f64::min);
            row.iter()
                .map(|&x| {
                    if x.is_finite() && best.is_finite() && best > 0.0 {
                        x / best
                    } else if x == best {
                        1.0
                    } else {
                        f64::INFINITY
                    }
                })
                .collect()
        })
        .collect();
    (0..n_opt).map(|o| taus.iter().map(|&t| ratios.iter().filter(|r| r[o] <= t).count() as f64 / losses.len().max(1) as f64).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_example() {
        // Three tasks, two optimizers. A is best on tasks 0 and 1; B is 1.5× worse on task 0,
        // best on task 2 (where A is 3× worse), and diverged on task 1.
        let losses = vec![vec![1.0, 1.5], vec![2.0, f64::INFINITY], vec![3.0, 1.0]];
        let p = performance_profile(&losses, &[1.0, 2.0, 4.0]);
        assert_eq!(p[0], vec![2.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(p[1], vec![1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
    }
}
