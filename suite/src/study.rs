//! A study from its options: select the tasks (skipping those whose data or device is
//! missing, one line each), build the candidate and baselines, plan, and execute through a
//! runner into the result store.

use crate::factory::OptimizerFactory;
use crate::plan::{plan, Job, PlanRequest};
use crate::runner::{execute, ExecSummary, PopulationRunner, Progress};
use anyhow::{bail, Context, Result};
use beatmatch_baselines::Protocol;
use beatmatch_core::{Store, Study};
use beatmatch_tasks::{registry, DeviceReq, Task, Tier};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

/// Where the tasks come from.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Tier.
    pub tier: Tier,
    /// A registry directory instead of the built-in registry.
    pub registry: Option<PathBuf>,
    /// Only tasks whose id matches.
    pub only: Option<regex::Regex>,
}

impl Selection {
    /// The selected tasks.
    pub fn tasks(&self) -> Result<Vec<Task>> {
        let all = match &self.registry {
            Some(dir) => registry::load_dir(dir)?,
            None => registry::embedded()?,
        };
        let tasks = registry::select(&all, self.tier);
        Ok(match &self.only {
            Some(re) => tasks.into_iter().filter(|t| re.is_match(&t.id())).collect(),
            None => tasks,
        })
    }
}

/// What `suite run` (and `plan`, `compare`, `ci`) is asked to do.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    /// Task selection.
    pub selection: Selection,
    /// Result directory (default `results/<tier>`).
    pub out: Option<PathBuf>,
    /// The optimizer under test (spec or `ARCH:PATH`).
    pub candidate: String,
    /// Baseline protocols (names or YAML files).
    pub baselines: Vec<String>,
    /// A full opt_list JSON for `optlist-K`.
    pub opt_list: Option<PathBuf>,
    /// Seeds per configuration (overrides the protocols').
    pub seeds: Option<u32>,
    /// Parallel workers [default: cores].
    pub jobs: Option<usize>,
    /// Device name.
    pub device: String,
    /// Largest population the runner trains together (None: whole run groups; 1: one by one).
    pub population: Option<usize>,
    /// How training progress is shown.
    pub progress: Progress,
}

impl StudyOptions {
    /// The defaults of `suite run`: quick tier, the shipped meta-trained small_fc_lopt
    /// ([`crate::factory::DEFAULT_CANDIDATE`]) against adam-lr15 and sgdm-lr15, on the CPU.
    pub fn new(tier: Tier) -> Self {
        Self {
            selection: Selection { tier, registry: None, only: None },
            out: None,
            candidate: crate::factory::DEFAULT_CANDIDATE.into(),
            baselines: vec!["adam-lr15".into(), "sgdm-lr15".into()],
            opt_list: None,
            seeds: None,
            jobs: None,
            device: "cpu".into(),
            population: None,
            progress: Progress::for_stderr(),
        }
    }

    /// The result directory.
    pub fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| PathBuf::from("results").join(self.selection.tier.as_str()))
    }
}

/// What a study needs before anything is trained: the runnable tasks (data present, device
/// able), what was skipped and why, the optimizers and the plan.
pub struct Prepared {
    /// Tasks that will run.
    pub tasks: Vec<Task>,
    /// The factory holding the candidate's checkpoint, if learned.
    pub factory: OptimizerFactory,
    /// The manifest.
    pub study: Study,
    /// The unique runs.
    pub jobs: Vec<Job>,
    /// Result directory.
    pub out: PathBuf,
    /// Parallel workers.
    pub workers: usize,
    /// Tasks skipped because they need a device this build lacks.
    pub device_skipped: Vec<Task>,
}

/// Select, check and plan; nothing is trained or written.
pub fn prepare(opts: &StudyOptions) -> Result<Prepared> {
    if opts.device != "cpu" {
        bail!("device `{}` is not available: this build supports `cpu` only", opts.device);
    }
    let all = opts.selection.tasks()?;
    // Tasks whose data is missing, or that need a GPU, are skipped with one line per dataset
    // (or device) saying how to get it.
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    let mut device_skipped = Vec::new();
    let mut missing_reported = BTreeSet::new();
    for t in all {
        if t.device != DeviceReq::Cpu {
            skipped.push((t.id(), format!("needs a {} device; this build runs on cpu only", t.device.as_str())));
            device_skipped.push(t);
            continue;
        }
        match t.problem.dataset.locate() {
            Ok(_) => tasks.push(t),
            Err(e) => {
                if missing_reported.insert(t.problem.dataset) {
                    eprintln!("skipping tasks on {e}");
                }
                skipped.push((t.id(), e.to_string()));
            }
        }
    }
    if !device_skipped.is_empty() {
        eprintln!("skipping {} tasks that need a CUDA GPU (listed by `suite list`; CUDA is not built yet)", device_skipped.len());
    }
    if tasks.is_empty() {
        match &opts.selection.only {
            Some(re) => bail!("no task of tier {} matches `{re}` and has its data available", opts.selection.tier.as_str()),
            None => bail!("no task of tier {} has its data available", opts.selection.tier.as_str()),
        }
    }
    let mut factory = OptimizerFactory::default();
    let candidate = factory.parse_candidate(&opts.candidate).with_context(|| format!("--candidate {}", opts.candidate))?;
    // Fail on a bad candidate before training anything.
    factory.build(&candidate, tasks[0].problem.build_model().params()).with_context(|| format!("--candidate {}", opts.candidate))?;
    let mut protocols: Vec<Protocol> = opts.baselines.iter().map(|b| Protocol::resolve_with(b, opts.opt_list.as_deref())).collect::<Result<_>>()?;
    if let Some(n) = opts.seeds {
        if n == 0 {
            bail!("--seeds must be at least 1");
        }
        protocols.iter_mut().for_each(|p| p.seeds = n);
    }
    let seeds = opts.seeds.unwrap_or_else(|| protocols.iter().map(|p| p.seeds).max().unwrap_or(1));
    let req = PlanRequest {
        tasks: &tasks,
        selection: opts.selection.tier.as_str().to_string(),
        candidate,
        candidate_seeds: seeds,
        baselines: &protocols,
        device: opts.device.clone(),
        skipped,
    };
    let (study, jobs) = plan(&req)?;
    if opts.population == Some(0) {
        bail!("--population must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = opts.jobs.unwrap_or(cores);
    // Cores no worker uses go to the learned optimizers' updates (the same bits either way).
    factory.learned_threads = (cores / workers.max(1)).max(1);
    Ok(Prepared { tasks, factory, study, jobs, out: opts.out_dir(), workers, device_skipped })
}

/// Plan and execute a study; returns its directory and the execution totals.
pub fn run_study(opts: &StudyOptions) -> Result<(PathBuf, ExecSummary)> {
    let started = Instant::now();
    let Prepared { study, jobs, out, workers, factory, .. } = prepare(opts)?;
    let store = Store::create(&out)?;
    store.write_study(&study)?;
    eprintln!(
        "{} tasks ({} problems), {} runs, {} workers -> {}",
        study.tasks.len(),
        jobs.iter().map(|j| &j.key.problem_hash).collect::<BTreeSet<_>>().len(),
        jobs.len(),
        workers,
        out.display()
    );
    let runner = PopulationRunner { max: opts.population, factory: &factory };
    let summary = execute(&jobs, &store, workers, &runner, opts.progress)?;
    eprintln!(
        "runs: {} trained ({} diverged, {} failed), {} already done; {:.1} s",
        summary.trained,
        summary.diverged,
        summary.failed,
        summary.cached,
        started.elapsed().as_secs_f64()
    );
    Ok((out, summary))
}
