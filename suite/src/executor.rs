//! The executor: skips what the store already holds, gathers the rest into run groups, claims
//! each group (several processes may share one store), and hands it to a [`Runner`] on
//! `workers` threads, writing each record as soon as it is ready, with progress on stderr and
//! in the process's log.

use crate::plan::{cost, Job};
use crate::run_log::RunLog;
use crate::runner::{failed, panic_message, JobGroup, Runner};
use anyhow::Result;
use beatmatch_core::claim::{group_key, Acquired, Claims};
use beatmatch_core::{RunRecord, RunStatus, Store, Timing};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The run groups of `pending` jobs, each at most `max(params)` jobs (`params`: the group's
/// model's parameter count; None: no limit), largest total cost first (ties by the first
/// job's hash), jobs inside a group in plan order.
pub fn groups<'a>(pending: &[&'a Job], max: &dyn Fn(u64) -> Option<usize>) -> Vec<JobGroup<'a>> {
    let mut by_key: BTreeMap<(&str, u64), Vec<&'a Job>> = BTreeMap::new();
    for &j in pending {
        by_key.entry(j.group_key()).or_default().push(j);
    }
    let mut out: Vec<JobGroup<'a>> = Vec::new();
    for jobs in by_key.into_values() {
        for part in jobs.chunks(max(jobs[0].params).unwrap_or(usize::MAX).max(1)) {
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

/// What the next worker takes from the queue.
enum Next {
    /// A group due now.
    Group(Queued),
    /// None is due before this long.
    Wait(Duration),
    /// The queue is empty.
    Done,
}

/// One execution: the run groups still to train, the queue they are taken from, and what the
/// workers share while they train — the store, the runner, the claims and log, the progress
/// bar and the totals. [`execute`] builds one and runs it.
struct Executor<'a> {
    store: &'a Store,
    runner: &'a dyn Runner,
    coord: &'a Coordination<'a>,
    groups: Vec<JobGroup<'a>>,
    queue: Mutex<VecDeque<Queued>>,
    /// How often a group held elsewhere is looked at again.
    poll: Duration,
    bar: ProgressBar,
    /// Bar units (1e6 in all) per unit of estimated cost.
    scale: f64,
    /// Runs this execution started with (not already in the store).
    pending: usize,
    done_runs: AtomicUsize,
    totals: Mutex<ExecSummary>,
    first_error: Mutex<Option<anyhow::Error>>,
    abort: AtomicBool,
    told_waiting: AtomicBool,
    finished: AtomicBool,
}

/// Run every job not already finished in `store` through `runner` on `workers` threads.
///
/// Each run group is claimed first (see [`beatmatch_core::claim`]); a group another live
/// process holds is waited for — finished there, or taken over once its claim goes stale — so
/// when this returns every job is recorded, by this process or another. A record that cannot
/// be written (full disk, read-only store) stops the execution after the groups in flight.
pub fn execute(jobs: &[Job], store: &Store, workers: usize, runner: &dyn Runner, progress_mode: Progress, coord: &Coordination<'_>) -> Result<ExecSummary> {
    let pending: Vec<&Job> = jobs.iter().filter(|j| store.finished(&j.key.hash()).is_none()).collect();
    let summary = ExecSummary { cached: jobs.len() - pending.len(), ..Default::default() };
    if pending.is_empty() {
        return Ok(summary);
    }
    Executor::new(&pending, store, runner, progress_mode, coord, summary).run(workers, progress_mode)
}

impl<'a> Executor<'a> {
    /// An execution of `pending` jobs, counting on from `summary`.
    fn new(pending: &[&'a Job], store: &'a Store, runner: &'a dyn Runner, progress_mode: Progress, coord: &'a Coordination<'a>, summary: ExecSummary) -> Self {
        let groups = groups(pending, &|params| runner.max_members(params));
        // Progress in units of estimated work, so the ETA is honest when runs differ in size.
        let total_cost: f64 = pending.iter().map(|j| cost(j)).sum();
        let bar = if progress_mode == Progress::Bar { ProgressBar::new(1_000_000) } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% ETA {eta} {msg}").expect("valid template"));
        let now = Instant::now();
        let queue = (0..groups.len()).map(|group| Queued { group, not_before: now, waiting_logged: false }).collect();
        Self {
            store,
            runner,
            coord,
            groups,
            queue: Mutex::new(queue),
            poll: coord.claims.heartbeat_interval().min(Duration::from_millis(500)),
            bar,
            scale: 1e6 / total_cost,
            pending: pending.len(),
            done_runs: AtomicUsize::new(0),
            totals: Mutex::new(summary),
            first_error: Mutex::new(None),
            abort: AtomicBool::new(false),
            told_waiting: AtomicBool::new(false),
            finished: AtomicBool::new(false),
        }
    }

    /// Train every group on `workers` threads (heartbeats and, for `Progress::Lines`, progress
    /// lines beside them); the totals, or the first error that stopped the execution.
    fn run(self, workers: usize, progress_mode: Progress) -> Result<ExecSummary> {
        std::thread::scope(|s| {
            s.spawn(|| self.heartbeats());
            if progress_mode == Progress::Lines {
                s.spawn(|| self.progress_lines());
            }
            let handles: Vec<_> = (0..workers.max(1).min(self.groups.len())).map(|_| s.spawn(|| self.worker())).collect();
            for h in handles {
                let _ = h.join();
            }
            // The workers are done: the ticker and heartbeat stop.
            self.finished.store(true, Ordering::Relaxed);
        });
        self.bar.finish_and_clear();
        if let Some(e) = self.first_error.into_inner().unwrap() {
            return Err(e);
        }
        Ok(self.totals.into_inner().unwrap())
    }

    /// Keep this process's claims alive while it trains.
    fn heartbeats(&self) {
        let mut last = Instant::now();
        while !self.finished.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if last.elapsed() >= self.coord.claims.heartbeat_interval() {
                self.coord.claims.heartbeat();
                last = Instant::now();
            }
        }
    }

    /// Without a terminal the bar is invisible: a line now and then instead, from the bar's
    /// position (work done, in cost units) and the totals.
    fn progress_lines(&self) {
        let every = Progress::interval();
        let mut last = Instant::now();
        while !self.finished.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100).min(every));
            if last.elapsed() < every {
                continue;
            }
            last = Instant::now();
            let frac = self.bar.position() as f64 / 1e6;
            let elapsed = self.bar.elapsed().as_secs_f64();
            let eta = if frac > 0.0 { crate::duration::human(elapsed * (1.0 - frac) / frac) } else { "?".into() };
            let t = *self.totals.lock().unwrap();
            self.coord.log.say(&format!(
                "progress: {}/{} runs ({:.0}% of the work), {} diverged, {} failed, {} done elsewhere; {} elapsed, ETA {eta}",
                self.done_runs.load(Ordering::Relaxed),
                self.pending,
                100.0 * frac,
                t.diverged,
                t.failed,
                t.elsewhere,
                crate::duration::human(elapsed)
            ));
        }
    }

    /// The first queued group that is due; none due: how long until the earliest.
    fn next(&self) -> Next {
        let mut q = self.queue.lock().unwrap();
        if q.is_empty() {
            return Next::Done;
        }
        let now = Instant::now();
        match q.iter().position(|e| e.not_before <= now) {
            Some(i) => Next::Group(q.remove(i).expect("index in range")),
            None => Next::Wait(q.iter().map(|e| e.not_before).min().expect("queue not empty") - now),
        }
    }

    /// One worker: take due groups until the queue is empty or the execution stops.
    fn worker(&self) {
        while !self.abort.load(Ordering::Relaxed) {
            match self.next() {
                Next::Done => break,
                Next::Wait(wait) => std::thread::sleep(wait.min(self.poll)),
                Next::Group(item) => self.claim_and_train(item),
            }
        }
    }

    /// Claim `item`'s group and train what is left of it; a group held by another live
    /// process goes back on the queue (or counts as done elsewhere once it is).
    fn claim_and_train(&self, mut item: Queued) {
        let group = &self.groups[item.group];
        let key = group_key(&group.problem.hash(), group.seed);
        match self.coord.claims.acquire(&key) {
            Err(e) => {
                self.first_error.lock().unwrap().get_or_insert(anyhow::Error::from(e).context("claiming a run group"));
                self.abort.store(true, Ordering::Relaxed);
                return;
            }
            Ok(Acquired::HeldBy(holder)) => {
                let left = unfinished(group, self.store);
                if left.is_empty() {
                    self.done_elsewhere(group.jobs.len());
                    return;
                }
                if !item.waiting_logged {
                    let who = holder.map_or("another process".into(), |h| format!("{} pid {} ({})", h.host, h.pid, h.label));
                    self.coord.log.line(&format!("waiting: group {key} ({} runs) is claimed by {who}", left.len()));
                    if !self.told_waiting.swap(true, Ordering::Relaxed) {
                        notice(&self.bar, format!("some run groups are being trained by other processes ({who}, …); this one trains the rest and waits for those (details in its log)"));
                    }
                    item.waiting_logged = true;
                }
                item.not_before = Instant::now() + self.poll;
                self.queue.lock().unwrap().push_back(item);
                return;
            }
            Ok(Acquired::Yes { took_over }) => {
                if let Some(h) = took_over {
                    self.coord.log.line(&format!("claim {key} taken over from {} pid {} ({}), which stopped", h.host, h.pid, h.label));
                }
            }
        }
        // Another process may have finished some of it before we got the claim.
        let left = unfinished(group, self.store);
        self.done_elsewhere(group.jobs.len() - left.len());
        if !left.is_empty() {
            self.train(&JobGroup { problem: group.problem, seed: group.seed, jobs: left });
            if !self.coord.claims.still_mine(&key) {
                // The bound of the claims' guarantee was reached: this process missed its
                // heartbeats for a whole TTL. Both trainings write the same bytes.
                self.coord.log.say(&format!(
                    "warning: the claim on group {key} was taken over while this process trained it (heartbeats missed for {:.0} s?)",
                    self.coord.claims.ttl().as_secs_f64()
                ));
            }
        }
        self.coord.claims.release(&key);
    }

    /// Count `n` runs another process finished.
    fn done_elsewhere(&self, n: usize) {
        if n > 0 {
            self.totals.lock().unwrap().elsewhere += n;
            self.done_runs.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Train one claimed group, writing each record as it is handed back; a runner that
    /// panics mid-group leaves its unfinished jobs as failed runs.
    fn train(&self, group: &JobGroup<'_>) {
        let mut reported: BTreeMap<String, u64> = BTreeMap::new();
        let mut progress = |job: &Job, step: u64| {
            let last = reported.entry(job.key.hash()).or_insert(0);
            let per_step = cost(job) / job.key.steps.max(1) as f64 * self.scale;
            self.bar.inc((step.saturating_sub(*last) as f64 * per_step) as u64);
            *last = step.max(*last);
        };
        let written: std::cell::RefCell<Vec<String>> = Default::default();
        let mut done = |job: &Job, record: RunRecord, timing: Timing| {
            written.borrow_mut().push(record.hash.clone());
            self.write(job, record, timing);
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.runner.run_group(group, &mut progress, &mut done)));
        if let Err(panic) = outcome {
            let msg = format!("panic: {}", panic_message(panic.as_ref()));
            let unfinished: Vec<&Job> = group.jobs.iter().copied().filter(|j| !written.borrow().contains(&j.key.hash())).collect();
            for job in unfinished {
                done(job, failed(job, msg.clone()), Timing { seconds: 0.0, steps: 0 });
            }
        }
    }

    /// Write one run's record (and its timing), count it and log it; a store that refuses the
    /// write stops the execution.
    fn write(&self, job: &Job, record: RunRecord, timing: Timing) {
        if self.abort.load(Ordering::Relaxed) {
            // The store cannot take records: this one is retried on the next run.
            return;
        }
        // Timing first: a record without its timing is fine (reports skip the wall-clock
        // figures for it), a timing without its record is never read.
        if let Err(e) = self.store.write_timing(&record.hash, &timing).and_then(|_| self.store.write_record(&record)) {
            self.coord.log.line(&format!("error writing record {}: {e}", record.hash));
            self.first_error.lock().unwrap().get_or_insert(anyhow::Error::from(e).context(format!("writing the record of run {}", &record.hash[..12])));
            self.abort.store(true, Ordering::Relaxed);
            return;
        }
        let mut t = self.totals.lock().unwrap();
        t.trained += 1;
        let status = match record.status {
            RunStatus::Diverged { step, .. } => {
                t.diverged += 1;
                format!("diverged at step {step}")
            }
            RunStatus::Failed { ref error } => {
                t.failed += 1;
                notice(&self.bar, format!("run {} ({} on {}) failed: {error}", &record.hash[..12], job.key.optimizer, job.key.problem_id));
                format!("failed: {}", error.lines().next().unwrap_or_default())
            }
            RunStatus::Finished => "finished".into(),
        };
        drop(t);
        self.coord.log.line(&format!(
            "record {} {status} in {:.2} s ({} on {}, seed {})",
            record.hash, timing.seconds, job.key.optimizer, job.key.problem_id, job.key.seed
        ));
        let n = self.done_runs.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{n}/{} runs", self.pending));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::record;
    use beatmatch_core::{CurvePoint, OptimizerSpec, RunKey};
    use beatmatch_tasks::models::logreg::Logreg;
    use beatmatch_tasks::models::ModelConfig;
    use beatmatch_tasks::DatasetName;
    use beatmatch_tasks::Problem;

    fn job(seed: u64, lr: f64, steps: u64) -> Job {
        let problem = Problem::new(ModelConfig::Logreg(Logreg {}), DatasetName::Mnist1d, 32, &[steps]);
        let optimizer = OptimizerSpec::new("toy").with("lr", lr);
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
        fn max_members(&self, _params: u64) -> Option<usize> {
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
        assert_eq!(groups(&refs, &|_| Some(2)).iter().map(|g| g.jobs.len()).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(groups(&refs, &|_| None).len(), 1);
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
