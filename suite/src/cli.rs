//! Command-line interface. The binary's table of contents: list, run, report.

use crate::executor::execute;
use crate::optimizers::Checkpoints;
use crate::plan::{plan, PlanRequest};
use crate::store::Store;
use anyhow::{bail, Context, Result};
use beatmatch_baselines::Protocol;
use beatmatch_tasks::{registry, Task, Tier};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// beatmatch: does an optimizer beat or match the tuned baselines?
///
/// With no command, runs the default `quick` tier against Adam and SGD-momentum tuned over
/// learned_optimization's 15-value learning-rate grid, then writes the report to `results/quick`.
#[derive(Parser)]
#[command(name = "suite", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// List the tasks of a tier with their parameter counts.
    List(ListArgs),
    /// Train the candidate and baselines on a tier (skipping finished runs), then report.
    Run(RunArgs),
    /// Show what `suite run` would do with the same arguments: runs, runs already in the result
    /// directory, and the estimated time per device from measured per-step costs (a small
    /// calibration per problem, cached in ~/.cache/beatmatch/calibration.json).
    Plan(RunArgs),
    /// Train reference configurations and check them against published numbers (MNIST-1D
    /// MLP ≈ 68% / logistic regression ≈ 32%, Fashion-MNIST 2-conv ≥ 0.87, Moby Dick char
    /// Transformer < 2.0 nats/char).
    Validate(crate::validate::ValidateArgs),
    /// Write the report for a result directory (tasks.csv, win_rate_bins.csv, summary.md, PNGs).
    Report {
        /// Result directory written by `suite run`.
        dir: PathBuf,
        #[command(flatten)]
        region: RegionArgs,
    },
    /// Compare two candidates (specs or checkpoints, run on the same tasks and seeds) or two
    /// result directories: paired per-task deltas, sign and Wilcoxon tests, compare.md.
    Compare(CompareArgs),
    /// Regression gate: run the smoke tier and compare with the reference in ci/reference.json.
    Ci(CiArgs),
    /// Learned-optimizer checkpoints: inspect or convert.
    #[command(subcommand)]
    Lopt(crate::lopt::LoptCommand),
    /// Data sets: where each was found, or how to get it.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(Args, Clone)]
struct RegistryArgs {
    /// Tier: smoke (CI, < 1 min), quick (default, ≤ 10 min on 2 cores), cpu (≤ 4 h on 2
    /// cores), full (everything, GPU-only models included).
    #[arg(long, default_value = "quick", value_parser = parse_tier)]
    tier: Tier,
    /// Read the registry from this directory of YAML files instead of the built-in one.
    #[arg(long)]
    registry: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// List every data set with its source (embedded, generated, directory) or how to get it.
    Status,
    /// Download a data set from its canonical URL, check its SHA-256 sums, and install it where
    /// the suite looks ($BEATMATCH_DATA/<name>, else ~/.cache/beatmatch/data/<name>).
    Fetch {
        /// Data set: fashion_mnist, mnist or cifar10.
        name: String,
    },
}

#[derive(Args, Clone, Copy)]
struct RegionArgs {
    /// Headline region: tasks with fewer parameters than this.
    #[arg(long, default_value_t = 5e8)]
    max_params: f64,
    /// Headline region: tasks with fewer steps than this.
    #[arg(long, default_value_t = 2e5)]
    max_steps: f64,
}

impl RegionArgs {
    fn options(self) -> beatmatch_reports::ReportOptions {
        beatmatch_reports::ReportOptions {
            region: beatmatch_reports::win_rate::Region { max_params: self.max_params, max_steps: self.max_steps },
            ..Default::default()
        }
    }
}

