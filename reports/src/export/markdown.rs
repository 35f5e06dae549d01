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
        "{cand} beats or matches the tuned baselines on {:.1}% of {n} tasks with params < {:e} and steps < {:e} (95% bootstrap CI over tasks and seeds: {:.1}%–{:.1}%).",
        100.0 * e.point,
        region.max_params,
        region.max_steps,
        100.0 * e.lower,
        100.0 * e.upper
    )
}

fn loss(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "diverged".into()
    }
}

/// Aggregates beyond the win rate.
pub struct Extras {
    /// IQM of the candidate's step speedup with a 95% CI.
    pub iqm_speedup: Option<Estimate>,
    /// IQM of the wall-clock-adjusted speedup with a 95% CI.
    pub iqm_wall_clock: Option<Estimate>,
    /// Win rate CI resampling tasks only (for comparison with the two-level one).
    pub tasks_only: Estimate,
    /// ρ(τ) per arm at τ = 1, 1.1, 1.5, 2, 4.
    pub profile_rows: Vec<(f64, Vec<f64>)>,
    /// The headline within each side of the meta split.
    pub by_split: Vec<(beatmatch_core::Split, usize, Estimate)>,
    /// The candidate against each baseline protocol on its own.
    pub protocols: Vec<crate::protocols::ProtocolResult>,
    /// AlgoPerf's performance-profile score per arm, in study order.
    pub algoperf: Vec<f64>,
    /// When the candidate was tuned over a grid (`--candidate PROTOCOL`): the tasks whose tuned
    /// configuration sits at an edge of it, as for the baselines.
    pub candidate_at_grid_edge: Option<usize>,
}

impl Extras {
    /// Compute from the rows and profiles.
    pub fn compute(study: &Study, rows: &[TaskRow], profiles: &[Vec<f64>], taus: &[f64], opts: &crate::ReportOptions) -> Self {
        let sp: Vec<f64> = rows.iter().filter_map(|r| r.arms[r.candidate].speedup.map(|s| s.value)).collect();
        let wc: Vec<f64> = rows.iter().filter_map(|r| r.wall_clock_speedup()).collect();
        let pick = |t: f64| taus.iter().position(|&x| (x - t).abs() < 1e-9 || x >= t).unwrap_or(taus.len() - 1);
        Extras {
            iqm_speedup: (!sp.is_empty()).then(|| crate::stats::iqm::iqm_ci(&sp, 0.95, 4000, opts.bootstrap_seed)),
            iqm_wall_clock: (!wc.is_empty()).then(|| crate::stats::iqm::iqm_ci(&wc, 0.95, 4000, opts.bootstrap_seed)),
            tasks_only: crate::win_rate::headline_tasks_only(rows, opts.region, opts.bootstrap_seed),
            profile_rows: [1.0, 1.1, 1.5, 2.0, 4.0].iter().map(|&t| (t, profiles.iter().map(|p| p[pick(t)]).collect())).collect(),
            by_split: crate::win_rate::headline_by_split(rows, opts.region, opts.bootstrap_seed),
            protocols: crate::protocols::per_protocol(study, rows, opts.region, opts.bootstrap_seed),
            algoperf: crate::protocols::algoperf_scores(rows),
            candidate_at_grid_edge: crate::protocols::candidate_grid_edges(study, rows),
        }
    }
}

/// `wall_clock.md`: the timing-dependent aggregate (kept out of `summary.md`, which is
/// deterministic).
pub fn wall_clock(extras: &Extras, rows: &[TaskRow]) -> String {
    let timed = rows.iter().filter(|r| r.wall_clock_speedup().is_some()).count();
    match extras.iqm_wall_clock {
        Some(e) => format!(
            "# Wall-clock-adjusted speedup\n\nStep speedup over LR-tuned Adam divided by the candidate's per-step cost relative to Adam's on the same task (mean seconds per step of the runs, measured on this machine; {timed} of {} tasks timed).\n\nInterquartile mean: {:.3} (95% bootstrap CI {:.3}–{:.3}). Per task: `wall_clock.csv`.\n",
            rows.len(),
            e.point,
            e.lower,
            e.upper
        ),
        None => "# Wall-clock-adjusted speedup\n\nNo timings recorded for these runs.\n".to_string(),
    }
}

