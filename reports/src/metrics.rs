//! Per-task metrics: seed means, the selection rule, outcome (beat / match / lose) and speedup
//! over the LR-tuned Adam envelope (learned_optimization's normalizer construction).

use beatmatch_core::RunRecord;

/// Mean and sample standard deviation (ddof 1; 0 for one value) of final losses over seeds.
/// Any non-finite value makes the mean +∞ (a diverged seed counts as +∞).
pub fn seed_stats(losses: &[f64]) -> (f64, f64) {
    if losses.is_empty() || losses.iter().any(|l| !l.is_finite()) {
        return (f64::INFINITY, f64::NAN);
    }
    let n = losses.len() as f64;
    let mean = losses.iter().sum::<f64>() / n;
    let std = if losses.len() > 1 { (losses.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (mean, std)
}

/// Index of the configuration with the lowest seed mean (NaN and +∞ lose; ties go to the first).
pub fn select_tuned(means: &[f64]) -> Option<usize> {
    let key = |m: f64| if m.is_nan() { f64::INFINITY } else { m };
    (0..means.len()).min_by(|&a, &b| key(means[a]).total_cmp(&key(means[b])))
}

/// Outcome of the candidate against the tuned baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Candidate's loss lower than tuned by more than the tolerance.
    Beat,
    /// Within the tolerance.
    Match,
    /// Worse, or diverged.
    Lose,
}

impl Outcome {
    /// Lower-case name used in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Beat => "beat",
            Outcome::Match => "match",
            Outcome::Lose => "lose",
        }
    }
    /// Beat or match: counts towards the win rate.
    pub fn is_win(self) -> bool {
        self != Outcome::Lose
    }
}

/// Tolerance for "match": the tuned configuration's seed standard deviation, floored at
/// 1e-4 × |tuned| (so a single seed or identical seeds still allow float-level ties).
pub fn tolerance(tuned_mean: f64, tuned_std: f64) -> f64 {
    let floor = 1e-4 * tuned_mean.abs();
    if tuned_std.is_finite() {
        tuned_std.max(floor)
    } else {
        floor
    }
}

/// beat if cand < tuned − tol; match if |cand − tuned| ≤ tol; lose otherwise. A diverged
/// candidate loses; a finite candidate beats a tuned baseline whose every config diverged.
pub fn outcome(candidate: f64, tuned: f64, tol: f64) -> Outcome {
    if !candidate.is_finite() {
        return Outcome::Lose;
    }
    if !tuned.is_finite() || candidate < tuned - tol {
        Outcome::Beat
    } else if (candidate - tuned).abs() <= tol {
        Outcome::Match
    } else {
        Outcome::Lose
    }
}

/// The LR-tuned envelope: per measured step, the minimum over configurations of the seed-mean
/// train loss, made non-increasing. `curves[c][s]` = seed runs of config `c`.
/// Returns (step, envelope loss) ascending by step, over the steps every run measured.
pub fn envelope(configs: &[Vec<&RunRecord>]) -> Vec<(u64, f64)> {
    let Some(first) = configs.iter().flat_map(|c| c.first()).next() else { return vec![] };
    let mut out = Vec::new();
    let mut best = f64::INFINITY;
    for point in &first.curve {
        let s = point.step;
        let mut step_min = f64::INFINITY;
        let mut all_measured = true;
        for runs in configs {
            let losses: Option<Vec<f64>> = runs.iter().map(|r| r.train_loss_at(s)).collect();
            match losses {
                Some(l) => step_min = step_min.min(seed_stats(&l).0),
                None => all_measured = false,
            }
        }
        if !all_measured && step_min.is_infinite() {
            continue;
        }
        best = best.min(step_min);
        out.push((s, best));
    }
    out
}

/// Speedup of reaching `loss` against an envelope, relative to `budget` steps, capped at `cap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Speedup {
    /// (first envelope step reaching `loss`) / budget, or `cap` if not reached by cap × budget.
    pub value: f64,
    /// True when the envelope never reached the loss within cap × budget ("≥ cap").
    pub at_cap: bool,
}

