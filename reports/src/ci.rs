//! `suite ci`: the regression gate. Runs the smoke tier, compares the candidate's per-task
//! final loss with the reference results in `ci/reference.json`, writes `ci-report.md`, and
//! fails when a task got worse by more than its seed noise allows.
//!
//! Tolerance per task: `z · √(σ_ref²/n_ref + σ_now²/n_now)` — z standard errors of the
//! difference of two seed means (z = 3 by default) — floored at 1e-4 × |reference| so a
//! deterministic rerun with zero seed spread still compares equal within float noise.

use crate::analysis::TaskRow;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::path::Path;

/// Version of the reference file's schema.
pub const REFERENCE_SCHEMA_VERSION: u32 = 1;

/// One task's reference result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceTask {
    /// Task id.
    pub task: String,
    /// Candidate's seed-mean final train loss (null: diverged).
    pub loss_mean: Option<f64>,
    /// Seed standard deviation.
    pub loss_std: f64,
    /// Seeds.
    pub seeds: usize,
    /// Outcome against the tuned baselines then.
    pub outcome: String,
    /// Record hashes of the candidate runs.
    pub records: Vec<String>,
}

/// `ci/reference.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// [`REFERENCE_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Candidate spec the reference was made with.
    pub candidate: String,
    /// Tier.
    pub tier: String,
    /// Code version that made it.
    pub code_version: String,
    /// Device.
    pub device: String,
    /// Tasks.
    pub tasks: Vec<ReferenceTask>,
}

/// Build a reference from the current rows.
pub fn reference_from(rows: &[TaskRow], candidate: &str, tier: &str, device: &str) -> Reference {
    Reference {
        schema_version: REFERENCE_SCHEMA_VERSION,
        candidate: candidate.to_string(),
        tier: tier.to_string(),
        code_version: beatmatch_core::code_version(),
        device: device.to_string(),
        tasks: rows
            .iter()
            .map(|r| {
                let c = &r.arms[r.candidate];
                let recs: Vec<String> = c.records.clone();
                ReferenceTask {
                    task: r.id.clone(),
                    loss_mean: c.mean.is_finite().then_some(c.mean),
                    loss_std: if c.std.is_finite() { c.std } else { 0.0 },
                    seeds: c.finals.len(),
                    outcome: r.outcome.as_str().to_string(),
                    records: recs,
                }
            })
            .collect(),
    }
}

/// How a task's loss moved against the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Worse by more than the tolerance, or diverged where the reference did not.
    Regressed,
    /// Better by more than the tolerance.
    Improved,
    /// Within the tolerance (or diverged on both sides).
    Unchanged,
}

impl Change {
    /// Lower-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Regressed => "regressed",
            Change::Improved => "improved",
            Change::Unchanged => "unchanged",
        }
    }
}

/// One task's verdict.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Task id.
    pub task: String,
    /// Reference loss (+∞ diverged).
    pub reference: f64,
    /// Current loss (+∞ diverged).
    pub current: f64,
    /// Allowed difference.
    pub tolerance: f64,
    /// How it moved.
    pub status: Change,
    /// Outcome then → now.
    pub outcome: (String, String),
}

/// The gate's findings.
#[derive(Clone, Debug)]
pub struct Check {
    /// One verdict per task present on both sides.
    pub verdicts: Vec<Verdict>,
    /// Tasks in the reference but not run now.
    pub missing: Vec<String>,
    /// Tasks run now but not in the reference.
    pub extra: Vec<String>,
}

impl Check {
    /// The verdicts that regressed.
    pub fn regressed(&self) -> Vec<&Verdict> {
        self.verdicts.iter().filter(|v| v.status == Change::Regressed).collect()
    }
}

