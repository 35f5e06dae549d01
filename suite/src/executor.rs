//! Executing planned runs: skip what the store already holds, run the rest on `jobs` worker
//! threads (one single-threaded run per core), write each record as soon as it finishes.
//!
//! A diverged run is a result; an error or panic inside a run is recorded as `failed` (and
//! retried next time) — neither stops the other runs.

use crate::optimizers::Checkpoints;
use crate::plan::{cost, Job};
use crate::store::Store;
use anyhow::Result;
use beatmatch_core::{RunRecord, RunStatus, RECORD_SCHEMA_VERSION};
use beatmatch_tasks::train::{train, RunSettings, TrainOutcome};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Totals of one execution.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExecSummary {
    /// Runs already in the store.
    pub cached: usize,
    /// Runs trained now.
    pub trained: usize,
    /// Of those, diverged.
    pub diverged: usize,
    /// Of those, failed (errors, not divergence).
    pub failed: usize,
}

/// Run every job not already finished in `store`.
pub fn execute(jobs: &[Job], store: &Store, workers: usize, device: &Device, optimizers: &Checkpoints, show_progress: bool) -> Result<ExecSummary> {
    let pending: Vec<&Job> = jobs.iter().filter(|j| store.finished(&j.key.hash()).is_none()).collect();
    let mut summary = ExecSummary { cached: jobs.len() - pending.len(), ..Default::default() };
    if pending.is_empty() {
        return Ok(summary);
    }
    // Progress in units of estimated work, so the ETA is honest when runs differ in size.
    let total_cost: f64 = pending.iter().map(|j| cost(j)).sum();
    let scale = 1e6 / total_cost;
    let bar = if show_progress { ProgressBar::new(1_000_000) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% ETA {eta} {msg}").expect("valid template"));
    let next = AtomicUsize::new(0);
    let done_runs = AtomicUsize::new(0);
    let totals = Mutex::new(summary);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1).min(pending.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = pending.get(i) else { break };
                let per_step = cost(job) / job.key.steps.max(1) as f64 * scale;
                let mut reported = 0u64;
                let mut on_progress = |step: u64| {
                    bar.inc(((step - reported) as f64 * per_step) as u64);
                    reported = step;
                };
                let started = std::time::Instant::now();
                let record = run_one(job, device, optimizers, &mut on_progress);
                let timing = beatmatch_reports::analysis::Timing { seconds: started.elapsed().as_secs_f64(), steps: job.key.steps };
                let mut t = totals.lock().unwrap();
                t.trained += 1;
                match record.status {
                    RunStatus::Diverged { .. } => t.diverged += 1,
                    RunStatus::Failed { ref error } => {
                        t.failed += 1;
                        bar.println(format!("run {} ({} on {}) failed: {error}", &record.hash[..12], job.key.optimizer, job.key.problem_id));
                    }
                    RunStatus::Finished => {}
                }
                drop(t);
                // Timing first: a record without its timing is fine (reports skip the wall-clock
                // figures for it), a timing without its record is never read.
                if let Err(e) = store.write_timing(&record.hash, &timing).and_then(|_| store.write_record(&record)) {
                    first_error.lock().unwrap().get_or_insert(e);
                }
                let n = done_runs.fetch_add(1, Ordering::Relaxed) + 1;
                bar.set_message(format!("{n}/{} runs", pending.len()));
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e.context("writing a run record"));
    }
    summary = totals.into_inner().unwrap();
    Ok(summary)
}

/// Train one job into its record; errors and panics become a `failed` record.
pub fn run_one(job: &Job, device: &Device, optimizers: &Checkpoints, on_progress: &mut dyn FnMut(u64)) -> RunRecord {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<TrainOutcome> {
        let data = job.problem.dataset.load()?;
        let infos = job.problem.build_model().params().to_vec();
        let mut opt = optimizers.build(&job.key.optimizer, &infos)?;
        let settings = RunSettings { device, seed: job.key.seed, steps: job.key.steps, horizon: job.key.horizon };
        train(&job.problem, &data, opt.as_mut(), settings, on_progress)
    }));
    let (status, curve, evals) = match outcome {
        Ok(Ok(o)) => (o.status, o.curve, o.evals),
        Ok(Err(e)) => (RunStatus::Failed { error: format!("{e:#}") }, vec![], vec![]),
        Err(panic) => {
            let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            (RunStatus::Failed { error: format!("panic: {}", msg.unwrap_or_default()) }, vec![], vec![])
        }
    };
    RunRecord { schema_version: RECORD_SCHEMA_VERSION, hash: job.key.hash(), key: job.key.clone(), params: job.params, status, curve, evals }
}
