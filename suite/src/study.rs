//! A study from its options: select the tasks (skipping those whose data or device is
//! missing, one line each), build the candidate and baselines, plan, and execute through a
//! runner into the result store.

use crate::executor::{execute, Coordination, ExecSummary, Progress};
use crate::factory::OptimizerFactory;
use crate::plan::{cost, plan, Job, PlanRequest};
use crate::run_log::RunLog;
use crate::shard::Shard;
use crate::target::Target;
use anyhow::{bail, Context, Result};
use beatmatch_baselines::Protocol;
use beatmatch_core::claim::{default_ttl, group_key, Holder};
use beatmatch_core::{Arm, ShardFile, Store, Study};
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
    /// Largest population the runner trains together (None: the engine's default,
    /// [`crate::engine::Engine::max_members`]; 1: one by one).
    pub population: Option<usize>,
    /// How training progress is shown.
    pub progress: Progress,
    /// Train only this shard's run groups.
    pub shard: Option<Shard>,
    /// Join a study of another code version, keeping its finished records.
    pub allow_mixed: bool,
}

impl StudyOptions {
    /// The defaults of `suite run`: quick tier, the shipped meta-trained small_fc_lopt
    /// ([`crate::factory::DEFAULT_CANDIDATE`]) against the default baselines
    /// ([`beatmatch_baselines::protocol::DEFAULT_BASELINES`]), on the CPU.
    pub fn new(tier: Tier) -> Self {
        Self {
            selection: Selection { tier, registry: None, only: None },
            out: None,
            candidate: crate::factory::DEFAULT_CANDIDATE.into(),
            baselines: vec![beatmatch_baselines::protocol::DEFAULT_BASELINES.into()],
            opt_list: None,
            seeds: None,
            jobs: None,
            device: "cpu".into(),
            population: None,
            progress: Progress::for_stderr(),
            shard: None,
            allow_mixed: false,
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
    /// Every task of the selection this build can run, its data present or not (what shards
    /// are dealt from, so hosts agree).
    pub selected: Vec<Task>,
    /// What `--candidate` said (a configuration or a protocol's name).
    pub candidate: String,
    /// The candidate's arm, then the baselines', their configurations bound to checkpoints.
    pub arms: Vec<Arm>,
    /// Selection label and device, as planned.
    pub selection: String,
    /// Device name.
    pub device: String,
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
    /// Where the runs train.
    pub target: Target,
}

/// Why task `t` does not fit a device with `free` bytes free (named `device`), if it does not:
/// its estimated memory, sized for Adam's two floats of state per parameter (the most of any
/// baseline), part by part.
fn too_large(t: &Task, free: u64, device: &str) -> Option<String> {
    let need = beatmatch_tasks::memory::estimate(&t.problem, 2.0);
    let b = beatmatch_tasks::memory::human_bytes;
    (need.total() > free).then(|| {
        format!(
            "needs about {} on {device} (parameters {}, gradients {}, optimizer state {}, activations {}; estimated) but {} is free",
            b(need.total()),
            b(need.params),
            b(need.grads),
            b(need.state),
            b(need.activations),
            b(free)
        )
    })
}

/// Select, check and plan; nothing is trained or written.
pub fn prepare(opts: &StudyOptions) -> Result<Prepared> {
    let target = Target::resolve(&opts.device)?;
    let all = opts.selection.tasks()?;
    // Tasks whose data is missing, or that need a GPU, are skipped with one line per dataset
    // (or device) saying how to get it.
    let mut tasks = Vec::new();
    let mut selected = Vec::new();
    let mut skipped = Vec::new();
    let mut device_skipped = Vec::new();
    let mut missing_reported = BTreeSet::new();
    let free = target.free_memory()?;
    for t in all {
        if t.device != DeviceReq::Cpu && !target.is_gpu() {
            skipped.push((t.id(), format!("needs a {} device; this study runs on {}", t.device.as_str(), target.key)));
            device_skipped.push(t);
            continue;
        }
        if let Some(why) = free.and_then(|free| too_large(&t, free, &target.key)) {
            eprintln!("skipping {}: {why}", t.id());
            skipped.push((t.id(), why));
            continue;
        }
        selected.push(t.clone());
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
        eprintln!(
            "skipping {} tasks that need a CUDA GPU (listed by `suite list`; run them with --device cuda in a build with --features cuda)",
            device_skipped.len()
        );
    }
    if tasks.is_empty() {
        match &opts.selection.only {
            Some(re) => bail!("no task of tier {} matches `{re}` and has its data available", opts.selection.tier.as_str()),
            None => bail!("no task of tier {} has its data available", opts.selection.tier.as_str()),
        }
    }
    let mut factory = OptimizerFactory::new(target.engine.clone());
    let workers = opts.out_dir().join("workers");
    factory.worker_dir = Some(std::path::absolute(&workers).unwrap_or(workers));
    let names = beatmatch_baselines::protocol::expand_sets(&opts.baselines);
    let mut protocols: Vec<Protocol> = names.iter().map(|b| Protocol::resolve_with(b, opts.opt_list.as_deref())).collect::<Result<_>>()?;
    if let Some(n) = opts.seeds {
        if n == 0 {
            bail!("--seeds must be at least 1");
        }
        protocols.iter_mut().for_each(|p| p.seeds = n);
    }
    let seeds = protocols.iter().map(|p| p.seeds).max().unwrap_or(1);
    let with = |what: String| move || format!("--candidate {what}");
    let mut arms = vec![crate::plan::candidate_arm(&mut factory, &opts.candidate, opts.seeds, seeds).with_context(with(opts.candidate.clone()))?];
    for p in &protocols {
        arms.push(crate::plan::baseline_arm(&mut factory, p).with_context(|| format!("--baselines {}", p.name))?);
    }
    // Fail on a bad candidate before training anything.
    let params = tasks[0].problem.build_model().params().to_vec();
    for spec in &arms[0].configs {
        factory.check(spec, &params).with_context(with(spec.to_string()))?;
    }
    // A baseline run by a worker is checked likewise (a native one was when its protocol parsed).
    for (arm, spec) in arms[1..].iter().flat_map(|a| a.configs.iter().map(move |s| (a, s))).filter(|(_, s)| crate::foreign::source::is_foreign(s)) {
        factory.check(spec, &params).with_context(|| format!("--baselines {}: {spec}", arm.name))?;
    }
    let mut prepared = Prepared {
        tasks: Vec::new(),
        selected,
        candidate: opts.candidate.clone(),
        arms,
        selection: opts.selection.tier.as_str().to_string(),
        device: target.key.clone(),
        target: target.clone(),
        factory: OptimizerFactory::default(),
        study: Study::default(),
        jobs: vec![],
        out: opts.out_dir(),
        workers: 1,
        device_skipped,
    };
    let (study, jobs) = prepared.plan_tasks(&tasks, skipped)?;
    if opts.population == Some(0) {
        bail!("--population must be at least 1");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // On a GPU one run at a time by default: the memory check sizes each task alone.
    let workers = opts.jobs.unwrap_or(if target.is_gpu() { 1 } else { cores });
    // Cores no worker uses go to the learned optimizers' updates (the same bits either way).
    factory.learned_threads = (cores / workers.max(1)).max(1);
    prepared.tasks = tasks;
    prepared.factory = factory;
    prepared.study = study;
    prepared.jobs = jobs;
    prepared.workers = workers;
    Ok(prepared)
}

impl Prepared {
    /// Plan `tasks` (a subset of the selection, in its order) with this study's optimizers.
    pub fn plan_tasks(&self, tasks: &[Task], skipped: Vec<(String, String)>) -> Result<(Study, Vec<Job>)> {
        plan(&PlanRequest { tasks, selection: self.selection.clone(), arms: &self.arms, device: self.device.clone(), skipped })
    }

    /// Each run group of the whole selection (claim key, estimated cost), what shards are dealt.
    pub fn shard_groups(&self) -> Result<Vec<(String, f64)>> {
        let (_, jobs) = self.plan_tasks(&self.selected, vec![])?;
        let mut by: std::collections::BTreeMap<String, f64> = Default::default();
        for j in &jobs {
            *by.entry(group_key(&j.key.problem_hash, j.key.seed)).or_default() += cost(j);
        }
        Ok(by.into_iter().collect())
    }

    /// The runs among `jobs` that belong to `shard`.
    pub fn shard_jobs(&self, jobs: Vec<Job>, shard: Shard) -> Result<Vec<Job>> {
        let assignment = crate::shard::assign(&self.shard_groups()?, shard.of);
        Ok(jobs.into_iter().filter(|j| assignment.get(&group_key(&j.key.problem_hash, j.key.seed)) == Some(&shard.index)).collect())
    }
}

/// Plan and execute a study; returns its directory and the execution totals.
///
/// Many processes may run this on one directory at once (shards of an array job, reruns,
/// other hosts): the manifest is settled under a lock ([`crate::manifest`]), and run groups are
/// claimed so each is trained once.
pub fn run_study(opts: &StudyOptions) -> Result<(PathBuf, ExecSummary)> {
    let started = Instant::now();
    let p = prepare(opts)?;
    let store = Store::create(&p.out)?;
    let label = match opts.shard {
        Some(s) => format!("suite run --shard {s}"),
        None => "suite run".to_string(),
    };
    let claims = store.claims(default_ttl(), Holder::me(&label))?;
    let log = RunLog::create(&store);
    log.line(&format!("start: {label}, {} {}, candidate {}", beatmatch_core::code_version(), opts.selection.tier.as_str(), p.candidate));
    let available: BTreeSet<String> = p.tasks.iter().map(Task::id).collect();
    let ask = crate::manifest::Ask {
        selected: &p.selected,
        available: &available,
        skipped: &p.study.skipped,
        plan_tasks: &|t, s| p.plan_tasks(t, s),
        allow_mixed: opts.allow_mixed,
    };
    let settled = crate::manifest::settle(&store, &claims, &ask)?;
    log.line(&format!("manifest {}: {} tasks, {} cells", settled.note, settled.study.tasks.len(), settled.study.cells.len()));
    if settled.note != "unchanged" && settled.note != "written" {
        eprintln!("study manifest {}: {}", store.study_path().display(), settled.note);
    }
    let study = settled.study;
    let mut jobs = settled.jobs;
    if let Some(shard) = opts.shard {
        jobs = p.shard_jobs(jobs, shard)?;
        let mut records: Vec<String> = jobs.iter().map(|j| j.key.hash()).collect();
        records.sort();
        store.write_shard(&ShardFile { shard: shard.index, of: shard.of, records })?;
    }
    // Runs of tasks another host added, whose data this one lacks, are left to it.
    let here: BTreeSet<String> = p.tasks.iter().map(|t| t.problem.hash()).collect();
    let (runnable, elsewhere): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|j| here.contains(&j.key.problem_hash));
    let shard_note = opts.shard.map(|s| format!(", shard {s}")).unwrap_or_default();
    log.say(&format!(
        "{} tasks ({} problems), {} runs{shard_note}, {} workers -> {} (log {})",
        study.tasks.len(),
        runnable.iter().map(|j| &j.key.problem_hash).collect::<BTreeSet<_>>().len(),
        runnable.len(),
        p.workers,
        p.out.display(),
        log.path().map_or("none".into(), |l| l.display().to_string())
    ));
    let runner = p.target.engine.runner(&p.factory, opts.population);
    let mut summary = execute(&runnable, &store, p.workers, runner.as_ref(), opts.progress, &Coordination { claims: &claims, log: &log })
        .inspect_err(|e| log.line(&format!("error: {e:#}")))?;
    summary.left = elsewhere.iter().filter(|j| store.finished(&j.key.hash()).is_none()).count();
    if summary.left > 0 {
        let datasets: BTreeSet<&str> = elsewhere.iter().map(|j| j.problem.dataset.as_str()).collect();
        log.say(&format!(
            "{} runs need data this host lacks ({}); they are left for a host that has it",
            summary.left,
            datasets.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    log.say(&format!(
        "runs: {} trained ({} diverged, {} failed), {} already done, {} done by other processes; {:.1} s",
        summary.trained,
        summary.diverged,
        summary.failed,
        summary.cached,
        summary.elsewhere,
        started.elapsed().as_secs_f64()
    ));
    Ok((p.out, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id_part: &str) -> Task {
        let tasks = registry::embedded().unwrap();
        tasks.into_iter().find(|t| t.id().starts_with(id_part)).unwrap_or_else(|| panic!("no task {id_part}"))
    }

    #[test]
    fn a_task_too_large_for_the_free_memory_says_how_much_it_needs() {
        let big = task("transformer-d2048-l20-h16-t256.moby_dick.b64");
        let gib = 1u64 << 30;
        let why = too_large(&big, 8 * gib, "cuda/TEST").expect("a 1e9-parameter task does not fit 8 GiB");
        // Parameters alone are 1.0e9 × 4 bytes.
        assert!(
            why.starts_with("needs about ") && why.contains("on cuda/TEST") && why.contains("parameters 3.8 GiB") && why.ends_with("but 8.0 GiB is free"),
            "{why}"
        );
        assert_eq!(too_large(&big, 1024 * gib, "cuda/TEST"), None);
        assert_eq!(too_large(&task("logreg.mnist1d"), gib, "cuda/TEST"), None);
    }
}