/// Compare current rows with the reference: verdicts and the tasks present on only one side.
pub fn check(reference: &Reference, rows: &[TaskRow], z: f64) -> Check {
    let mut verdicts = Vec::new();
    let mut missing_now = Vec::new();
    for rt in &reference.tasks {
        let Some(r) = rows.iter().find(|r| r.id == rt.task) else {
            missing_now.push(rt.task.clone());
            continue;
        };
        let c = &r.arms[r.candidate];
        let (now, then) = (c.mean, rt.loss_mean.unwrap_or(f64::INFINITY));
        let now_std = if c.std.is_finite() { c.std } else { 0.0 };
        let se = (rt.loss_std.powi(2) / rt.seeds.max(1) as f64 + now_std.powi(2) / c.finals.len().max(1) as f64).sqrt();
        let tol = (z * se).max(1e-4 * then.abs());
        let status = if then.is_infinite() && now.is_infinite() {
            Change::Unchanged
        } else if now > then + tol || (now.is_infinite() && then.is_finite()) {
            Change::Regressed
        } else if now < then - tol {
            Change::Improved
        } else {
            Change::Unchanged
        };
        verdicts.push(Verdict {
            task: rt.task.clone(),
            reference: then,
            current: now,
            tolerance: tol,
            status,
            outcome: (rt.outcome.clone(), r.outcome.as_str().to_string()),
        });
    }
    let extra = rows.iter().filter(|r| !reference.tasks.iter().any(|t| t.task == r.id)).map(|r| r.id.clone()).collect();
    Check { verdicts, missing: missing_now, extra }
}

