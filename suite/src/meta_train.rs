//! `suite meta-train --recipe FILE [--out DIR]`: run (or resume) a meta-training recipe with a
//! progress display and a log file, then draw `meta_loss.png`.

use crate::executor::Progress;
use anyhow::{Context, Result};
use beatmatch_meta::trainer::{self, Layout};
use beatmatch_meta::{inner::InnerTasks, recipe};
use beatmatch_reports::figures::{meta_loss, Format};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Options of `suite meta-train`.
pub struct MetaTrainOptions {
    /// Recipe file.
    pub recipe: PathBuf,
    /// Output folder [default: results/meta/NAME].
    pub out: Option<PathBuf>,
    /// Worker threads [default: cores].
    pub jobs: Option<usize>,
    /// Progress display.
    pub progress: Progress,
    /// Registry directory [default: the built-in registry].
    pub registry: Option<PathBuf>,
}

/// Run the command.
pub fn run(o: &MetaTrainOptions) -> Result<ExitCode> {
    let registry = match &o.registry {
        Some(dir) => beatmatch_tasks::registry::load_dir(dir)?,
        None => beatmatch_tasks::registry::embedded()?,
    };
    let r = recipe::load(&o.recipe, &registry)?;
    let out = o.out.clone().unwrap_or_else(|| Path::new("results/meta").join(&r.recipe.name));
    let jobs = o.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let template = trainer::initial_theta(&r)?;
    let (train, validation) = trainer::registry_tasks(&r, &template)?;
    let budgets: Vec<u64> = r.validation.iter().map(|t| t.steps).collect();
    let layout = Layout::new(&out);
    let setup = trainer::Setup { recipe: &r, template: &template, train: &train, validation: &validation, validation_budgets: &budgets };
    let start = trainer::open(&setup, &out)?;
    let previous = start.step;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(layout.log()).with_context(|| format!("opening {}", layout.log().display()))?;
    let head = format!(
        "meta-train {} ({} pairs of {:?}, {} outer steps, {} training problems, {} validation tasks, {} meta-parameters) into {} on {jobs} threads{}",
        r.recipe.name,
        r.recipe.pairs,
        r.recipe.estimator,
        r.recipe.outer_steps,
        train.len(),
        validation.len(),
        template.count(),
        out.display(),
        if previous > 0 { format!("; resuming after outer step {previous}") } else { String::new() }
    );
    eprintln!("{head}");
    writeln!(log, "{head}")?;
    let bar = if o.progress == Progress::Bar { ProgressBar::new(r.recipe.outer_steps) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta} {msg}").expect("valid template"));
    bar.set_position(previous);
    bar.reset_eta();
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut inner_steps = 0u64;
    let every = Progress::interval();
    let state = trainer::run(&setup, start, &out, jobs, None, &mut |rep| {
        let row = rep.row;
        inner_steps += row.inner_steps;
        let secs = started.elapsed().as_secs_f64();
        let rate = inner_steps as f64 / secs.max(1e-9);
        let best = rep.best.map(|(s, v)| format!(", best validation {v:.4} at {s}")).unwrap_or_default();
        let msg = format!("meta-loss {:.4} (smoothed {:.4}){best}, {rate:.0} inner steps/s", row.meta_loss, row.smoothed);
        bar.set_position(row.outer_step);
        bar.set_message(msg.clone());
        let done = row.outer_step - rep.resumed_from;
        let eta = secs / done.max(1) as f64 * (rep.total - row.outer_step) as f64;
        let line = format!(
            "outer step {}/{}: {msg}; lr {:.2e}, |g| {:.3}{}{}; {} elapsed, ETA {}",
            row.outer_step,
            rep.total,
            row.lr,
            row.grad_norm,
            row.validation.map(|v| format!(", validation {v:.4}")).unwrap_or_default(),
            if rep.checkpointed { ", checkpoint written" } else { "" },
            crate::duration::human(secs),
            crate::duration::human(eta)
        );
        let _ = writeln!(log, "{line}");
        if o.progress == Progress::Lines && (last_line.elapsed() >= every || row.outer_step == rep.total) {
            last_line = Instant::now();
            eprintln!("{line}");
        }
    })?;
    bar.finish_and_clear();
    let points: Vec<meta_loss::Point> = state.rows.iter().map(|r| (r.outer_step, r.meta_loss, r.smoothed, r.validation)).collect();
    meta_loss::draw(&layout.plot(), &[Format::Png], &points, &format!("meta-training {}", r.recipe.name))?;
    let secs = started.elapsed().as_secs_f64();
    let tail = format!(
        "done: {} outer steps ({} this run) in {}, {:.0} inner steps/s; best validation {}; checkpoints: {} (final), {} (best)",
        state.step,
        state.step - previous,
        crate::duration::human(secs),
        inner_steps as f64 / secs.max(1e-9),
        state.best.map(|(s, v)| format!("{v:.4} at outer step {s}")).unwrap_or_else(|| "none".into()),
        layout.final_checkpoint().display(),
        layout.best().display()
    );
    eprintln!("{tail}");
    writeln!(log, "{tail}")?;
    Ok(ExitCode::SUCCESS)
}
