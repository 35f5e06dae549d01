//! Win rates: binned by log10 parameters × log10 step budget, and the headline region.

use crate::analysis::TaskRow;
use crate::stats::bootstrap::{mean_ci, Estimate};

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

/// Win rate in `region` with a 95% percentile-bootstrap CI over tasks; also returns n.
pub fn headline(rows: &[TaskRow], region: Region, seed: u64) -> (usize, Estimate) {
    let wins: Vec<f64> = rows
        .iter()
        .filter(|r| (r.params as f64) < region.max_params && (r.steps as f64) < region.max_steps)
        .map(|r| if r.outcome.is_win() { 1.0 } else { 0.0 })
        .collect();
    (wins.len(), mean_ci(&wins, 0.95, 10_000, seed))
}