#[derive(Args)]
struct CompareArgs {
    /// A: a result directory, or a candidate (`adam:lr=1e-3`, `velo:PATH`, …) to run.
    a: String,
    /// B: likewise.
    b: String,
    /// Tier to run candidates on.
    #[arg(long, default_value = "smoke", value_parser = parse_tier)]
    tier: Tier,
    /// Output directory [default: results/compare].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seeds per configuration when running candidates.
    #[arg(long)]
    seeds: Option<u32>,
    /// Runs in parallel [default: number of cores].
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Args)]
struct CiArgs {
    /// The optimizer under test.
    #[arg(long, default_value = "adam:lr=1e-3")]
    candidate: String,
    /// Reference results.
    #[arg(long, default_value = "ci/reference.json")]
    reference: PathBuf,
    /// Result directory for the run and ci-report.md.
    #[arg(long, default_value = "results/ci")]
    out: PathBuf,
    /// Rewrite the reference from this run instead of checking against it.
    #[arg(long)]
    update_reference: bool,
    /// A task in the reference that was not run (or the other way round) is an error.
    #[arg(long)]
    strict: bool,
    /// Tolerance in standard errors of the difference of seed means.
    #[arg(long, default_value_t = 3.0)]
    z: f64,
    /// Runs in parallel [default: number of cores].
    #[arg(long)]
    jobs: Option<usize>,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Result directory [default: results/<tier>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The optimizer under test: `kind:key=value,...` (adam, adamw, sgdm, nadamw, rmsprop,
    /// adafactor, lion) or a learned optimizer `velo:PATH`, `small_fc:PATH`, `mlp_lopt:PATH`
    /// (learned_optimization's checkpoint, e.g. the published VeLO `params`, or a native
    /// `.safetensors` with its `.yaml`).
    #[arg(long, default_value = "adam:lr=1e-3")]
    candidate: String,
    /// Comma-separated tuning protocols for the baselines: built-in names (adam-lr15,
    /// sgdm-lr15, optlist-10, nadamw-random-20) or YAML files.
    #[arg(long, default_value = "adam-lr15,sgdm-lr15", value_delimiter = ',')]
    baselines: Vec<String>,
    /// A full opt_list JSON (learned_optimization's `opt_list.json`): `optlist-K` then takes its
    /// first K entries.
    #[arg(long, value_name = "PATH")]
    opt_list: Option<PathBuf>,
    /// Seeds per configuration (overrides the protocols' own; the candidate uses it too).
    #[arg(long)]
    seeds: Option<u32>,
    /// Runs in parallel (each single-threaded) [default: number of cores].
    #[arg(long)]
    jobs: Option<usize>,
    /// Device: `cpu` (CUDA is not built yet; tasks that need it are skipped with one line).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Only train; do not write the report.
    #[arg(long)]
    no_report: bool,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier `{s}`; expected one of: smoke, quick, cpu, full"))
}

/// Parse the command line and run it.
pub fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => run(RunArgs::parse_from_defaults()),
        Some(Command::List(a)) => list(&a),
        Some(Command::Run(a)) => run(a),
        Some(Command::Plan(a)) => plan_cmd(a),
        Some(Command::Validate(a)) => crate::validate::run(a),
        Some(Command::Report { dir, region }) => report(&dir, &region.options()),
        Some(Command::Compare(a)) => compare(a),
        Some(Command::Ci(a)) => ci(a),
        Some(Command::Lopt(c)) => crate::lopt::run(c),
        Some(Command::Data(DataCommand::Status)) => data_status(),
        Some(Command::Data(DataCommand::Fetch { name })) => data_fetch(&name),
    }
}

impl RunArgs {
    fn parse_from_defaults() -> Self {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            run: RunArgs,
        }
        Wrapper::parse_from(["suite"]).run
    }
}

fn load_tasks(args: &RegistryArgs) -> Result<Vec<Task>> {
    let all = match &args.registry {
        Some(dir) => registry::load_dir(dir)?,
        None => registry::embedded()?,
    };
    Ok(registry::select(&all, args.tier))
}

