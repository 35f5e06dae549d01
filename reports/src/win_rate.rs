//! Win rates: binned by log10 parameters × log10 step budget, and the headline region.

use crate::analysis::TaskRow;
use crate::metrics::{outcome, seed_stats};
use crate::stats::bootstrap::{mean_ci, percentile, Estimate};
use beatmatch_core::Split;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One heatmap cell.
#[derive(Clone, Debug, PartialEq)]
pub struct Bin {
    /// floor(log10(params)).
    pub params_decade: i32,
    /// floor(log10(steps)).
    pub steps_decade: i32,
    /// Tasks in the bin.
    pub n: usize,
    /// Beat or match.
    pub wins: usize,
}

impl Bin {
    /// wins / n.
    pub fn win_rate(&self) -> f64 {
        self.wins as f64 / self.n as f64
    }
}

fn decade(x: u64) -> i32 {
    (x.max(1) as f64).log10().floor() as i32
}

/// Bins sorted by (params decade, steps decade).
pub fn bins(rows: &[TaskRow]) -> Vec<Bin> {
    let mut map = std::collections::BTreeMap::<(i32, i32), (usize, usize)>::new();
    for r in rows {
        let e = map.entry((decade(r.params), decade(r.steps))).or_default();
        e.0 += 1;
        e.1 += usize::from(r.outcome.is_win());
    }
    map.into_iter().map(|((p, s), (n, wins))| Bin { params_decade: p, steps_decade: s, n, wins }).collect()
}

/// The headline region: tasks with params < `max_params` and steps < `max_steps`.
#[derive(Clone, Copy, Debug)]
pub struct Region {
    /// Exclusive upper bound on parameters.
    pub max_params: f64,
    /// Exclusive upper bound on step budget.
    pub max_steps: f64,
}

impl Default for Region {
    /// VeLO's claim: models under 5e8 parameters trained for under 2e5 steps.
    fn default() -> Self {
        Self { max_params: 5e8, max_steps: 2e5 }
    }
}

/// Win rate in `region` with a 95% percentile-bootstrap CI that resamples tasks and, within
/// each resampled task, the seeds of the candidate and of the tuned configuration (the tuned
/// configuration itself stays the one selected on all seeds); also returns n.
pub fn headline(rows: &[TaskRow], region: Region, seed: u64) -> (usize, Estimate) {
    let inside: Vec<&TaskRow> = rows.iter().filter(|r| (r.params as f64) < region.max_params && (r.steps as f64) < region.max_steps).collect();
    let n = inside.len();
    let point = inside.iter().filter(|r| r.outcome.is_win()).count() as f64 / n.max(1) as f64;
    if n == 0 {
        return (0, Estimate { point: f64::NAN, lower: f64::NAN, upper: f64::NAN, level: 0.95 });
    }
    let resamples = 4000;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let draw = |v: &[f64], rng: &mut ChaCha8Rng| -> Vec<f64> { (0..v.len()).map(|_| v[rng.random_range(0..v.len())]).collect() };
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut wins = 0usize;
            for _ in 0..n {
                let r = inside[rng.random_range(0..n)];
                // The match tolerance is the task's, from all its seeds, held fixed: re-estimating
                // it from each resample would give every resample that draws one seed twice a
                // zero spread (half of them with 2 seeds), turn near-ties into losses and pull
                // the interval below its own point.
                let cand = seed_stats(&draw(&r.arms[r.candidate].finals, &mut rng)).0;
                let tuned = seed_stats(&draw(&r.arms[r.best_baseline].finals, &mut rng)).0;
                wins += usize::from(outcome(cand, tuned, r.tolerance).is_win());
            }
            wins as f64 / n as f64
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    (n, Estimate { point, lower: percentile(&stats, 0.025), upper: percentile(&stats, 0.975), level: 0.95 })
}

/// The headline win rate within each side of the meta split (meta_train, then meta_test),
/// each with its two-level bootstrap CI: on meta_test tasks it is the learned optimizer's
/// generalisation number. Sides without tasks are left out.
pub fn headline_by_split(rows: &[TaskRow], region: Region, seed: u64) -> Vec<(Split, usize, Estimate)> {
    Split::ALL
        .into_iter()
        .filter_map(|split| {
            let side: Vec<TaskRow> = rows.iter().filter(|r| r.split == split).cloned().collect();
            let (n, e) = headline(&side, region, seed);
            (n > 0).then_some((split, n, e))
        })
        .collect()
}

/// Win rate over tasks only (seeds fixed), for comparison with the two-level interval.
pub fn headline_tasks_only(rows: &[TaskRow], region: Region, seed: u64) -> Estimate {
    let wins: Vec<f64> = rows
        .iter()
        .filter(|r| (r.params as f64) < region.max_params && (r.steps as f64) < region.max_steps)
        .map(|r| if r.outcome.is_win() { 1.0 } else { 0.0 })
        .collect();
    mean_ci(&wins, 0.95, 10_000, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::ArmResult;
    use crate::metrics::{tolerance, Outcome};

    fn arm(finals: [f64; 2]) -> ArmResult {
        ArmResult::of_finals(&finals)
    }

    /// 46 tasks on which the candidate ties the tuned baseline within its seed spread (2 seeds
    /// each): every task a match, so the interval must reach its point, 100%.
    #[test]
    fn the_interval_of_near_ties_contains_its_point() {
        let rows: Vec<TaskRow> = (0..46)
            .map(|i| {
                let (cand, tuned) = (arm([0.705, 0.715]), arm([0.70, 0.72]));
                let tol = tolerance(tuned.mean, tuned.std);
                let out = outcome(cand.mean, tuned.mean, tol);
                assert_eq!(out, Outcome::Match);
                TaskRow {
                    id: format!("t{i}"),
                    params: 1000,
                    steps: 100,
                    split: Split::MetaTrain,
                    arms: vec![cand, tuned],
                    best_baseline: 1,
                    tolerance: tol,
                    outcome: out,
                    candidate: 0,
                    reference: None,
                }
            })
            .collect();
        let (n, e) = headline(&rows, Region::default(), 0);
        assert_eq!((n, e.point), (46, 1.0));
        assert!(e.lower <= e.point && e.point <= e.upper, "{e:?}");
    }
}
