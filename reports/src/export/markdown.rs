//! `summary.md`: the headline, the binned table, per-task outcomes and provenance.

use crate::analysis::TaskRow;
use crate::stats::bootstrap::Estimate;
use crate::win_rate::{Bin, Region};
use beatmatch_core::{ArmRole, Study};
use std::fmt::Write;

/// The one-line headline.
pub fn headline(study: &Study, region: Region, n: usize, e: &Estimate) -> String {
    let cand = study.arms.iter().find(|a| a.role == ArmRole::Candidate).map_or("?", |a| a.legend.as_str());
    if n == 0 {
        return format!("No tasks in the region params < {:e}, steps < {:e}.", region.max_params, region.max_steps);
    }
    format!(
        "{cand} beats or matches the tuned baselines on {:.1}% of {n} tasks with params < {:e} and steps < {:e} (95% bootstrap CI over tasks: {:.1}%–{:.1}%).",
        100.0 * e.point,
        region.max_params,
        region.max_steps,
        100.0 * e.lower,
        100.0 * e.upper
    )
}

fn loss(x: f64) -> String {
    if x.is_finite() { format!("{x:.4}") } else { "diverged".into() }
}

/// Render `summary.md`.
pub fn summary(study: &Study, rows: &[TaskRow], bins: &[Bin], headline: &str) -> String {
    let mut s = String::new();
    let cand = study.arms.iter().position(|a| a.role == ArmRole::Candidate).unwrap_or(0);
    let _ = writeln!(s, "# beatmatch report — {}\n", study.selection);
    let _ = writeln!(s, "**{headline}**\n");
    let _ = writeln!(s, "Outcome per task: *beat* if candidate < tuned − tol, *match* if |candidate − tuned| ≤ tol, else *lose*; tol = the tuned configuration's seed std (floor 1e-4 × |tuned|). Loss = seed-mean final train loss; a diverged run counts as +∞ (a loss). Tuned = the lowest seed-mean over each protocol's configurations, best over all baselines.\n");
    let _ = writeln!(s, "## Optimizers\n");
    for a in &study.arms {
        let role = if a.role == ArmRole::Candidate { "candidate" } else { "baseline" };
        let _ = writeln!(s, "- {} — {role}, {} seed(s){}", a.legend, a.seeds, if a.speedup_reference { "; speedup reference (LR-tuned Adam envelope)" } else { "" });
    }
    let (beat, matched) = (rows.iter().filter(|r| r.outcome == crate::metrics::Outcome::Beat).count(), rows.iter().filter(|r| r.outcome == crate::metrics::Outcome::Match).count());
    let _ = writeln!(s, "\nAll {} tasks: {beat} beat, {matched} match, {} lose.\n", rows.len(), rows.len() - beat - matched);
    let _ = writeln!(s, "## Win rate by parameters × step budget\n\n| params | steps | n | wins | win rate |\n|---|---|---:|---:|---:|");
    for b in bins {
        let _ = writeln!(s, "| 1e{}–1e{} | 1e{}–1e{} | {} | {} | {:.0}% |", b.params_decade, b.params_decade + 1, b.steps_decade, b.steps_decade + 1, b.n, b.wins, 100.0 * b.win_rate());
    }
    let _ = writeln!(s, "\n## Tasks\n\n| task | params | steps | candidate | tuned | tuned config | outcome | speedup |\n|---|---:|---:|---:|---:|---|---|---:|");
    for r in rows {
        let sp = r.arms[cand].speedup.map_or("–".into(), |x| if x.at_cap { format!("≥{}", x.value) } else { format!("{:.2}", x.value) });
        let tuned = &r.arms[r.best_baseline];
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {sp} |",
            r.id,
            r.params,
            r.steps,
            loss(r.arms[cand].mean),
            loss(tuned.mean),
            study.arms[r.best_baseline].configs[tuned.tuned_config],
            r.outcome.as_str()
        );
    }
    if !study.skipped.is_empty() {
        let _ = writeln!(s, "\n## Skipped\n\n{} tasks were skipped:\n", study.skipped.len());
        let mut reasons: Vec<&str> = study.skipped.iter().map(|(_, r)| r.as_str()).collect();
        reasons.dedup();
        for r in reasons {
            let _ = writeln!(s, "- {r}");
        }
    }
    let n_records: std::collections::BTreeSet<&str> = study.cells.iter().map(|c| c.record.as_str()).collect();
    let _ = writeln!(s, "\n## Provenance\n\nCode version `{}`, device `{}`. Computed from {} run records listed in `records.txt` (files `runs/<hash>.json`), manifest `study.json`.", study.code_version, study.device, n_records.len());
    s
}
