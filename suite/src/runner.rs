//! Runners and the executor that feeds them.
//!
//! The executor skips what the store already holds, gathers the rest into run groups — the jobs
//! of one problem from one seed, which share initialisation and every mini-batch — and hands
//! the groups to a [`Runner`] on `workers` threads, writing each record as soon as it is ready.
//! A runner says how many members it trains at once: [`OneByOne`] one (so the executor
//! schedules single runs, largest first); a batched or device runner takes whole groups.
//!
//! A diverged run is a result; an error or panic inside a run is recorded as `failed` (and
//! retried next time) — neither stops the other runs.

use crate::factory::OptimizerFactory;
use crate::plan::{cost, Job};
use crate::run_log::RunLog;
use anyhow::Result;
use beatmatch_core::claim::{group_key, Acquired, Claims};
use beatmatch_core::{RunRecord, RunStatus, Store, Timing, RECORD_SCHEMA_VERSION};
use beatmatch_tasks::population::{MemberPlan, OptimizerGroup, Population};
use beatmatch_tasks::train::{train, RunSettings, TrainOutcome};
use beatmatch_tasks::Problem;
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The jobs of one run group: one problem trained from one seed by one or more optimizers.
pub struct JobGroup<'a> {
    /// The problem.
    pub problem: &'a Problem,
    /// The seed (initialisation and data order).
    pub seed: u64,
    /// The runs, largest first.
    pub jobs: Vec<&'a Job>,
}

/// Trains run groups.
pub trait Runner: Sync {
    /// Largest group this runner trains at once; larger groups are split (None: any size).
    fn max_members(&self) -> Option<usize>;
    /// Train every job of `group`. `progress(job, steps)` reports a job's steps done so far;
    /// `done(job, record, timing)` hands back each finished run (failed runs included: a
    /// runner turns its errors into `failed` records).
    fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing));
}

/// The plain runner: each job trained alone, single-threaded, on one device.
pub struct OneByOne<'a> {
    /// Device to train on.
    pub device: Device,
    /// Builds each job's optimizer.
    pub factory: &'a OptimizerFactory,
}

impl Runner for OneByOne<'_> {
    fn max_members(&self) -> Option<usize> {
        Some(1)
    }

    fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing)) {
        for &job in &group.jobs {
            let started = Instant::now();
            let record = run_one(job, &self.device, self.factory, &mut |step| progress(job, step));
            done(job, record, Timing { seconds: started.elapsed().as_secs_f64(), steps: job.key.steps });
        }
    }
}

/// The population runner: the members of a run group train together as one [`Population`]
/// (dense networks: logreg, MLPs, autoencoders), their optimizers grouped by kind and
/// horizon; other families train one by one. Each member's record is the same bits as alone.
pub struct PopulationRunner<'a> {
    /// Largest population (None: whole run groups).
    pub max: Option<usize>,
    /// Builds the members' optimizers.
    pub factory: &'a OptimizerFactory,
}

/// How members are grouped under one optimizer: same kind (and checkpoint) and horizon.
fn optimizer_key(job: &Job) -> (String, Option<String>, u64) {
    (job.key.optimizer.kind.clone(), job.key.optimizer.checkpoint.clone(), job.key.horizon)
}