/// The candidate against each protocol, the tuned best per task, AlgoPerf's scores.
fn protocol_sections(s: &mut String, study: &Study, extras: &Extras) {
    if extras.protocols.len() > 1 {
        let _ = writeln!(s, "\n## Against each protocol on its own\n");
        let _ = writeln!(
            s,
            "The same rule against one protocol's tuned configuration instead of the best of all (headline region; \"vs {}\" is VeLO's claim). *Tuned best on*: tasks where that protocol's tuned configuration was the best baseline. *At a grid edge*: tasks where it sat at the smallest or largest value of one of its grid's axes (of 3 or more values) — when that is most tasks, the grid was too narrow and the protocol not tuned; – for protocols that are not grids.\n",
            study.arms.get(extras.protocols[0].arm).map_or("?", |a| a.name.as_str())
        );
        let _ = writeln!(
            s,
            "| protocol | n | beat | match | lose | beats or matches (95% CI) | tuned best on | at a grid edge |\n|---|---:|---:|---:|---:|---|---:|---:|"
        );
        for p in &extras.protocols {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {:.1}% ({:.1}%–{:.1}%) | {} | {} |",
                study.arms[p.arm].legend,
                p.n,
                p.beat,
                p.matched,
                p.n - p.beat - p.matched,
                100.0 * p.rate.point,
                100.0 * p.rate.lower,
                100.0 * p.rate.upper,
                p.tuned_best,
                p.at_grid_edge.map_or("–".to_string(), |n| n.to_string())
            );
        }
    }
    let _ = writeln!(s, "\n## AlgoPerf performance-profile score\n");
    let _ = writeln!(s, "Each optimizer's performance profile ρ(τ) (the fraction of tasks whose final train loss is within τ × the best optimizer's) integrated over τ ∈ [1, 4] and divided by 3, as AlgoPerf scores submissions — with final-loss ratios in place of AlgoPerf's time-to-target ratios, since beatmatch's budgets are fixed. 1: best on every task.\n");
    let _ = writeln!(s, "| optimizer | score |\n|---|---:|");
    for (a, score) in study.arms.iter().zip(&extras.algoperf) {
        let _ = writeln!(s, "| {}{} | {:.3} |", if a.role == ArmRole::Candidate { "candidate: " } else { "" }, a.legend, score);
    }
}

