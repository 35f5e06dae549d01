//! `suite compare`: two result directories (e.g. two checkpoints run on the same tasks and
//! seeds), paired per task on the candidate's final train loss.

use crate::analysis::{analyse, load, TaskRow};
use crate::metrics::tolerance;
use crate::stats::sign_test::{sign_test, SignTest};
use crate::stats::wilcoxon::{wilcoxon, Wilcoxon};
use anyhow::{bail, Result};
use beatmatch_core::ArmRole;
use std::fmt::Write;
use std::path::Path;

/// One paired task.
#[derive(Clone, Debug)]
pub struct PairedTask {
    /// Task id.
    pub task: String,
    /// Parameters.
    pub params: u64,
    /// Step budget.
    pub steps: u64,
    /// A's candidate seed-mean final loss (+∞ diverged).
    pub a: f64,
    /// B's.
    pub b: f64,
    /// B − A (negative: B better); ±∞ when exactly one diverged.
    pub delta: f64,
    /// |delta| within this is a tie: the larger of the two sides' seed-noise tolerances.
    pub tolerance: f64,
}

/// Which side of a comparison did better on a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Winner {
    /// A's loss is lower by more than the tolerance.
    A,
    /// B's loss is lower by more than the tolerance.
    B,
    /// Within the tolerance, or both diverged.
    Tie,
}

impl Winner {
    /// `A`, `B` or `tie`, as tables print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Winner::A => "A",
            Winner::B => "B",
            Winner::Tie => "tie",
        }
    }
}

impl PairedTask {
    /// Which side is better on this task.
    pub fn winner(&self) -> Winner {
        if self.a.is_infinite() && self.b.is_infinite() || (self.delta.abs() <= self.tolerance) {
            Winner::Tie
        } else if self.delta < 0.0 {
            Winner::B
        } else {
            Winner::A
        }
    }
}

/// The comparison.
pub struct Comparison {
    /// Candidate legends of A and B.
    pub labels: (String, String),
    /// Paired tasks (present in both).
    pub tasks: Vec<PairedTask>,
    /// Tasks in only one of the two.
    pub unpaired: Vec<String>,
    /// Sign test of the deltas (ties within tolerance dropped).
    pub sign: SignTest,
    /// Wilcoxon signed-rank test of the deltas (ties within tolerance dropped).
    pub wilcoxon: Wilcoxon,
    /// Record hashes behind A and B.
    pub records: (Vec<String>, Vec<String>),
}

fn candidate_rows(dir: &Path) -> Result<(String, Vec<TaskRow>, Vec<String>)> {
    let l = load(dir)?;
    let rows = analyse(&l)?;
    let legend = l.study.arms.iter().find(|a| a.role == ArmRole::Candidate).map_or(String::new(), |a| a.legend.clone());
    let mut recs: Vec<String> = l.study.cells.iter().filter(|c| l.study.arms[c.arm].role == ArmRole::Candidate).map(|c| c.record.clone()).collect();
    recs.sort();
    recs.dedup();
    Ok((legend, rows, recs))
}

impl Comparison {
    /// Tasks where (A, B, neither) is better.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |w: Winner| self.tasks.iter().filter(|t| t.winner() == w).count();
        (n(Winner::A), n(Winner::B), n(Winner::Tie))
    }
}

