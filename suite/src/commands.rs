//! What each `suite` command does, given its options already parsed (the binary's `cli`
//! only parses and dispatches here).

use crate::duration::human;
use crate::estimate::Calibration;
use crate::study::{prepare, run_study, Selection, StudyOptions};
use anyhow::{bail, Context, Result};
use beatmatch_core::Store;
use beatmatch_reports::ci;
use beatmatch_reports::ReportOptions;
use beatmatch_tasks::datasets::{fetch, DataSource, DatasetName};
use beatmatch_tasks::{Task, Tier};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `suite data status`: every data set with its source, or how to get it; exit 1 when one is
/// missing.
pub fn data_status() -> Result<ExitCode> {
    let mut missing = 0;
    for d in DatasetName::ALL {
        let (shape, classes) = d.signature();
        let where_ = match d.locate() {
            Ok(DataSource::Embedded) => "embedded in the binary".to_string(),
            Ok(DataSource::Generated) => "generated on first use (fixed recipe and seed)".to_string(),
            Ok(DataSource::Dir(p)) => format!("found in {}", p.display()),
            Err(e) => {
                missing += 1;
                format!("MISSING — {}", e.how_to_get)
            }
        };
        let what = if d.is_text() { format!("byte stream, {classes}-token vocabulary") } else { format!("{shape:?}, {classes} classes") };
        println!("{:<14} {:<34} {where_}", d.as_str(), what);
    }
    Ok(if missing > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `suite data fetch NAME`.
pub fn data_fetch(name: &str) -> Result<ExitCode> {
    let d =
        DatasetName::parse(name).with_context(|| format!("unknown data set `{name}`; expected one of: {}", DatasetName::ALL.map(|d| d.as_str()).join(", ")))?;
    let dir = fetch::fetch(d, &mut |line| eprintln!("{line}"))?;
    match d.locate() {
        Ok(_) => eprintln!("{name}: installed in {}", dir.display()),
        Err(e) => bail!("{name}: downloaded to {}, but the loader still does not find it: {e}", dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `suite kinds`: the hand-designed kinds (the README's table), the learned architectures and
/// the report's figures, each from its one list.
pub fn kinds() -> Result<ExitCode> {
    print!("{}", beatmatch_baselines::kinds_markdown());
    println!();
    println!("| architecture | label | meta-trained here | horizon-free |\n|---|---|---|---|");
    for a in beatmatch_learned::Architecture::all() {
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!("| `{}` | {} | {} | {} |", a.as_str(), a.label(), yes(a.meta_trainable()), yes(a.is_horizon_free()));
    }
    println!();
    println!("figures: {}", beatmatch_reports::figures::names().join(", "));
    Ok(ExitCode::SUCCESS)
}

/// `suite list`: the tasks of a selection.
pub fn list(sel: &Selection) -> Result<ExitCode> {
    let tasks = sel.tasks()?;
    println!("{:<56} {:>10} {:>7}  {:<10} {:<6} data", "task", "params", "steps", "split", "device");
    for t in &tasks {
        let data = match t.problem.dataset.locate() {
            Ok(_) => "available",
            Err(_) => "missing (see `suite data status`)",
        };
        println!("{:<56} {:>10} {:>7}  {:<10} {:<6} {data}", t.id(), t.params(), t.steps, t.split.as_str(), t.device.as_str());
    }
    eprintln!("{} tasks in tier {}", tasks.len(), sel.tier.as_str());
    Ok(ExitCode::SUCCESS)
}

/// `suite run`: train, then write the report (when `report` says how); exit 1 when a run
/// failed or was left for another host. A shard writes no report: `suite report DIR` merges
/// all shards' records once they are done.
pub fn run(opts: &StudyOptions, report_opts: Option<ReportOptions>) -> Result<ExitCode> {
    let (out, summary) = run_study(opts)?;
    match (report_opts, opts.shard) {
        (Some(_), Some(s)) => eprintln!("shard {s} done; once every shard is, `suite report {}` writes the report", out.display()),
        (Some(r), None) => {
            report(&out, &r)?;
        }
        (None, _) => {}
    }
    Ok(if summary.failed > 0 || summary.left > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `suite report DIR`.
pub fn report(dir: &Path, opts: &ReportOptions) -> Result<ExitCode> {
    if !Store::at(dir).has_study() {
        bail!("{}: no study.json (is this a result directory written by `suite run`? `suite status` lists the studies under a folder)", dir.display());
    }
    let r = beatmatch_reports::write_report(dir, opts)?;
    eprintln!("{}", r.headline);
    for line in &r.by_split {
        eprintln!("{line}");
    }
    eprintln!("report written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `suite gc DIR [--delete]`: what no current study references, and crash leftovers.
pub fn gc(dir: &Path, delete: bool) -> Result<ExitCode> {
    let store = Store::at(dir);
    if !store.runs_dir().is_dir() {
        bail!("{}: not a result directory (no runs/ folder)", dir.display());
    }
    if !store.has_study() {
        eprintln!("{}: no study.json, so no record is referenced", dir.display());
    }
    let g = store.garbage()?;
    let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    let bytes: u64 = g.paths().map(size).sum();
    for (what, paths) in [("unreferenced record files", &g.records), ("temporary files left by crashes", &g.temporaries), ("stale claims", &g.stale_claims)] {
        println!("{} {what}", paths.len());
        for p in paths {
            println!("  {}", p.display());
        }
    }
    let n = g.paths().count();
    if !delete {
        eprintln!("{n} files, {:.1} MB; `suite gc {} --delete` removes them", bytes as f64 / 1e6, dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut removed = 0;
    for p in g.paths() {
        match std::fs::remove_file(p) {
            Ok(()) => removed += 1,
            Err(e) => eprintln!("could not remove {}: {e}", p.display()),
        }
    }
    eprintln!("removed {removed} of {n} files ({:.1} MB)", bytes as f64 / 1e6);
    Ok(if removed == n { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `suite plan`: what `suite run` would do with the same options, and how long it would take;
/// with `split`, how that many shards would divide it.
pub fn plan(opts: &StudyOptions, split: Option<usize>) -> Result<ExitCode> {
    let p = prepare(opts)?;
    let store = Store::at(&p.out);
    let pending: Vec<&crate::plan::Job> = p.jobs.iter().filter(|j| store.finished(&j.key.hash()).is_none()).collect();
    let problems = p.tasks.iter().map(|t| t.problem.hash()).collect::<BTreeSet<_>>().len();
    println!("tier {}: {} tasks to run ({problems} problems); {} skipped", opts.selection.tier.as_str(), p.tasks.len(), p.study.skipped.len());
    println!("runs: {} planned, {} already in {}, {} to run", p.jobs.len(), p.jobs.len() - pending.len(), p.out.display(), pending.len());
    let mut cal = Calibration::load();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("calibrating {pos}/{len} problems {wide_bar} ETA {eta}").expect("valid template"));
    let est = cal.estimate(&pending, &p.target, &p.factory, opts.population, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    cal.save()?;
    let est = est?;
    println!(
        "{}: {} on {} workers ({} of single-worker work; longest population or run {}); per-step costs of {} problems measured now, {} cached",
        p.target.key,
        human(est.wall_s(p.workers)),
        p.workers,
        human(est.total_s),
        human(est.longest_s),
        est.measured,
        est.from_cache
    );
    for (group, secs) in &est.by_group {
        println!("  {group:<32} {:>14} single-worker", human(*secs));
    }
    if p.target.engine.is_device() {
        // Per problem on this device: what ci/gpu/verify.sh's throughput table quotes.
        use beatmatch_tasks::memory::{estimate as memory, human_bytes};
        println!("  {:<52} {:>12} {:>10} {:>10} {:>12} {:>12}", "problem", "params", "step ms", "steps/s", "measured", "estimated");
        let mut seen = BTreeSet::new();
        for t in p.tasks.iter().filter(|t| seen.insert(t.problem.id())) {
            let Some(c) = est.problems.get(&t.problem.id()) else { continue };
            let ms = 1e3 * c.fixed.step_s;
            let measured = if c.fixed.device_bytes > 0 { human_bytes(c.fixed.device_bytes) } else { "-".into() };
            println!(
                "  {:<52} {:>12} {ms:>10.3} {:>10.1} {measured:>12} {:>12}",
                t.problem.id(),
                t.params(),
                1e3 / ms.max(1e-9),
                human_bytes(memory(&t.problem, 2.0).total())
            );
        }
    }
    if let Some(n) = split.filter(|&n| n > 0) {
        // The split is made with the deterministic cost model (steps × params × batch), which
        // every host computes alike; the calibration above is this machine's alone.
        let groups = p.shard_groups()?;
        let loads = crate::shard::loads(&groups, &crate::shard::assign(&groups, n), n);
        let total: f64 = loads.iter().sum::<f64>().max(f64::MIN_POSITIVE);
        let largest = groups.iter().map(|g| g.1).fold(0.0, f64::max) / total;
        let max = loads.iter().cloned().fold(0.0, f64::max) / total;
        println!(
            "{n} shards over the whole selection ({} run groups, data present or not), by the cost model: the largest shard has {:.1}% of the work (an even split: {:.1}%); the largest run group alone is {:.1}%",
            groups.len(),
            100.0 * max,
            100.0 / n as f64,
            100.0 * largest
        );
        for (i, l) in loads.iter().enumerate().take(16) {
            println!("  shard {}/{n}: {:>5.1}%", i + 1, 100.0 * l / total);
        }
        if n > 16 {
            println!("  … {} more", n - 16);
        }
    }
    if !p.device_skipped.is_empty() {
        let largest = p.device_skipped.iter().map(Task::params).max().unwrap_or(0);
        println!(
            "cuda: {} tasks (up to {largest} parameters) need a CUDA GPU: not estimated on {} (plan them with --device cuda)",
            p.device_skipped.len(),
            p.target.key
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of a study run for one candidate on `tier` with the default baselines, into `out`,
/// without a report.
pub fn study_for(sel: &Selection, candidate: &str, out: PathBuf, seeds: Option<u32>, jobs: Option<usize>) -> StudyOptions {
    StudyOptions { selection: sel.clone(), candidate: candidate.to_string(), out: Some(out), seeds, jobs, ..StudyOptions::new(sel.tier) }
}

/// `suite compare A B`: each side a result directory, or a candidate to run on `tier`.
pub fn compare(a: &str, b: &str, sel: &Selection, out: Option<PathBuf>, seeds: Option<u32>, jobs: Option<usize>) -> Result<ExitCode> {
    let out = out.unwrap_or_else(|| PathBuf::from("results/compare"));
    let mut dirs = Vec::new();
    for (side, what) in [("a", a), ("b", b)] {
        let p = PathBuf::from(what);
        if Store::at(&p).has_study() {
            dirs.push(p);
        } else {
            eprintln!("{side}: running candidate {what} on tier {}", sel.tier.as_str());
            let (dir, summary) = run_study(&study_for(sel, what, out.join(side), seeds, jobs))?;
            if summary.failed > 0 {
                bail!("{side}: {} runs failed", summary.failed);
            }
            dirs.push(dir);
        }
    }
    let c = beatmatch_reports::compare::compare_dirs(&dirs[0], &dirs[1])?;
    beatmatch_reports::compare::write(&c, &out)?;
    let (a_wins, b_wins, ties) = c.counts();
    eprintln!(
        "B better on {b_wins}, tie {ties}, A better on {a_wins} of {} tasks; sign test p = {:.4}, Wilcoxon p = {:.4}",
        c.tasks.len(),
        c.sign.p_value,
        c.wilcoxon.p_value
    );
    eprintln!("comparison written to {}", out.join("compare.md").display());
    Ok(ExitCode::SUCCESS)
}

/// `suite ci` options.
#[derive(Clone, Debug)]
pub struct CiOptions {
    /// The optimizer under test.
    pub candidate: String,
    /// Reference results.
    pub reference: PathBuf,
    /// Result directory for the run and `ci-report.md`.
    pub out: PathBuf,
    /// Rewrite the reference instead of checking against it.
    pub update_reference: bool,
    /// A task on only one side is an error.
    pub strict: bool,
    /// Tolerance in standard errors.
    pub z: f64,
    /// Parallel workers.
    pub jobs: Option<usize>,
    /// JUnit XML output.
    pub junit: Option<PathBuf>,
    /// Pull-request comment output.
    pub markdown: Option<PathBuf>,
}

/// `suite ci`: run the smoke tier and gate on `ci/reference.json`.
pub fn ci(o: &CiOptions) -> Result<ExitCode> {
    let smoke = Selection { tier: Tier::Smoke, registry: None, only: None };
    let (dir, summary) = run_study(&study_for(&smoke, &o.candidate, o.out.clone(), None, o.jobs))?;
    if summary.failed > 0 {
        bail!("{} runs failed; see the messages above", summary.failed);
    }
    report(&dir, &ReportOptions::default())?;
    let loaded = beatmatch_reports::analysis::load(&dir)?;
    let rows = beatmatch_reports::analysis::analyse(&loaded)?;
    if o.update_reference {
        let r = ci::reference_from(&rows, &o.candidate, Tier::Smoke.as_str(), &loaded.study.device);
        ci::write_reference(&o.reference, &r)?;
        eprintln!("reference with {} tasks written to {}", r.tasks.len(), o.reference.display());
        return Ok(ExitCode::SUCCESS);
    }
    let reference = ci::read_reference(&o.reference)?;
    let check = ci::check(&reference, &rows, o.z);
    let mut records: Vec<String> = rows.iter().flat_map(|r| r.arms[r.candidate].records.clone()).collect();
    records.sort();
    std::fs::write(dir.join("ci-report.md"), ci::markdown(&reference, &o.candidate, &check, o.z, &records))?;
    if let Some(path) = &o.junit {
        std::fs::write(path, ci::junit(&check, &o.candidate, o.strict)).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &o.markdown {
        std::fs::write(path, ci::pr_markdown(&reference, &o.candidate, &check, o.z)).with_context(|| format!("writing {}", path.display()))?;
    }
    let regressed = check.regressed();
    for v in &regressed {
        eprintln!("REGRESSION {}: final loss {:.5} -> {:.5} (+{:.5}, tolerance {:.5})", v.task, v.reference, v.current, v.current - v.reference, v.tolerance);
    }
    if o.strict && (!check.missing.is_empty() || !check.extra.is_empty()) {
        eprintln!("strict: tasks missing now: {:?}; tasks not in the reference: {:?}", check.missing, check.extra);
        return Ok(ExitCode::from(1));
    }
    eprintln!("ci: {} of {} tasks regressed; report in {}", regressed.len(), check.verdicts.len(), dir.join("ci-report.md").display());
    Ok(if regressed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