impl Runner for PopulationRunner<'_> {
    fn max_members(&self) -> Option<usize> {
        self.max
    }

    fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing)) {
        if !Population::<dyn beatmatch_core::Optimizer>::supports(group.problem) {
            return OneByOne { device: Device::Cpu, factory: self.factory }.run_group(group, progress, done);
        }
        // Members in optimizer-group order; `finished[i]` once job i's record is out.
        let mut jobs: Vec<&Job> = group.jobs.clone();
        jobs.sort_by_key(|j| optimizer_key(j));
        let mut finished = vec![false; jobs.len()];
        let started = Instant::now();
        let result = (|| -> Result<()> {
            let data = group.problem.dataset.load()?;
            let infos = group.problem.build_model().params().to_vec();
            let mut groups = Vec::new();
            let mut start = 0;
            while start < jobs.len() {
                let key = optimizer_key(jobs[start]);
                let end = start + jobs[start..].iter().take_while(|j| optimizer_key(j) == key).count();
                let specs: Vec<_> = jobs[start..end].iter().map(|j| j.key.optimizer.clone()).collect();
                groups.push(OptimizerGroup { optimizer: self.factory.build_members(&specs, &infos)?, members: start..end });
                start = end;
            }
            let plans: Vec<MemberPlan> = jobs.iter().map(|j| MemberPlan { steps: j.key.steps, horizon: j.key.horizon }).collect();
            let mut pop = Population::new(group.problem, &data, group.seed, &plans, groups)?;
            // Wall time is shared among the members training during each stretch.
            let mut seconds = vec![0f64; jobs.len()];
            while !pop.is_done() {
                let live: Vec<usize> = (0..jobs.len()).filter(|&m| pop.ended(m).is_none()).collect();
                let t = Instant::now();
                pop.advance(64)?;
                let share = t.elapsed().as_secs_f64() / live.len().max(1) as f64;
                for &m in &live {
                    seconds[m] += share;
                    progress(jobs[m], pop.step().min(jobs[m].key.steps));
                }
                for m in live.into_iter().filter(|&m| pop.ended(m).is_some()) {
                    let o = pop.outcome(m);
                    finished[m] = true;
                    done(jobs[m], record(jobs[m], o.status, o.curve, o.evals), Timing { seconds: seconds[m], steps: jobs[m].key.steps });
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            let msg = format!("{e:#}");
            let secs = started.elapsed().as_secs_f64();
            for (job, _) in jobs.iter().zip(&finished).filter(|(_, f)| !**f) {
                done(job, failed(job, msg.clone()), Timing { seconds: secs / jobs.len() as f64, steps: 0 });
            }
        }
    }
}

/// Train one job into its record; errors and panics become a `failed` record.
pub fn run_one(job: &Job, device: &Device, factory: &OptimizerFactory, on_progress: &mut dyn FnMut(u64)) -> RunRecord {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<TrainOutcome> {
        let data = job.problem.dataset.load()?;
        let infos = job.problem.build_model().params().to_vec();
        let opt = factory.build(&job.key.optimizer, &infos)?;
        let settings = RunSettings { device, seed: job.key.seed, steps: job.key.steps, horizon: job.key.horizon };
        train(&job.problem, &data, opt, settings, on_progress)
    }));
    match outcome {
        Ok(Ok(o)) => record(job, o.status, o.curve, o.evals),
        Ok(Err(e)) => failed(job, format!("{e:#}")),
        Err(panic) => failed(job, format!("panic: {}", panic_message(panic.as_ref()))),
    }
}

/// A panic's message, where it carried one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// `job`'s record with the given results.
pub fn record(job: &Job, status: RunStatus, curve: Vec<beatmatch_core::CurvePoint>, evals: Vec<beatmatch_core::EvalPoint>) -> RunRecord {
    RunRecord { schema_version: RECORD_SCHEMA_VERSION, hash: job.key.hash(), key: job.key.clone(), params: job.params, status, curve, evals }
}

/// `job`'s record of a failed run.
pub fn failed(job: &Job, error: String) -> RunRecord {
    record(job, RunStatus::Failed { error }, vec![], vec![])
}

/// Totals of one execution.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExecSummary {
    /// Runs already in the store.
    pub cached: usize,
    /// Runs trained now.
    pub trained: usize,
    /// Of those, diverged.
    pub diverged: usize,
    /// Of those, failed (errors, not divergence).
    pub failed: usize,
    /// Runs another process sharing the store finished while this one ran.
    pub elsewhere: usize,
    /// Runs left untrained because this host lacks their data (another host added the tasks).
    pub left: usize,
}