/// Compare the candidates of two result directories.
pub fn compare_dirs(a: &Path, b: &Path) -> Result<Comparison> {
    let (la, ra, reca) = candidate_rows(a)?;
    let (lb, rb, recb) = candidate_rows(b)?;
    let mut tasks = Vec::new();
    let mut unpaired = Vec::new();
    for x in &ra {
        match rb.iter().find(|y| y.id == x.id) {
            Some(y) => {
                let (ca, cb) = (&x.arms[x.candidate], &y.arms[y.candidate]);
                let delta = cb.mean - ca.mean;
                let delta = if delta.is_nan() { 0.0 } else { delta };
                tasks.push(PairedTask {
                    task: x.id.clone(),
                    params: x.params,
                    steps: x.steps,
                    a: ca.mean,
                    b: cb.mean,
                    delta,
                    tolerance: tolerance(ca.mean, ca.std).max(tolerance(cb.mean, cb.std)),
                });
            }
            None => unpaired.push(x.id.clone()),
        }
    }
    unpaired.extend(rb.iter().filter(|y| !ra.iter().any(|x| x.id == y.id)).map(|y| y.id.clone()));
    if tasks.is_empty() {
        bail!("{} and {} share no task", a.display(), b.display());
    }
    // Ties count as zero; a one-sided divergence is the most extreme difference of its sign.
    let big = tasks.iter().filter(|t| t.delta.is_finite()).fold(1.0f64, |m, t| m.max(t.delta.abs())) * 2.0;
    let d: Vec<f64> = tasks
        .iter()
        .map(|t| {
            if t.winner() == Winner::Tie {
                0.0
            } else if t.delta.is_infinite() {
                big * t.delta.signum()
            } else {
                t.delta
            }
        })
        .collect();
    Ok(Comparison { labels: (la, lb), sign: sign_test(&d), wilcoxon: wilcoxon(&d), tasks, unpaired, records: (reca, recb) })
}

/// `compare.md`.
pub fn markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let (a_wins, b_wins, ties) = c.counts();
    let _ = writeln!(s, "# beatmatch compare\n\n- A: {}\n- B: {}\n", c.labels.0, c.labels.1);
    let _ = writeln!(
        s,
        "On {} paired tasks (candidate's seed-mean final train loss; lower is better): **B better on {b_wins}, tie on {ties}, A better on {a_wins}**.\n",
        c.tasks.len()
    );
    let _ = writeln!(
        s,
        "- sign test (two-sided, ties dropped): {} positive / {} negative differences, p = {:.4}",
        c.sign.positive, c.sign.negative, c.sign.p_value
    );
    let _ = writeln!(
        s,
        "- Wilcoxon signed-rank (two-sided, ties dropped): W+ = {}, W− = {}, n = {}, p = {:.4} ({})\n",
        c.wilcoxon.w_plus,
        c.wilcoxon.w_minus,
        c.wilcoxon.n,
        c.wilcoxon.p_value,
        if c.wilcoxon.exact { "exact" } else { "normal approximation" }
    );
    let _ = writeln!(s, "A tie is |B − A| within the larger seed-noise tolerance of the two (seed std, floor 1e-4 × |loss|).\n");
    let _ = writeln!(s, "| task | params | steps | A | B | B − A | better |\n|---|---:|---:|---:|---:|---:|---|");
    for t in &c.tasks {
        let _ = writeln!(s, "| {} | {} | {} | {:.4} | {:.4} | {:+.4} | {} |", t.task, t.params, t.steps, t.a, t.b, t.delta, t.winner().as_str());
    }
    if !c.unpaired.is_empty() {
        let _ = writeln!(s, "\nNot in both (left out): {}", c.unpaired.join(", "));
    }
    let _ = writeln!(s, "\n## Provenance\n\nA's candidate records: {}\n\nB's candidate records: {}", c.records.0.join(" "), c.records.1.join(" "));
    s
}

/// Write `compare.md`, `compare.csv` and `delta_vs_params.png` into `out`.
pub fn write(c: &Comparison, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("compare.md"), markdown(c))?;
    let mut csv = String::from("task,params,steps,a_loss,b_loss,delta,better\n");
    for t in &c.tasks {
        let _ = writeln!(csv, "{},{},{},{},{},{},{}", t.task, t.params, t.steps, t.a, t.b, t.delta, t.winner().as_str());
    }
    std::fs::write(out.join("compare.csv"), csv)?;
    let pts: Vec<(u64, f64)> = c.tasks.iter().map(|t| (t.params, t.delta)).collect();
    crate::figures::delta::draw(
        &out.join("delta_vs_params.png"),
        &[crate::figures::Format::Png, crate::figures::Format::Svg],
        &pts,
        "Per-task final loss: B − A",
    )?;
    Ok(())
}