fn data_status() -> Result<ExitCode> {
    use beatmatch_tasks::datasets::{DataSource, DatasetName};
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

fn list(args: &ListArgs) -> Result<ExitCode> {
    let tasks = load_tasks(&args.registry)?;
    println!("{:<56} {:>10} {:>7}  {:<10} {:<6} data", "task", "params", "steps", "split", "device");
    for t in &tasks {
        let data = match t.problem.dataset.locate() {
            Ok(_) => "available",
            Err(_) => "missing (see `suite data status`)",
        };
        println!("{:<56} {:>10} {:>7}  {:<10} {:<6} {data}", t.id(), t.params(), t.steps, t.split.as_str(), t.device.as_str());
    }
    eprintln!("{} tasks in tier {}", tasks.len(), args.registry.tier.as_str());
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let no_report = args.no_report;
    let (out, summary) = run_study(args)?;
    if !no_report {
        report(&out, &beatmatch_reports::ReportOptions::default())?;
    }
    Ok(if summary.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What a study needs before anything is trained: the runnable tasks (data present, device
/// able), what was skipped and why, the optimizers and the plan.
struct Prepared {
    tasks: Vec<Task>,
    optimizers: Checkpoints,
    study: beatmatch_core::Study,
    jobs: Vec<crate::plan::Job>,
    out: PathBuf,
    workers: usize,
    /// Tasks skipped because they need a device this build lacks.
    device_skipped: Vec<Task>,
}

fn prepare(args: &RunArgs) -> Result<Prepared> {
    if args.device != "cpu" {
        bail!("device `{}` is not available: this build supports `cpu` only", args.device);
    }
    let all = load_tasks(&args.registry)?;
    // Tasks whose data is missing, or that need a GPU, are skipped with one line per dataset
    // (or device) saying how to get it.
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    let mut device_skipped = Vec::new();
    let mut missing_reported = std::collections::BTreeSet::new();
    for t in all {
        if t.device != beatmatch_tasks::DeviceReq::Cpu {
            skipped.push((t.id(), format!("needs a {} device; this build runs on cpu only", t.device.as_str())));
            device_skipped.push(t);
            continue;
        }
        match t.problem.dataset.locate() {
            Ok(_) => tasks.push(t),
            Err(e) => {
                if missing_reported.insert(t.problem.dataset) {
                    eprintln!("skipping tasks on {}", e);
                }
                skipped.push((t.id(), e.to_string()));
            }
        }
    }
    if !device_skipped.is_empty() {
        eprintln!("skipping {} tasks that need a CUDA GPU (listed by `suite list`; CUDA is not built yet)", device_skipped.len());
    }
    if tasks.is_empty() {
        bail!("no task of tier {} has its data available", args.registry.tier.as_str());
    }
    let mut optimizers = Checkpoints::default();
    let candidate = optimizers.parse_candidate(&args.candidate).with_context(|| format!("--candidate {}", args.candidate))?;
    // Fail on a bad candidate before training anything.
    optimizers.build(&candidate, &tasks[0].problem.build_model().params().to_vec()).with_context(|| format!("--candidate {}", args.candidate))?;
    let mut protocols: Vec<Protocol> = args.baselines.iter().map(|b| Protocol::resolve_with(b, args.opt_list.as_deref())).collect::<Result<_>>()?;
    if let Some(n) = args.seeds {
        if n == 0 {
            bail!("--seeds must be at least 1");
        }
        protocols.iter_mut().for_each(|p| p.seeds = n);
    }
    let seeds = args.seeds.unwrap_or_else(|| protocols.iter().map(|p| p.seeds).max().unwrap_or(1));
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("results").join(args.registry.tier.as_str()));
    let req = PlanRequest {
        tasks: &tasks,
        selection: args.registry.tier.as_str().to_string(),
        candidate,
        candidate_seeds: seeds,
        baselines: &protocols,
        device: args.device.clone(),
        skipped,
    };
    let (study, jobs) = plan(&req)?;
    let workers = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(Prepared { tasks, optimizers, study, jobs, out, workers, device_skipped })
}

/// Plan and execute a study; returns its directory and the execution totals.
fn run_study(args: RunArgs) -> Result<(PathBuf, crate::executor::ExecSummary)> {
    let started = Instant::now();
    let device = candle_core::Device::Cpu;
    let Prepared { study, jobs, out, workers, optimizers, .. } = prepare(&args)?;
    let store = Store::open(&out)?;
    store.write_study(&study)?;
    eprintln!(
        "{} tasks ({} problems), {} runs, {} workers -> {}",
        study.tasks.len(),
        jobs.iter().map(|j| &j.key.problem_hash).collect::<std::collections::BTreeSet<_>>().len(),
        jobs.len(),
        workers,
        out.display()
    );
    let summary = execute(&jobs, &store, workers, &device, &optimizers, true)?;
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

/// `suite plan`: what `suite run` would do, and how long it would take.
fn plan_cmd(args: RunArgs) -> Result<ExitCode> {
    let p = prepare(&args)?;
    let existing = if p.out.join("runs").is_dir() { Some(Store::open(&p.out)?) } else { None };
    let pending: Vec<&crate::plan::Job> = p.jobs.iter().filter(|j| existing.as_ref().is_none_or(|s| s.finished(&j.key.hash()).is_none())).collect();
    let problems = p.tasks.iter().map(|t| t.problem.hash()).collect::<std::collections::BTreeSet<_>>().len();
    println!("tier {}: {} tasks to run ({problems} problems); {} skipped", args.registry.tier.as_str(), p.tasks.len(), p.study.skipped.len());
    println!("runs: {} planned, {} already in {}, {} to run", p.jobs.len(), p.jobs.len() - pending.len(), p.out.display(), pending.len());
    let mut cal = crate::estimate::Calibration::load();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("calibrating {pos}/{len} problems {wide_bar} ETA {eta}").expect("valid template"));
    let est = cal.estimate(&pending, &candle_core::Device::Cpu, &p.optimizers, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    cal.save()?;
    let est = est?;
    println!(
        "cpu: {} on {} workers ({} of single-core work; longest run {}); per-step costs of {} problems measured now, {} cached",
        crate::estimate::human(est.wall_s(p.workers)),
        p.workers,
        crate::estimate::human(est.total_s),
        crate::estimate::human(est.longest_s),
        est.measured,
        est.from_cache
    );
    for (group, secs) in &est.by_group {
        println!("  {group:<32} {:>14} single-core", crate::estimate::human(*secs));
    }
    if !p.device_skipped.is_empty() {
        let largest = p.device_skipped.iter().map(Task::params).max().unwrap_or(0);
        println!("cuda: {} tasks (up to {largest} parameters) need a CUDA GPU: not estimated, this build has no CUDA path", p.device_skipped.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn data_fetch(name: &str) -> Result<ExitCode> {
    use beatmatch_tasks::datasets::{fetch, DatasetName};
    let d =
        DatasetName::parse(name).with_context(|| format!("unknown data set `{name}`; expected one of: {}", DatasetName::ALL.map(|d| d.as_str()).join(", ")))?;
    let dir = fetch::fetch(d, &mut |line| eprintln!("{line}"))?;
    match d.locate() {
        Ok(_) => eprintln!("{name}: installed in {}", dir.display()),
        Err(e) => bail!("{name}: downloaded to {}, but the loader still does not find it: {e}", dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

fn report(dir: &Path, opts: &beatmatch_reports::ReportOptions) -> Result<ExitCode> {
    let r = beatmatch_reports::write_report(dir, opts)?;
    eprintln!("{}", r.headline);
    eprintln!("report written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Run arguments for `tier` and `candidate` with the default baselines.
fn study_args(tier: Tier, candidate: &str, out: PathBuf, seeds: Option<u32>, jobs: Option<usize>) -> RunArgs {
    let mut a = RunArgs::parse_from_defaults();
    a.registry.tier = tier;
    a.candidate = candidate.to_string();
    a.out = Some(out);
    a.seeds = seeds;
    a.jobs = jobs;
    a.no_report = true;
    a
}

fn compare(args: CompareArgs) -> Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("results/compare"));
    let mut dirs = Vec::new();
    for (side, what) in [("a", &args.a), ("b", &args.b)] {
        let p = PathBuf::from(what);
        if p.join("study.json").is_file() {
            dirs.push(p);
        } else {
            eprintln!("{side}: running candidate {what} on tier {}", args.tier.as_str());
            let (dir, summary) = run_study(study_args(args.tier, what, out.join(side), args.seeds, args.jobs))?;
            if summary.failed > 0 {
                bail!("{side}: {} runs failed", summary.failed);
            }
            dirs.push(dir);
        }
    }
    let c = beatmatch_reports::compare::compare_dirs(&dirs[0], &dirs[1])?;
    beatmatch_reports::compare::write(&c, &out)?;
    let b_wins = c.tasks.iter().filter(|t| t.winner() == "B").count();
    let ties = c.tasks.iter().filter(|t| t.winner() == "tie").count();
    eprintln!(
        "B better on {b_wins}, tie {ties}, A better on {} of {} tasks; sign test p = {:.4}, Wilcoxon p = {:.4}",
        c.tasks.len() - b_wins - ties,
        c.tasks.len(),
        c.sign.p_value,
        c.wilcoxon.p_value
    );
    eprintln!("comparison written to {}", out.join("compare.md").display());
    Ok(ExitCode::SUCCESS)
}

fn ci(args: CiArgs) -> Result<ExitCode> {
    let (dir, summary) = run_study(study_args(Tier::Smoke, &args.candidate, args.out.clone(), None, args.jobs))?;
    if summary.failed > 0 {
        bail!("{} runs failed; see the messages above", summary.failed);
    }
    report(&dir, &beatmatch_reports::ReportOptions::default())?;
    let loaded = beatmatch_reports::analysis::load(&dir)?;
    let rows = beatmatch_reports::analysis::analyse(&loaded)?;
    if args.update_reference {
        let r = crate::ci::reference_from(&rows, &args.candidate, Tier::Smoke.as_str(), &loaded.study.device);
        if let Some(parent) = args.reference.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::store::write_json_atomic(&args.reference, &r)?;
        eprintln!("reference with {} tasks written to {}", r.tasks.len(), args.reference.display());
        return Ok(ExitCode::SUCCESS);
    }
    let reference = crate::ci::read_reference(&args.reference)?;
    let (verdicts, missing, extra) = crate::ci::check(&reference, &rows, args.z);
    let mut records: Vec<String> = rows.iter().flat_map(|r| r.arms[r.candidate].records.clone()).collect();
    records.sort();
    let md = crate::ci::markdown(&reference, &args.candidate, &verdicts, &missing, &extra, args.z, &records);
    std::fs::write(dir.join("ci-report.md"), &md)?;
    let regressed: Vec<&crate::ci::Verdict> = verdicts.iter().filter(|v| v.status == "regressed").collect();
    for v in &regressed {
        eprintln!("REGRESSION {}: final loss {:.5} -> {:.5} (+{:.5}, tolerance {:.5})", v.task, v.reference, v.current, v.current - v.reference, v.tolerance);
    }
    if args.strict && (!missing.is_empty() || !extra.is_empty()) {
        eprintln!("strict: tasks missing now: {:?}; tasks not in the reference: {:?}", missing, extra);
        return Ok(ExitCode::from(1));
    }
    eprintln!("ci: {} of {} tasks regressed; report in {}", regressed.len(), verdicts.len(), dir.join("ci-report.md").display());
    Ok(if regressed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