/// The run groups of `pending` jobs, each at most `max` jobs, largest total cost first (ties
/// by the first job's hash), jobs inside a group in plan order.
pub fn groups<'a>(pending: &[&'a Job], max: Option<usize>) -> Vec<JobGroup<'a>> {
    let mut by_key: BTreeMap<(&str, u64), Vec<&'a Job>> = BTreeMap::new();
    for &j in pending {
        by_key.entry(j.group_key()).or_default().push(j);
    }
    let mut out: Vec<JobGroup<'a>> = Vec::new();
    for jobs in by_key.into_values() {
        for part in jobs.chunks(max.unwrap_or(usize::MAX).max(1)) {
            out.push(JobGroup { problem: &part[0].problem, seed: part[0].key.seed, jobs: part.to_vec() });
        }
    }
    let total = |g: &JobGroup<'_>| g.jobs.iter().map(|j| cost(j)).sum::<f64>();
    out.sort_by(|a, b| total(b).total_cmp(&total(a)).then_with(|| a.jobs[0].key.hash().cmp(&b.jobs[0].key.hash())));
    out
}

/// How training progress is shown on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A live bar (for a terminal).
    Bar,
    /// One line every [`Progress::interval`] (for logs: CI jobs, `nohup`, pipes).
    Lines,
    /// Nothing.
    None,
}

impl Progress {
    /// A bar on a terminal, lines otherwise.
    pub fn for_stderr() -> Self {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Progress::Bar
        } else {
            Progress::Lines
        }
    }

    /// Seconds between progress lines: 30, or `BEATMATCH_PROGRESS_SECS`.
    pub fn interval() -> std::time::Duration {
        let secs = std::env::var("BEATMATCH_PROGRESS_SECS").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(30.0);
        std::time::Duration::from_secs_f64(secs)
    }
}

/// `1 h 05 min`, `12 min 30 s`, `45 s`.
fn clock(secs: f64) -> String {
    crate::estimate::human(secs)
}

/// What lets several processes share one store: this process's claims and its log.
pub struct Coordination<'a> {
    /// Claims on run groups (one process trains a group at a time).
    pub claims: &'a Claims,
    /// The process's log file.
    pub log: &'a RunLog,
}

/// A queued run group: its index, and the time before which it is not retried (a group held
/// by another process is retried every poll).
struct Queued {
    group: usize,
    not_before: Instant,
    waiting_logged: bool,
}

