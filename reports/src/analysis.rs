//! From the study manifest and its records to one row per task.

use crate::metrics::{envelope, outcome, seed_stats, select_tuned, speedup, tolerance, Outcome, Speedup};
use anyhow::{Context, Result};
use beatmatch_core::{ArmRole, RunRecord, Split, Store};
use std::path::Path;

/// One arm's result on one task.
#[derive(Clone, Debug)]
pub struct ArmResult {
    /// Index of the tuned (selected) configuration.
    pub tuned_config: usize,
    /// Seed-mean final train loss of the tuned configuration (+∞ if it diverged).
    pub mean: f64,
    /// Seed standard deviation of that configuration's final train loss.
    pub std: f64,
    /// Seed-mean held-out loss of the tuned configuration at the budget.
    pub eval_loss: f64,
    /// Seed-mean held-out accuracy of the tuned configuration at the budget.
    pub eval_accuracy: f64,
    /// Diverged runs among all of this arm's runs on the task.
    pub diverged_runs: usize,
    /// Total runs of this arm on the task.
    pub runs: usize,
    /// Speedup over the LR-tuned Adam envelope.
    pub speedup: Option<Speedup>,
    /// Per-seed final train losses of the tuned configuration (+∞ for diverged seeds).
    pub finals: Vec<f64>,
    /// Mean wall-clock seconds per step of the tuned configuration's runs, where timed.
    pub seconds_per_step: Option<f64>,
    /// Hashes of the records behind this result.
    pub records: Vec<String>,
}

/// One task's row.
#[derive(Clone, Debug)]
pub struct TaskRow {
    /// Task id.
    pub id: String,
    /// Trainable parameters.
    pub params: u64,
    /// Step budget.
    pub steps: u64,
    /// Meta-train or meta-test side.
    pub split: Split,
    /// Per arm, in study order.
    pub arms: Vec<ArmResult>,
    /// Index of the baseline arm whose tuned config is best (the "tuned baseline").
    pub best_baseline: usize,
    /// Tolerance used for "match".
    pub tolerance: f64,
    /// Candidate against the best tuned baseline.
    pub outcome: Outcome,
    /// Index of the candidate arm.
    pub candidate: usize,
    /// Index of the speedup-reference arm (LR-tuned Adam), if any.
    pub reference: Option<usize>,
}

#[cfg(test)]
impl ArmResult {
    /// An arm tuned to its first configuration with these seed finals (mean and std as
    /// [`analyse`] computes them), for tests.
    pub(crate) fn of_finals(finals: &[f64]) -> Self {
        let (mean, std) = seed_stats(finals);
        ArmResult {
            tuned_config: 0,
            mean,
            std,
            eval_loss: f64::NAN,
            eval_accuracy: f64::NAN,
            diverged_runs: 0,
            runs: finals.len(),
            speedup: None,
            finals: finals.to_vec(),
            seconds_per_step: None,
            records: Vec::new(),
        }
    }
}

impl TaskRow {
    /// Step speedup divided by the candidate's per-step cost relative to the reference
    /// (LR-tuned Adam) on this task: the speedup in wall-clock time.
    pub fn wall_clock_speedup(&self) -> Option<f64> {
        let c = &self.arms[self.candidate];
        let r = &self.arms[self.reference?];
        Some(c.speedup?.value / (c.seconds_per_step? / r.seconds_per_step?))
    }
}

pub use beatmatch_core::store::Loaded;

/// Read a result directory through the store: the manifest and every record it references
/// (a missing record, or a file of a schema this code cannot read, is an error naming it).
pub fn load(dir: &Path) -> Result<Loaded> {
    Ok(Store::at(dir).load()?)
}

/// Mean wall-clock seconds per step of `records`, from their timing sidecars where present.
fn seconds_per_step<'a>(l: &Loaded, records: impl Iterator<Item = &'a RunRecord>) -> Option<f64> {
    let ts: Vec<f64> = records.filter_map(|r| l.timings.get(&r.hash)).filter(|t| t.steps > 0).map(|t| t.seconds / t.steps as f64).collect();
    (!ts.is_empty()).then(|| ts.iter().sum::<f64>() / ts.len() as f64)
}

/// Compute every task's row.
pub fn analyse(l: &Loaded) -> Result<Vec<TaskRow>> {
    let s = &l.study;
    let candidate = s.arms.iter().position(|a| a.role == ArmRole::Candidate).context("study has no candidate arm")?;
    let reference = s.arms.iter().position(|a| a.speedup_reference);
    // cells[task][arm][config] = records over seeds
    let mut grid: Vec<Vec<Vec<Vec<&RunRecord>>>> = s.tasks.iter().map(|_| s.arms.iter().map(|a| vec![Vec::new(); a.configs.len()]).collect()).collect();
    for c in &s.cells {
        grid[c.task][c.arm][c.config].push(&l.records[&c.record]);
    }
    let mut rows = Vec::with_capacity(s.tasks.len());
    for (ti, t) in s.tasks.iter().enumerate() {
        let env = reference.map(|r| envelope(&grid[ti][r]));
        let mut arms = Vec::new();
        for (ai, _) in s.arms.iter().enumerate() {
            let configs = &grid[ti][ai];
            let finals: Vec<Vec<f64>> = configs.iter().map(|runs| runs.iter().map(|r| r.train_loss_at(t.steps).unwrap_or(f64::INFINITY)).collect()).collect();
            let means: Vec<f64> = finals.iter().map(|f| seed_stats(f).0).collect();
            let best = select_tuned(&means).context("arm has no configurations")?;
            let (mean, std) = seed_stats(&finals[best]);
            let evals: Vec<(f64, f64)> = configs[best]
                .iter()
                .map(|r| match r.eval_at(t.steps) {
                    Some(e) if r.diverged_at().is_none_or(|d| d > t.steps) => {
                        (e.eval_loss.map_or(f64::INFINITY, f64::from), e.eval_accuracy.map_or(f64::NAN, f64::from))
                    }
                    _ => (f64::INFINITY, f64::NAN),
                })
                .collect();
            let n = evals.len().max(1) as f64;
            arms.push(ArmResult {
                tuned_config: best,
                mean,
                std,
                eval_loss: evals.iter().map(|e| e.0).sum::<f64>() / n,
                eval_accuracy: evals.iter().map(|e| e.1).sum::<f64>() / n,
                diverged_runs: configs.iter().flatten().filter(|r| r.diverged_at().is_some_and(|d| d <= t.steps)).count(),
                runs: configs.iter().map(Vec::len).sum(),
                speedup: env.as_ref().map(|e| speedup(e, mean, t.steps, s.speedup_cap as f64)),
                records: configs.iter().flatten().map(|r| r.hash.clone()).collect(),
                finals: finals[best].clone(),
                seconds_per_step: seconds_per_step(l, configs[best].iter().copied()),
            });
        }
        let baselines: Vec<usize> = (0..s.arms.len()).filter(|&a| s.arms[a].role == ArmRole::Baseline).collect();
        let best_baseline = *baselines.iter().min_by(|&&a, &&b| arms[a].mean.total_cmp(&arms[b].mean)).context("study has no baseline arm")?;
        let tuned = &arms[best_baseline];
        let tol = tolerance(tuned.mean, tuned.std);
        let out = outcome(arms[candidate].mean, tuned.mean, tol);
        rows.push(TaskRow {
            id: t.id.clone(),
            params: t.params,
            steps: t.steps,
            split: t.split,
            arms,
            best_baseline,
            tolerance: tol,
            outcome: out,
            candidate,
            reference,
        });
    }
    Ok(rows)
}