/// Render `summary.md`.
pub fn summary(study: &Study, rows: &[TaskRow], bins: &[Bin], headline: &str, extras: &Extras) -> String {
    let mut s = String::new();
    let cand = study.arms.iter().position(|a| a.role == ArmRole::Candidate).unwrap_or(0);
    let _ = writeln!(s, "# beatmatch report — {}\n", study.selection);
    let _ = writeln!(s, "**{headline}**\n");
    if !extras.by_split.is_empty() {
        match &study.arms[cand].provenance {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "By meta split — the registry's, for comparison with optimizers meta-trained here on `meta_train` problems; the candidate is {p}:\n"
                );
            }
            None => {
                let _ =
                    writeln!(s, "By meta split (a learned optimizer is meta-trained on `meta_train` problems only, so `meta_test` measures generalisation):\n");
            }
        }
        for (split, n, e) in &extras.by_split {
            let _ =
                writeln!(s, "- {}: {:.1}% of {n} tasks (95% bootstrap CI {:.1}%–{:.1}%)", split.as_str(), 100.0 * e.point, 100.0 * e.lower, 100.0 * e.upper);
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "Outcome per task: *beat* if candidate < tuned − tol, *match* if |candidate − tuned| ≤ tol, else *lose*; tol = the tuned configuration's seed std (floor 1e-4 × |tuned|). Loss = seed-mean final train loss; a diverged run counts as +∞ (a loss). Tuned = the lowest seed-mean over each protocol's configurations, best over all baselines.\n");
    let _ = writeln!(s, "## Optimizers\n");
    if study.arms[cand].configs.len() > 1 {
        let edge = extras
            .candidate_at_grid_edge
            .map_or(String::new(), |n| format!("; its tuned configuration sits at an edge of its grid on {n} of {} tasks", rows.len()));
        let _ = writeln!(
            s,
            "The candidate was tuned as the baselines are: {} configurations, the lowest seed-mean final train loss chosen per task{edge}.\n",
            study.arms[cand].configs.len()
        );
    }
    for a in &study.arms {
        let role = if a.role == ArmRole::Candidate { "candidate" } else { "baseline" };
        let _ = writeln!(
            s,
            "- {} — {role}, {} seed(s){}",
            a.legend,
            a.seeds,
            if a.speedup_reference { "; speedup reference (LR-tuned Adam envelope)" } else { "" }
        );
    }
    protocol_sections(&mut s, study, extras);
    let (beat, matched) = (
        rows.iter().filter(|r| r.outcome == crate::metrics::Outcome::Beat).count(),
        rows.iter().filter(|r| r.outcome == crate::metrics::Outcome::Match).count(),
    );
    let _ = writeln!(s, "\nAll {} tasks: {beat} beat, {matched} match, {} lose.\n", rows.len(), rows.len() - beat - matched);
    let _ = writeln!(
        s,
        "The headline interval resamples tasks and, within each, the seeds of the candidate and of the tuned configuration; resampling tasks alone gives {:.1}%–{:.1}%.\n",
        100.0 * extras.tasks_only.lower,
        100.0 * extras.tasks_only.upper
    );
    let fmt_est = |e: &Option<Estimate>| e.map_or("–".to_string(), |e| format!("{:.3} (95% CI {:.3}–{:.3})", e.point, e.lower, e.upper));
    let _ = writeln!(s, "## Speedup over LR-tuned Adam\n");
    let _ = writeln!(s, "- interquartile mean of the step speedup: {}", fmt_est(&extras.iqm_speedup));
    let _ = writeln!(
        s,
        "- wall-clock-adjusted speedup (step speedup ÷ per-step cost relative to Adam): machine-dependent, in `wall_clock.md` / `wall_clock.csv`\n"
    );
    let _ = writeln!(s, "## Performance profile (fraction of tasks within τ × the best final loss)\n");
    let _ = write!(s, "| τ |");
    for a in &study.arms {
        let _ = write!(s, " {} |", a.legend);
    }
    let _ = write!(s, "\n|---|");
    for _ in &study.arms {
        let _ = write!(s, "---:|");
    }
    let _ = writeln!(s);
    for (t, vals) in &extras.profile_rows {
        let _ = write!(s, "| {t} |");
        for v in vals {
            let _ = write!(s, " {:.2} |", v);
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "## Win rate by parameters × step budget\n\n| params | steps | n | wins | win rate |\n|---|---|---:|---:|---:|");
    for b in bins {
        let _ = writeln!(
            s,
            "| 1e{}–1e{} | 1e{}–1e{} | {} | {} | {:.0}% |",
            b.params_decade,
            b.params_decade + 1,
            b.steps_decade,
            b.steps_decade + 1,
            b.n,
            b.wins,
            100.0 * b.win_rate()
        );
    }
    let _ = writeln!(s, "\n## Tasks\n\n| task | split | params | steps | candidate | tuned | tuned by | tuned config | outcome | speedup | diverged runs (cand/base) |\n|---|---|---:|---:|---:|---:|---|---|---|---:|---|");
    for r in rows {
        let sp = r.arms[cand].speedup.map_or("–".into(), |x| if x.at_cap { format!("≥{}", x.value) } else { format!("{:.2}", x.value) });
        let tuned = &r.arms[r.best_baseline];
        let base_div: usize = r.arms.iter().enumerate().filter(|(i, _)| *i != cand).map(|(_, a)| a.diverged_runs).sum();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {sp} | {}/{} |",
            r.id,
            r.split.as_str(),
            r.params,
            r.steps,
            loss(r.arms[cand].mean),
            loss(tuned.mean),
            study.arms[r.best_baseline].name,
            study.arms[r.best_baseline].configs[tuned.tuned_config],
            r.outcome.as_str(),
            r.arms[cand].diverged_runs,
            base_div
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
    for a in study.arms.iter().filter(|a| a.provenance.is_some()) {
        let _ = writeln!(s, "\n{}: {}.", a.legend, a.provenance.as_deref().unwrap_or_default());
    }
    s
}

/// `beatmatch-0.1.0+sem2 (12 records), beatmatch-0.1.0+sem3 (40 records)`.
pub fn versions_line(versions: &std::collections::BTreeMap<String, usize>) -> String {
    versions.iter().map(|(v, n)| format!("{v} ({n} records)")).collect::<Vec<_>>().join(", ")
}

/// What the step-protocol workers of the study reported, per optimizer; a warning in bold when
/// one optimizer's records come from more than one set of library versions (a rerun after an
/// upgrade mixes them: the records stay, each naming its own). Empty when no worker ran.
pub fn worker_versions(by_optimizer: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>) -> String {
    let mut s = String::new();
    for (optimizer, sets) in by_optimizer {
        let listed: Vec<String> = sets.iter().map(|(v, n)| format!("{v} ({n} records)")).collect();
        if sets.len() > 1 {
            let _ = writeln!(
                s,
                "\n**Mixed worker versions**: the records of `{optimizer}` come from {} sets of library versions: {}.",
                sets.len(),
                listed.join("; ")
            );
        } else {
            let _ = writeln!(s, "\nWorker versions of `{optimizer}`: {}.", listed.join("; "));
        }
    }
    s
}

#[cfg(test)]
mod worker_versions_tests {
    use super::worker_versions;

    #[test]
    fn mixed_worker_versions_are_named_in_bold_and_one_set_is_stated() {
        let one = [("python@abc".to_string(), [("numpy 2.4.6".to_string(), 12)].into())].into();
        assert_eq!(worker_versions(&one), "\nWorker versions of `python@abc`: numpy 2.4.6 (12 records).\n");
        let two = [("python@abc".to_string(), [("numpy 2.4.6".to_string(), 12), ("numpy 2.5.0".to_string(), 3)].into())].into();
        let s = worker_versions(&two);
        assert!(s.contains("**Mixed worker versions**") && s.contains("numpy 2.4.6 (12 records); numpy 2.5.0 (3 records)"), "{s}");
        assert_eq!(worker_versions(&Default::default()), "");
    }
}