/// Run every job not already finished in `store` through `runner` on `workers` threads.
///
/// Each run group is claimed first (see [`beatmatch_core::claim`]); a group another live
/// process holds is waited for — finished there, or taken over once its claim goes stale — so
/// when this returns every job is recorded, by this process or another. A record that cannot
/// be written (full disk, read-only store) stops the execution after the groups in flight.
pub fn execute(jobs: &[Job], store: &Store, workers: usize, runner: &dyn Runner, progress_mode: Progress, coord: &Coordination<'_>) -> Result<ExecSummary> {
    let show_progress = progress_mode == Progress::Bar;
    let pending: Vec<&Job> = jobs.iter().filter(|j| store.finished(&j.key.hash()).is_none()).collect();
    let mut summary = ExecSummary { cached: jobs.len() - pending.len(), ..Default::default() };
    if pending.is_empty() {
        return Ok(summary);
    }
    let groups = groups(&pending, runner.max_members());
    // Progress in units of estimated work, so the ETA is honest when runs differ in size.
    let total_cost: f64 = pending.iter().map(|j| cost(j)).sum();
    let scale = 1e6 / total_cost;
    let bar = if show_progress { ProgressBar::new(1_000_000) } else { ProgressBar::hidden() };
    bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% ETA {eta} {msg}").expect("valid template"));
    let now = Instant::now();
    let queue = Mutex::new((0..groups.len()).map(|group| Queued { group, not_before: now, waiting_logged: false }).collect::<VecDeque<_>>());
    let poll = coord.claims.heartbeat_interval().min(Duration::from_millis(500));
    let done_runs = AtomicUsize::new(0);
    let totals = Mutex::new(summary);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let abort = AtomicBool::new(false);
    let told_waiting = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        // Heartbeats keep this process's claims alive while it trains.
        s.spawn(|| {
            let mut last = Instant::now();
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if last.elapsed() >= coord.claims.heartbeat_interval() {
                    coord.claims.heartbeat();
                    last = Instant::now();
                }
            }
        });
        if progress_mode == Progress::Lines {
            // Without a terminal the bar is invisible: a line now and then instead, from the
            // bar's position (work done, in cost units) and the totals.
            let (bar, totals, finished, done_runs, pending) = (&bar, &totals, &finished, &done_runs, pending.len());
            s.spawn(move || {
                let every = Progress::interval();
                let mut last = Instant::now();
                while !finished.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100).min(every));
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    let frac = bar.position() as f64 / 1e6;
                    let elapsed = bar.elapsed().as_secs_f64();
                    let eta = if frac > 0.0 { clock(elapsed * (1.0 - frac) / frac) } else { "?".into() };
                    let t = *totals.lock().unwrap();
                    coord.log.say(&format!(
                        "progress: {}/{pending} runs ({:.0}% of the work), {} diverged, {} failed, {} done elsewhere; {} elapsed, ETA {eta}",
                        done_runs.load(Ordering::Relaxed),
                        100.0 * frac,
                        t.diverged,
                        t.failed,
                        t.elsewhere,
                        clock(elapsed)
                    ));
                }
            });
        }
        let mut handles = Vec::new();
        for _ in 0..workers.max(1).min(groups.len()) {
            handles.push(s.spawn(|| loop {
                if abort.load(Ordering::Relaxed) {
                    break;
                }
                // The first queued group that is due; none due: wait for the earliest.
                let item = {
                    let mut q = queue.lock().unwrap();
                    if q.is_empty() {
                        break;
                    }
                    let now = Instant::now();
                    match q.iter().position(|e| e.not_before <= now) {
                        Some(i) => Ok(q.remove(i).expect("index in range")),
                        None => Err(q.iter().map(|e| e.not_before).min().expect("queue not empty") - now),
                    }
                };
                let mut item = match item {
                    Ok(item) => item,
                    Err(wait) => {
                        std::thread::sleep(wait.min(poll));
                        continue;
                    }
                };
                let group = &groups[item.group];
                let key = group_key(&group.problem.hash(), group.seed);
                match coord.claims.acquire(&key) {
                    Err(e) => {
                        first_error.lock().unwrap().get_or_insert(anyhow::Error::from(e).context("claiming a run group"));
                        abort.store(true, Ordering::Relaxed);
                        break;
                    }
                    Ok(Acquired::HeldBy(holder)) => {
                        let left = unfinished(group, store);
                        if left.is_empty() {
                            totals.lock().unwrap().elsewhere += group.jobs.len();
                            done_runs.fetch_add(group.jobs.len(), Ordering::Relaxed);
                            continue;
                        }
                        if !item.waiting_logged {
                            let who = holder.map_or("another process".into(), |h| format!("{} pid {} ({})", h.host, h.pid, h.label));
                            coord.log.line(&format!("waiting: group {key} ({} runs) is claimed by {who}", left.len()));
                            if !told_waiting.swap(true, Ordering::Relaxed) {
                                notice(&bar, format!("some run groups are being trained by other processes ({who}, …); this one trains the rest and waits for those (details in its log)"));
                            }
                            item.waiting_logged = true;
                        }
                        item.not_before = Instant::now() + poll;
                        queue.lock().unwrap().push_back(item);
                        continue;
                    }
                    Ok(Acquired::Yes { took_over }) => {
                        if let Some(h) = took_over {
                            coord.log.line(&format!("claim {key} taken over from {} pid {} ({}), which stopped", h.host, h.pid, h.label));
                        }
                    }
                }
                // Another process may have finished some of it before we got the claim.
                let left = unfinished(group, store);
                let elsewhere = group.jobs.len() - left.len();
                if elsewhere > 0 {
                    totals.lock().unwrap().elsewhere += elsewhere;
                    done_runs.fetch_add(elsewhere, Ordering::Relaxed);
                }
                if !left.is_empty() {
                    let group = JobGroup { problem: group.problem, seed: group.seed, jobs: left };
                    run_claimed(&group, store, runner, coord, &bar, scale, &totals, &done_runs, pending.len(), &first_error, &abort);
                    if !coord.claims.still_mine(&key) {
                        // The bound of the claims' guarantee was reached: this process missed its
                        // heartbeats for a whole TTL. Both trainings write the same bytes.
                        coord.log.say(&format!(
                            "warning: the claim on group {key} was taken over while this process trained it (heartbeats missed for {:.0} s?)",
                            coord.claims.ttl().as_secs_f64()
                        ));
                    }
                }
                coord.claims.release(&key);
            }));
        }
        for h in handles {
            let _ = h.join();
        }
        // The workers are done: the ticker and heartbeat stop.
        finished.store(true, Ordering::Relaxed);
    });
    bar.finish_and_clear();
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    summary = totals.into_inner().unwrap();
    Ok(summary)
}

