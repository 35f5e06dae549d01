//! The verdict against each tuning protocol on its own: the headline compares the candidate with
//! the best tuned baseline on each task; a reader also asks "against LR-tuned Adam?" (VeLO's
//! claim) and "against tuned Muon?". Per baseline arm: beat / match / lose and the win-or-match
//! rate in the headline region with its two-level bootstrap CI, the tasks on which the arm was
//! the tuned best, and per arm (candidate included) AlgoPerf's performance-profile score.

use crate::analysis::TaskRow;
use crate::metrics::{outcome, tolerance, Outcome};
use crate::stats::bootstrap::Estimate;
use crate::win_rate::{headline, Region};
use beatmatch_core::{ArmRole, OptimizerSpec, Study};

/// τ_max of AlgoPerf's score: the profile is integrated over τ ∈ [1, 4].
pub const ALGOPERF_TAU_MAX: f64 = 4.0;

/// The candidate against one baseline arm, and what that arm scored.
#[derive(Clone, Debug)]
pub struct ProtocolResult {
    /// Index of the arm in the study.
    pub arm: usize,
    /// Tasks in the headline region.
    pub n: usize,
    /// Region tasks the candidate beat this arm's tuned configuration on.
    pub beat: usize,
    /// Region tasks within the tolerance of it.
    pub matched: usize,
    /// Win-or-match rate in the region, with its 95% CI.
    pub rate: Estimate,
    /// Tasks (all, not only the region) on which this arm was the tuned best baseline.
    pub tuned_best: usize,
    /// Tasks (all) whose tuned configuration of this arm sits at the low or high end of one of
    /// its grid's axes ([`grid_axes`]); `None` when the arm's configurations are not a grid
    /// with an axis of 3 or more values (a random search, a list of points, one point). Many
    /// such tasks say the grid was too narrow: the optimum may lie outside it.
    pub at_grid_edge: Option<usize>,
}

/// The axes of a grid search: the hyperparameters `configs` sweep, when the configurations are
/// exactly the product of their distinct values (every configuration naming the same keys),
/// keeping the axes of 3 or more values, each with its values sorted. Empty for anything else.
pub fn grid_axes(configs: &[OptimizerSpec]) -> Vec<(String, Vec<f64>)> {
    let Some(first) = configs.first() else { return Vec::new() };
    if configs.iter().any(|c| c.kind != first.kind || c.hparams.keys().ne(first.hparams.keys())) {
        return Vec::new();
    }
    let axes: Vec<(String, Vec<f64>)> = first
        .hparams
        .keys()
        .map(|k| {
            let mut values: Vec<f64> = configs.iter().map(|c| c.hparams[k]).collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            (k.clone(), values)
        })
        .filter(|(_, v)| v.len() > 1)
        .collect();
    let product: usize = axes.iter().map(|(_, v)| v.len()).product();
    if product != configs.len() {
        return Vec::new();
    }
    axes.into_iter().filter(|(_, v)| v.len() >= 3).collect()
}

/// Whether `config` takes the smallest or largest value of one of `axes`.
pub fn at_edge(config: &OptimizerSpec, axes: &[(String, Vec<f64>)]) -> bool {
    axes.iter().any(|(k, v)| config.hparams.get(k).is_some_and(|x| Some(x) == v.first() || Some(x) == v.last()))
}

/// `row` with `arm` as its tuned baseline: the outcome and tolerance recomputed against it.
pub fn against(row: &TaskRow, arm: usize) -> TaskRow {
    let mut r = row.clone();
    let tuned = &r.arms[arm];
    r.best_baseline = arm;
    r.tolerance = tolerance(tuned.mean, tuned.std);
    r.outcome = outcome(r.arms[r.candidate].mean, tuned.mean, r.tolerance);
    r
}

/// One result per baseline arm, in study order.
pub fn per_protocol(study: &Study, rows: &[TaskRow], region: Region, seed: u64) -> Vec<ProtocolResult> {
    let inside = |r: &TaskRow| (r.params as f64) < region.max_params && (r.steps as f64) < region.max_steps;
    (0..study.arms.len())
        .filter(|&a| study.arms[a].role == ArmRole::Baseline)
        .map(|arm| {
            let vs: Vec<TaskRow> = rows.iter().map(|r| against(r, arm)).collect();
            let (n, rate) = headline(&vs, region, seed);
            let count = |o: Outcome| vs.iter().filter(|r| inside(r) && r.outcome == o).count();
            ProtocolResult {
                arm,
                n,
                beat: count(Outcome::Beat),
                matched: count(Outcome::Match),
                rate,
                tuned_best: rows.iter().filter(|r| r.best_baseline == arm).count(),
                at_grid_edge: grid_edges(&study.arms[arm].configs, rows, arm),
            }
        })
        .collect()
}