/// Speedup = (first step at which the envelope reaches `loss`) / `budget`.
/// A candidate that reaches the loss the envelope starts at (e.g. diverged: +∞) gets 0.
pub fn speedup(env: &[(u64, f64)], loss: f64, budget: u64, cap: f64) -> Speedup {
    let limit = (cap * budget as f64) as u64;
    for &(s, l) in env {
        if s > limit {
            break;
        }
        if l <= loss {
            return Speedup { value: s as f64 / budget as f64, at_cap: false };
        }
    }
    Speedup { value: cap, at_cap: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beatmatch_core::{CurvePoint, OptimizerSpec, RunKey, RunStatus};

    fn rec(losses: &[(u64, f32)], diverged_at: Option<u64>) -> RunRecord {
        let key = RunKey {
            problem_id: "p".into(),
            problem_hash: "h".into(),
            optimizer: OptimizerSpec::new("toy"),
            optimizer_hash: "o".into(),
            seed: 0,
            steps: 0,
            horizon: 0,
            code_version: "v".into(),
            device: "cpu".into(),
        };
        RunRecord {
            schema_version: 1,
            hash: String::new(),
            key,
            params: 1,
            status: diverged_at.map_or(RunStatus::Finished, |step| RunStatus::Diverged { step, reason: String::new() }),
            curve: losses.iter().map(|&(step, l)| CurvePoint { step, train_loss: Some(l) }).collect(),
            evals: vec![],
            worker_versions: Default::default(),
        }
    }

    #[test]
    fn selection_counts_divergence_and_nan_as_infinite() {
        assert_eq!(select_tuned(&[0.5, f64::NAN, 0.3, f64::INFINITY, 0.3]), Some(2));
        assert_eq!(seed_stats(&[1.0, f64::INFINITY]).0, f64::INFINITY);
        let (m, s) = seed_stats(&[1.0, 3.0]);
        assert_eq!((m, s), (2.0, 2f64.sqrt()));
    }

    #[test]
    fn outcome_rules_on_hand_made_numbers() {
        let tol = tolerance(1.0, 0.05);
        assert_eq!(tol, 0.05);
        assert_eq!(outcome(0.94, 1.0, tol), Outcome::Beat);
        assert_eq!(outcome(0.96, 1.0, tol), Outcome::Match);
        assert_eq!(outcome(1.04, 1.0, tol), Outcome::Match);
        assert_eq!(outcome(1.06, 1.0, tol), Outcome::Lose);
        assert_eq!(outcome(f64::INFINITY, f64::INFINITY, 0.0), Outcome::Lose);
        assert_eq!(outcome(5.0, f64::INFINITY, 0.0), Outcome::Beat);
        assert_eq!(tolerance(2.0, 0.0), 2e-4);
        assert_eq!(tolerance(2.0, f64::NAN), 2e-4);
    }

    #[test]
    fn envelope_is_the_running_min_of_the_best_config() {
        // Config A: fast then flat; config B: slow but lower; B's second seed diverges at step 30.
        let a = [rec(&[(0, 2.0), (10, 1.0), (20, 0.9), (30, 0.9), (40, 0.9)], None)];
        let b = [rec(&[(0, 2.0), (10, 1.5), (20, 1.0), (30, 0.5), (40, 0.4)], None), rec(&[(0, 2.0), (10, 1.5), (20, 0.8), (30, 0.5), (40, 0.4)], None)];
        // Curves hold f32 losses; compare against the same values widened to f64.
        let f = |x: f32| f64::from(x);
        let env = envelope(&[a.iter().collect(), b.iter().collect()]);
        assert_eq!(env, vec![(0, 2.0), (10, 1.0), (20, f(0.9)), (30, 0.5), (40, f(0.4))]);
        let b_div = [b[0].clone(), rec(&[(0, 2.0), (10, 1.5), (20, 0.8)], Some(30))];
        let env = envelope(&[a.iter().collect(), b_div.iter().collect()]);
        assert_eq!(env, vec![(0, 2.0), (10, 1.0), (20, f(0.9)), (30, f(0.9)), (40, f(0.9))]);
    }

    #[test]
    fn speedup_reads_the_first_step_reaching_the_loss() {
        let env = vec![(0, 2.0), (10, 1.0), (20, 0.9), (30, 0.5), (40, 0.4)];
        assert_eq!(speedup(&env, 0.9, 10, 4.0), Speedup { value: 2.0, at_cap: false });
        assert_eq!(speedup(&env, 1.0, 20, 4.0), Speedup { value: 0.5, at_cap: false });
        assert_eq!(speedup(&env, 0.1, 10, 4.0), Speedup { value: 4.0, at_cap: true });
        // Reached only at step 40 > cap × budget = 30.
        assert_eq!(speedup(&env, 0.4, 10, 3.0), Speedup { value: 3.0, at_cap: true });
        assert_eq!(speedup(&env, f64::INFINITY, 10, 4.0).value, 0.0);
    }
}
