//! The exact two-sided sign test for paired differences (ties, i.e. zero differences, dropped).

/// Result of a sign test.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignTest {
    /// Positive differences.
    pub positive: usize,
    /// Negative differences.
    pub negative: usize,
    /// Zero differences (dropped).
    pub ties: usize,
    /// Two-sided p-value under H0: P(positive) = ½.
    pub p_value: f64,
}

/// ln C(n, k).
fn ln_choose(n: usize, k: usize) -> f64 {
    let lg = |x: usize| (1..=x).map(|i| (i as f64).ln()).sum::<f64>();
    lg(n) - lg(k) - lg(n - k)
}

/// Two-sided exact binomial p-value of `k` successes in `n` fair trials:
/// `min(1, 2·P(X ≤ min(k, n − k)))`.
pub fn binomial_two_sided(k: usize, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let lo = k.min(n - k);
    let tail: f64 = (0..=lo).map(|i| (ln_choose(n, i) - n as f64 * std::f64::consts::LN_2).exp()).sum();
    (2.0 * tail).min(1.0)
}

/// Sign test of `differences` (e.g. per-task loss of B minus loss of A).
pub fn sign_test(differences: &[f64]) -> SignTest {
    let positive = differences.iter().filter(|&&d| d > 0.0).count();
    let negative = differences.iter().filter(|&&d| d < 0.0).count();
    let ties = differences.len() - positive - negative;
    SignTest { positive, negative, ties, p_value: binomial_two_sided(positive, positive + negative) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_values() {
        // 1 of 10 positive: 2·(C(10,0) + C(10,1))/2¹⁰ = 22/1024.
        assert!((binomial_two_sided(1, 10) - 22.0 / 1024.0).abs() < 1e-12);
        // 5 of 10: p = 1.
        assert_eq!(binomial_two_sided(5, 10), 1.0);
        // 0 of 5: 2/32.
        assert!((binomial_two_sided(0, 5) - 0.0625).abs() < 1e-12);
        let t = sign_test(&[1.0, -2.0, 0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!((t.positive, t.negative, t.ties), (9, 1, 1));
        assert!((t.p_value - 22.0 / 1024.0).abs() < 1e-12);
    }
}