/// Tasks whose tuned configuration of the candidate sits at an edge of its grid, when the
/// candidate was tuned over one (`--candidate PROTOCOL`).
pub fn candidate_grid_edges(study: &Study, rows: &[TaskRow]) -> Option<usize> {
    let cand = study.arms.iter().position(|a| a.role == ArmRole::Candidate)?;
    grid_edges(&study.arms[cand].configs, rows, cand)
}

/// Tasks whose tuned configuration of `arm` sits at an edge of its grid (see
/// [`ProtocolResult::at_grid_edge`]).
fn grid_edges(configs: &[OptimizerSpec], rows: &[TaskRow], arm: usize) -> Option<usize> {
    let axes = grid_axes(configs);
    (!axes.is_empty()).then(|| rows.iter().filter(|r| configs.get(r.arms[arm].tuned_config).is_some_and(|c| at_edge(c, &axes))).count())
}

/// AlgoPerf's score of each arm over all tasks: its performance profile ρ(τ) — the fraction of
/// tasks whose seed-mean final train loss is within τ × the best arm's — integrated over
/// τ ∈ [1, 4] and divided by 3, so 1 means best on every task and 0 never within 4×. AlgoPerf
/// takes the ratio of times to a target; beatmatch's tasks have fixed budgets, so the ratio is
/// of final losses, as in the report's profile figure. Computed exactly: a task with ratio r
/// adds max(0, 4 − max(r, 1)) / 3.
pub fn algoperf_scores(rows: &[TaskRow]) -> Vec<f64> {
    let losses: Vec<Vec<f64>> = rows.iter().map(|r| r.arms.iter().map(|a| a.mean).collect()).collect();
    crate::stats::profile::integrated_profile(&losses, ALGOPERF_TAU_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ArmResult;
    use beatmatch_core::Split;

    fn arm(mean: f64, std: f64) -> ArmResult {
        ArmResult { mean, std, ..ArmResult::of_finals(&[mean - std, mean + std]) }
    }

    /// Candidate 1.0 ± 0; baseline A 1.0 ± 0.01 (a match), baseline B 0.5 (a loss, and B is
    /// the tuned best): against the best the candidate loses, against A it matches.
    #[test]
    fn outcomes_against_each_arm() {
        let row = TaskRow {
            id: "t".into(),
            params: 10,
            steps: 10,
            split: Split::MetaTest,
            arms: vec![arm(1.0, 0.0), arm(1.0, 0.01), arm(0.5, 0.01)],
            best_baseline: 2,
            tolerance: 0.01,
            outcome: Outcome::Lose,
            candidate: 0,
            reference: None,
        };
        assert_eq!(against(&row, 1).outcome, Outcome::Match);
        assert_eq!(against(&row, 2).outcome, Outcome::Lose);
        let scores = algoperf_scores(std::slice::from_ref(&row));
        // Ratios to the best (0.5): 2, 2, 1 → (4 − 2)/3, (4 − 2)/3, 1.
        assert_eq!(scores, vec![2.0 / 3.0, 2.0 / 3.0, 1.0]);
    }

    #[test]
    fn grid_edges_are_found_on_grids_only() {
        let spec = |s: &str| OptimizerSpec::parse(s).unwrap();
        let grid: Vec<OptimizerSpec> = ["1e-3", "1e-2", "1e-1"].iter().flat_map(|lr| ["0", "0.1"].map(|wd| spec(&format!("adamw:lr={lr},wd={wd}")))).collect();
        let axes = grid_axes(&grid);
        assert_eq!(axes, vec![("lr".to_string(), vec![1e-3, 1e-2, 1e-1])], "wd has two values: no inside to be at the edge of");
        assert!(at_edge(&grid[0], &axes) && at_edge(&grid[5], &axes));
        assert!(!at_edge(&grid[2], &axes) && !at_edge(&grid[3], &axes));
        // Points that are not the product of their values (AlgoPerf's list), or a lone point.
        assert!(grid_axes(&[spec("adam:lr=1e-3,b1=0.9"), spec("adam:lr=1e-2,b1=0.8"), spec("adam:lr=1e-1,b1=0.7")]).is_empty());
        assert!(grid_axes(&[spec("adam:lr=1e-3")]).is_empty());
        assert!(grid_axes(&[spec("adam:lr=1e-3"), spec("adam:lr=1e-2"), spec("adam:lr=1e-1,b1=0.9")]).is_empty());
        // The count over tasks: tuned at 1e-1 (an edge) on one task, at 1e-2 on the other.
        let row = |tuned: usize| TaskRow {
            id: "t".into(),
            params: 10,
            steps: 10,
            split: Split::MetaTest,
            arms: vec![arm(1.0, 0.0), ArmResult { tuned_config: tuned, ..arm(1.0, 0.0) }],
            best_baseline: 1,
            tolerance: 0.01,
            outcome: Outcome::Match,
            candidate: 0,
            reference: None,
        };
        assert_eq!(grid_edges(&grid, &[row(4), row(2)], 1), Some(1));
        assert_eq!(grid_edges(&grid[..1], &[row(0)], 1), None);
    }
}