/// Render `ci-report.md`.
pub fn markdown(reference: &Reference, candidate: &str, check: &Check, z: f64, records: &[String]) -> String {
    let Check { verdicts, missing, extra } = check;
    let mut s = String::new();
    let regressed = check.regressed();
    let _ = writeln!(s, "# beatmatch CI report\n");
    let _ = writeln!(
        s,
        "**{}**: {} of {} tasks regressed, {} improved; candidate `{candidate}` against the reference made with `{}` by {} on {}.\n",
        if regressed.is_empty() { "PASS" } else { "FAIL" },
        regressed.len(),
        verdicts.len(),
        verdicts.iter().filter(|v| v.status == Change::Improved).count(),
        reference.candidate,
        reference.code_version,
        reference.device
    );
    let _ = writeln!(s, "A task regresses when its seed-mean final train loss exceeds the reference by more than {z} standard errors of the difference of the two seed means (floor 1e-4 × |reference|), or it diverged where the reference did not.\n");
    if !regressed.is_empty() {
        let _ = writeln!(s, "## Regressions\n");
        for v in &regressed {
            let _ = writeln!(
                s,
                "- `{}`: {:.5} → {:.5} ({:+.5}, tolerance {:.5}); outcome {} → {}",
                v.task,
                v.reference,
                v.current,
                v.current - v.reference,
                v.tolerance,
                v.outcome.0,
                v.outcome.1
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "## All tasks\n\n| task | reference | now | now − ref | tolerance | status | outcome |\n|---|---:|---:|---:|---:|---|---|");
    for v in verdicts {
        let _ = writeln!(
            s,
            "| {} | {:.5} | {:.5} | {:+.5} | {:.5} | {} | {} → {} |",
            v.task,
            v.reference,
            v.current,
            v.current - v.reference,
            v.tolerance,
            v.status.as_str(),
            v.outcome.0,
            v.outcome.1
        );
    }
    if !missing.is_empty() {
        let _ = writeln!(s, "\nIn the reference but not run now: {}", missing.join(", "));
    }
    if !extra.is_empty() {
        let _ = writeln!(s, "\nRun now but not in the reference: {}", extra.join(", "));
    }
    let _ = writeln!(s, "\n## Provenance\n\nCurrent candidate records: {}", records.join(" "));
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// The gate as JUnit XML (the schema GitHub's and GitLab's test reports read): one test suite,
/// one test case per task — a regression is a `<failure>` naming before → after and the
/// tolerance; a task in the reference but not run now is `<skipped>` (with `strict`, a
/// failure); a task not in the reference is a passing case with that note.
pub fn junit(check: &Check, candidate: &str, strict: bool) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    let mut skipped = 0;
    for v in &check.verdicts {
        let _ = write!(cases, "    <testcase classname=\"beatmatch.ci\" name=\"{}\" time=\"0\">", xml_escape(&v.task));
        if v.status == Change::Regressed {
            failures += 1;
            let msg = format!(
                "final loss {:.5} -> {:.5} ({:+.5}), tolerance {:.5}; outcome {} -> {}",
                v.reference,
                v.current,
                v.current - v.reference,
                v.tolerance,
                v.outcome.0,
                v.outcome.1
            );
            let _ = write!(cases, "<failure message=\"{}\" type=\"regression\">{}</failure>", xml_escape(&msg), xml_escape(&msg));
        } else {
            let _ = write!(cases, "<system-out>{}: {:.5} -> {:.5} (tolerance {:.5})</system-out>", v.status.as_str(), v.reference, v.current, v.tolerance);
        }
        cases.push_str("</testcase>\n");
    }
    for t in &check.missing {
        let _ = write!(cases, "    <testcase classname=\"beatmatch.ci\" name=\"{}\" time=\"0\">", xml_escape(t));
        if strict {
            failures += 1;
            cases.push_str("<failure message=\"in the reference but not run\" type=\"missing\">in the reference but not run</failure>");
        } else {
            skipped += 1;
            cases.push_str("<skipped message=\"in the reference but not run\"/>");
        }
        cases.push_str("</testcase>\n");
    }
    for t in &check.extra {
        let _ = write!(cases, "    <testcase classname=\"beatmatch.ci\" name=\"{}\" time=\"0\">", xml_escape(t));
        if strict {
            failures += 1;
            cases.push_str("<failure message=\"not in the reference\" type=\"extra\">not in the reference</failure>");
        } else {
            cases.push_str("<system-out>not in the reference</system-out>");
        }
        cases.push_str("</testcase>\n");
    }
    let tests = check.verdicts.len() + check.missing.len() + check.extra.len();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"beatmatch ci\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n  <testsuite name=\"beatmatch ci: {}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"0\">\n{cases}  </testsuite>\n</testsuites>\n",
        xml_escape(candidate)
    )
}

/// The gate as a pull-request comment: a summary line, the tasks that moved, and every task in
/// a collapsed block.
pub fn pr_markdown(reference: &Reference, candidate: &str, check: &Check, z: f64) -> String {
    let regressed = check.regressed();
    let improved = check.verdicts.iter().filter(|v| v.status == Change::Improved).count();
    let mut s = String::new();
    let icon = if regressed.is_empty() { "✅" } else { "❌" };
    let _ = writeln!(
        s,
        "{icon} **beatmatch CI {}**: {} of {} tasks regressed, {improved} improved — `{candidate}` against the reference of `{}` ({}).\n",
        if regressed.is_empty() { "PASS" } else { "FAIL" },
        regressed.len(),
        check.verdicts.len(),
        reference.candidate,
        reference.code_version
    );
    let moved: Vec<&Verdict> = check.verdicts.iter().filter(|v| v.status != Change::Unchanged).collect();
    if moved.is_empty() {
        let _ = writeln!(s, "No task moved beyond its tolerance ({z} standard errors of the difference of seed means).\n");
    } else {
        let _ = writeln!(s, "| task | before | after | change | tolerance | |\n|---|---:|---:|---:|---:|---|");
        for v in &moved {
            let _ = writeln!(
                s,
                "| `{}` | {:.5} | {:.5} | {:+.5} | {:.5} | {} |",
                v.task,
                v.reference,
                v.current,
                v.current - v.reference,
                v.tolerance,
                v.status.as_str()
            );
        }
        let _ = writeln!(s);
    }
    if !check.missing.is_empty() || !check.extra.is_empty() {
        let _ = writeln!(s, "Not compared: {} in the reference only, {} run now only.\n", check.missing.len(), check.extra.len());
    }
    let _ = writeln!(
        s,
        "<details><summary>All {} tasks</summary>\n\n| task | before | after | change | tolerance | status |\n|---|---:|---:|---:|---:|---|",
        check.verdicts.len()
    );
    for v in &check.verdicts {
        let _ = writeln!(
            s,
            "| `{}` | {:.5} | {:.5} | {:+.5} | {:.5} | {} |",
            v.task,
            v.reference,
            v.current,
            v.current - v.reference,
            v.tolerance,
            v.status.as_str()
        );
    }
    let _ = writeln!(s, "\n</details>");
    s
}

/// Write a reference file atomically.
pub fn write_reference(path: &Path, r: &Reference) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok(beatmatch_core::store::write_json_atomic(path, r)?)
}

/// Read a reference file.
pub fn read_reference(path: &Path) -> Result<Reference> {
    let text = std::fs::read(path).with_context(|| format!("reading CI reference {} (create it with `suite ci --update-reference`)", path.display()))?;
    let r: Reference = serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
    if r.schema_version != REFERENCE_SCHEMA_VERSION {
        bail!("{}: schema version {}, expected {REFERENCE_SCHEMA_VERSION}", path.display(), r.schema_version);
    }
    Ok(r)
}
