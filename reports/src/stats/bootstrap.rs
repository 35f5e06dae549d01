//! Percentile bootstrap confidence intervals (resampling units with replacement).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A point estimate with a confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The statistic on the original sample.
    pub point: f64,
    /// Lower bound of the interval.
    pub lower: f64,
    /// Upper bound of the interval.
    pub upper: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
}

/// The `q`-quantile of sorted bootstrap statistics (floor index, as the percentile method).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64).floor() as usize).min(sorted.len() - 1)]
}

/// Percentile bootstrap CI of `statistic` over `values` (units resampled with replacement),
/// with `resamples` resamples from `seed`.
pub fn percentile_ci(values: &[f64], statistic: impl Fn(&[f64]) -> f64, level: f64, resamples: usize, seed: u64) -> Estimate {
    let point = statistic(values);
    if values.is_empty() {
        return Estimate { point, lower: f64::NAN, upper: f64::NAN, level };
    }
    let n = values.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut buf = vec![0f64; n];
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            buf.iter_mut().for_each(|b| *b = values[rng.random_range(0..n)]);
            statistic(&buf)
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let alpha = (1.0 - level) / 2.0;
    Estimate { point, lower: percentile(&stats, alpha), upper: percentile(&stats, 1.0 - alpha), level }
}

/// Percentile bootstrap CI of the mean of `values` with `resamples` resamples from `seed`.
pub fn mean_ci(values: &[f64], level: f64, resamples: usize, seed: u64) -> Estimate {
    let mean = |xs: &[f64]| if xs.is_empty() { f64::NAN } else { xs.iter().sum::<f64>() / xs.len() as f64 };
    percentile_ci(values, mean, level, resamples, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_data_gives_a_degenerate_interval() {
        let e = mean_ci(&[1.0; 10], 0.95, 500, 0);
        assert_eq!((e.point, e.lower, e.upper), (1.0, 1.0, 1.0));
    }

    #[test]
    fn covers_the_true_rate_about_95_percent_of_the_time() {
        // Bernoulli(0.7) samples of 60 tasks; the 95% CI should cover 0.7 in ~95% of trials.
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let trials = 300;
        let mut covered = 0;
        for t in 0..trials {
            let xs: Vec<f64> = (0..60).map(|_| if rng.random::<f64>() < 0.7 { 1.0 } else { 0.0 }).collect();
            let e = mean_ci(&xs, 0.95, 1000, t);
            if e.lower <= 0.7 && 0.7 <= e.upper {
                covered += 1;
            }
        }
        let rate = covered as f64 / trials as f64;
        assert!((0.90..=0.98).contains(&rate), "coverage {rate}");
    }
}