/// A line for the user: above the bar on a terminal, on stderr otherwise (a hidden bar prints
/// nothing).
fn notice(bar: &ProgressBar, msg: String) {
    if bar.is_hidden() {
        eprintln!("{msg}");
    } else {
        bar.println(msg);
    }
}

/// The jobs of `g` the store holds no finished record of.
fn unfinished<'a>(g: &JobGroup<'a>, store: &Store) -> Vec<&'a Job> {
    g.jobs.iter().copied().filter(|j| store.finished(&j.key.hash()).is_none()).collect()
}

/// Train one claimed group, writing each record as it is handed back.
#[allow(clippy::too_many_arguments)]
fn run_claimed(
    group: &JobGroup<'_>,
    store: &Store,
    runner: &dyn Runner,
    coord: &Coordination<'_>,
    bar: &ProgressBar,
    scale: f64,
    totals: &Mutex<ExecSummary>,
    done_runs: &AtomicUsize,
    pending: usize,
    first_error: &Mutex<Option<anyhow::Error>>,
    abort: &AtomicBool,
) {
    let mut reported: BTreeMap<String, u64> = BTreeMap::new();
    let mut progress = |job: &Job, step: u64| {
        let last = reported.entry(job.key.hash()).or_insert(0);
        let per_step = cost(job) / job.key.steps.max(1) as f64 * scale;
        bar.inc((step.saturating_sub(*last) as f64 * per_step) as u64);
        *last = step.max(*last);
    };
    let written: std::cell::RefCell<Vec<String>> = Default::default();
    let mut done = |job: &Job, record: RunRecord, timing: Timing| {
        written.borrow_mut().push(record.hash.clone());
        if abort.load(Ordering::Relaxed) {
            // The store cannot take records: this one is retried on the next run.
            return;
        }
        // Timing first: a record without its timing is fine (reports skip the wall-clock
        // figures for it), a timing without its record is never read.
        if let Err(e) = store.write_timing(&record.hash, &timing).and_then(|_| store.write_record(&record)) {
            coord.log.line(&format!("error writing record {}: {e}", record.hash));
            first_error.lock().unwrap().get_or_insert(anyhow::Error::from(e).context(format!("writing the record of run {}", &record.hash[..12])));
            abort.store(true, Ordering::Relaxed);
            return;
        }
        let mut t = totals.lock().unwrap();
        t.trained += 1;
        let status = match record.status {
            RunStatus::Diverged { step, .. } => {
                t.diverged += 1;
                format!("diverged at step {step}")
            }
            RunStatus::Failed { ref error } => {
                t.failed += 1;
                notice(bar, format!("run {} ({} on {}) failed: {error}", &record.hash[..12], job.key.optimizer, job.key.problem_id));
                format!("failed: {}", error.lines().next().unwrap_or_default())
            }
            RunStatus::Finished => "finished".into(),
        };
        drop(t);
        coord.log.line(&format!(
            "record {} {status} in {:.2} s ({} on {}, seed {})",
            record.hash, timing.seconds, job.key.optimizer, job.key.problem_id, job.key.seed
        ));
        let n = done_runs.fetch_add(1, Ordering::Relaxed) + 1;
        bar.set_message(format!("{n}/{pending} runs"));
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runner.run_group(group, &mut progress, &mut done)));
    // A runner that panicked mid-group: its unfinished jobs are failed runs.
    if let Err(panic) = outcome {
        let msg = format!("panic: {}", panic_message(panic.as_ref()));
        let unfinished: Vec<&Job> = group.jobs.iter().copied().filter(|j| !written.borrow().contains(&j.key.hash())).collect();
        for job in unfinished {
            done(job, failed(job, msg.clone()), Timing { seconds: 0.0, steps: 0 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beatmatch_core::{CurvePoint, OptimizerSpec, RunKey};
    use beatmatch_tasks::models::ModelConfig;
    use beatmatch_tasks::DatasetName;

    fn job(seed: u64, lr: f64, steps: u64) -> Job {
        let problem = Problem::new(ModelConfig::Logreg, DatasetName::Mnist1d, 32, &[steps]);
        let optimizer = OptimizerSpec::new("adam").with("lr", lr);
        let key = RunKey {
            problem_id: problem.id(),
            problem_hash: problem.hash(),
            optimizer_hash: beatmatch_core::content_hash(&optimizer),
            optimizer,
            seed,
            steps,
            horizon: steps,
            code_version: "test".into(),
            device: "cpu".into(),
        };
        Job { key, problem, params: 410 }
    }

    /// Claims and log of a fresh "process" on `store` (each call stands for another one).
    fn coord(store: &Store) -> Coordination<'static> {
        let claims = store.claims(Duration::from_secs(60), beatmatch_core::claim::Holder::me("test")).unwrap();
        Coordination { claims: Box::leak(Box::new(claims)), log: Box::leak(Box::new(RunLog::none())) }
    }

    /// Answers from a script instead of training: lr 1 diverges, lr 2 fails, lr 3 panics.
    struct Mock {
        max: Option<usize>,
        seen: Mutex<Vec<Vec<String>>>,
    }

    impl Runner for Mock {
        fn max_members(&self) -> Option<usize> {
            self.max
        }
        fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing)) {
            self.seen.lock().unwrap().push(group.jobs.iter().map(|j| j.key.hash()).collect());
            for &j in &group.jobs {
                assert_eq!((j.key.problem_hash.as_str(), j.key.seed), (group.problem.hash().as_str(), group.seed));
                progress(j, j.key.steps);
                let lr = j.key.optimizer.get("lr", 0.0);
                if lr == 3.0 {
                    panic!("scripted panic");
                }
                let status = match lr {
                    1.0 => RunStatus::Diverged { step: 1, reason: "scripted".into() },
                    2.0 => RunStatus::Failed { error: "scripted".into() },
                    _ => RunStatus::Finished,
                };
                done(j, record(j, status, vec![CurvePoint { step: 0, train_loss: Some(1.0) }], vec![]), Timing { seconds: 0.5, steps: j.key.steps });
            }
        }
    }

    #[test]
    fn executor_groups_by_problem_and_seed_writes_records_and_records_failures() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let jobs = vec![job(0, 0.1, 10), job(0, 1.0, 10), job(1, 0.1, 10), job(1, 2.0, 10), job(1, 0.5, 10)];
        let mock = Mock { max: None, seen: Mutex::new(vec![]) };
        let s = execute(&jobs, &store, 2, &mock, Progress::None, &coord(&store)).unwrap();
        assert_eq!(s, ExecSummary { cached: 0, trained: 5, diverged: 1, failed: 1, elsewhere: 0, left: 0 });
        let mut seen = mock.seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen.len(), 2, "one group per (problem, seed): {seen:?}");
        assert_eq!(seen.iter().map(Vec::len).sum::<usize>(), 5);
        for j in &jobs {
            let rec = store.read_record(&j.key.hash()).unwrap().expect("every run has a record");
            assert_eq!(rec.key, j.key);
            assert_eq!(store.read_timing(&j.key.hash()), Some(Timing { seconds: 0.5, steps: j.key.steps }));
        }
        // Rerun: the failed run is retried, everything else is cached.
        let mock = Mock { max: Some(1), seen: Mutex::new(vec![]) };
        let s = execute(&jobs, &store, 1, &mock, Progress::None, &coord(&store)).unwrap();
        assert_eq!(s, ExecSummary { cached: 4, trained: 1, diverged: 0, failed: 1, elsewhere: 0, left: 0 });
        assert_eq!(mock.seen.into_inner().unwrap(), vec![vec![jobs[3].key.hash()]]);
    }

    #[test]
    fn groups_respect_the_runner_size_and_a_panic_fails_only_unfinished_jobs() {
        let jobs = [job(0, 0.1, 10), job(0, 0.2, 10), job(0, 0.3, 10)];
        let refs: Vec<&Job> = jobs.iter().collect();
        assert_eq!(groups(&refs, Some(2)).iter().map(|g| g.jobs.len()).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(groups(&refs, None).len(), 1);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let jobs = vec![job(0, 0.1, 10), job(0, 3.0, 10), job(0, 0.2, 10)];
        let s = execute(&jobs, &store, 1, &Mock { max: None, seen: Mutex::new(vec![]) }, Progress::None, &coord(&store)).unwrap();
        assert_eq!(s.trained, 3);
        let status = |j: &Job| store.read_record(&j.key.hash()).unwrap().unwrap().status;
        let finished = jobs.iter().filter(|j| status(j) == RunStatus::Finished).count();
        let panicked = jobs.iter().filter(|j| matches!(status(j), RunStatus::Failed { ref error } if error.contains("scripted panic"))).count();
        assert_eq!(finished + panicked, 3);
        assert!(panicked >= 1 && s.failed == panicked);
    }

    #[test]
    fn a_group_claimed_elsewhere_is_waited_for_and_not_trained_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let jobs = vec![job(0, 0.1, 10), job(0, 0.2, 10), job(1, 0.1, 10)];
        // "Another process" holds seed 0's group, finishes it after a while, and lets go.
        let other = store.claims(Duration::from_secs(60), beatmatch_core::claim::Holder::me("other")).unwrap();
        let key = group_key(&jobs[0].problem.hash(), 0);
        assert!(matches!(other.acquire(&key).unwrap(), Acquired::Yes { .. }));
        let mock = Mock { max: None, seen: Mutex::new(vec![]) };
        let s = std::thread::scope(|sc| {
            sc.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                for j in &jobs[..2] {
                    store.write_record(&record(j, RunStatus::Finished, vec![], vec![])).unwrap();
                }
                other.release(&key);
            });
            execute(&jobs, &store, 2, &mock, Progress::None, &coord(&store)).unwrap()
        });
        assert_eq!(s, ExecSummary { cached: 0, trained: 1, diverged: 0, failed: 0, elsewhere: 2, left: 0 });
        assert_eq!(mock.seen.into_inner().unwrap(), vec![vec![jobs[2].key.hash()]]);
    }

    #[test]
    fn a_stale_claim_is_taken_over_and_a_write_fault_stops_the_execution() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let jobs = vec![job(0, 0.1, 10), job(1, 0.1, 10), job(2, 0.1, 10)];
        // A claim left by a process that stopped beating long ago.
        let gone = store
            .claims(Duration::from_millis(1), beatmatch_core::claim::Holder { host: "elsewhere".into(), ..beatmatch_core::claim::Holder::me("gone") })
            .unwrap();
        gone.acquire(&group_key(&jobs[0].problem.hash(), 0)).unwrap();
        std::mem::forget(gone);
        std::thread::sleep(Duration::from_millis(5));
        let claims = store.claims(Duration::from_millis(1), beatmatch_core::claim::Holder::me("taker")).unwrap();
        let log_store = Store::create(&dir.path().join("log")).unwrap();
        let log = RunLog::create(&log_store);
        let s = execute(&jobs, &store, 1, &Mock { max: None, seen: Mutex::new(vec![]) }, Progress::None, &Coordination { claims: &claims, log: &log }).unwrap();
        assert_eq!(s.trained, 3);
        let text = std::fs::read_to_string(log.path().unwrap()).unwrap();
        assert!(text.contains("taken over from elsewhere"), "{text}");
        assert_eq!(crate::run_log::records_written(&dir.path().join("log")).len(), 3);
        // A store that refuses writes: an error naming the directory, no record claimed written.
        std::fs::remove_dir_all(store.runs_dir()).unwrap();
        std::fs::write(store.runs_dir(), b"not a directory").unwrap();
        let e = execute(&jobs[..1], &store, 1, &Mock { max: None, seen: Mutex::new(vec![]) }, Progress::None, &coord(&store)).unwrap_err();
        assert!(format!("{e:#}").contains("writing the record of run"), "{e:#}");
    }
}
