//! Performance profiles (Dolan & Moré 2002; AlgoPerf's scoring): for each optimizer, the
//! fraction of tasks on which its final loss is within a factor τ of the best optimizer's.

/// Each task's ratio of each optimizer's loss to the best (finite) loss on that task;
/// `losses[task][optimizer]`. A non-finite loss (diverged) has ratio +∞.
fn ratios(losses: &[Vec<f64>]) -> Vec<Vec<f64>> {
    losses
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
        .collect()
}

/// ρ(τ) for each optimizer at each τ. `losses[task][optimizer]`, lower is better; a non-finite
/// loss (diverged) never counts as within any τ.
pub fn performance_profile(losses: &[Vec<f64>], taus: &[f64]) -> Vec<Vec<f64>> {
    let n_opt = losses.first().map_or(0, Vec::len);
    let ratios = ratios(losses);
    (0..n_opt).map(|o| taus.iter().map(|&t| ratios.iter().filter(|r| r[o] <= t).count() as f64 / losses.len().max(1) as f64).collect()).collect()
}

/// Each optimizer's ρ(τ) integrated over τ ∈ [1, `tau_max`] and divided by `tau_max − 1`
/// (AlgoPerf's benchmark score), exactly: ρ is a step function, and a task with ratio r
/// contributes max(0, tau_max − max(r, 1)) / (tau_max − 1) / tasks.
pub fn integrated_profile(losses: &[Vec<f64>], tau_max: f64) -> Vec<f64> {
    let n_opt = losses.first().map_or(0, Vec::len);
    let ratios = ratios(losses);
    let tasks = losses.len().max(1) as f64;
    (0..n_opt).map(|o| ratios.iter().map(|r| (tau_max - r[o].max(1.0)).max(0.0)).sum::<f64>() / (tau_max - 1.0) / tasks).collect()
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

    /// The exact integral against a fine Riemann sum of the profile itself.
    #[test]
    fn the_integrated_profile_is_the_profiles_integral() {
        let losses = vec![vec![1.0, 1.5, 0.9], vec![2.0, f64::INFINITY, 2.5], vec![3.0, 1.0, 12.0], vec![0.2, 0.3, 0.25]];
        let exact = integrated_profile(&losses, 4.0);
        let n = 300_000;
        let taus: Vec<f64> = (0..n).map(|i| 1.0 + 3.0 * (i as f64 + 0.5) / n as f64).collect();
        let p = performance_profile(&losses, &taus);
        for (o, e) in exact.iter().enumerate() {
            let riemann = p[o].iter().sum::<f64>() / n as f64;
            assert!((e - riemann).abs() < 1e-4, "optimizer {o}: exact {e} vs Riemann {riemann}");
        }
        // Best on every task scores 1; optimizer 0: ratios 1/0.9, 1, 3, 1 → (4−1.111+3+1+3)/3/4.
        assert!((exact[0] - (4.0 - 1.0 / 0.9 + 3.0 + 1.0 + 3.0) / 12.0).abs() < 1e-12);
    }
}
