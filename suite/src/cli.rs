//! Command-line interface. The binary's table of contents: list, run, report.

use crate::executor::execute;
use crate::plan::{plan, PlanRequest};
use crate::store::Store;
use anyhow::{bail, Context, Result};
use beatmatch_baselines::Protocol;
use crate::optimizers::Checkpoints;
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
    /// Write the report for a result directory (tasks.csv, win_rate_bins.csv, summary.md, PNGs).
    Report {
        /// Result directory written by `suite run`.
        dir: PathBuf,
    },
    /// Learned-optimizer checkpoints: inspect or convert.
    #[command(subcommand)]
    Lopt(crate::lopt::LoptCommand),
}

#[derive(Args)]
struct RegistryArgs {
    /// Tier: smoke (CI, < 1 min), quick (default, ≤ 10 min on 2 cores), full (everything).
    #[arg(long, default_value = "quick", value_parser = parse_tier)]
    tier: Tier,
    /// Read the registry from this directory of YAML files instead of the built-in one.
    #[arg(long)]
    registry: Option<PathBuf>,
}

#[derive(Args)]
struct ListArgs {
    #[command(flatten)]
    registry: RegistryArgs,
}

#[derive(Args)]
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
    /// Device: `cpu` (CUDA is not built yet).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Only train; do not write the report.
    #[arg(long)]
    no_report: bool,
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier `{s}`; expected one of: smoke, quick, full"))
}

/// Parse the command line and run it.
pub fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => run(RunArgs::parse_from_defaults()),
        Some(Command::List(a)) => list(&a),
        Some(Command::Run(a)) => run(a),
        Some(Command::Report { dir }) => report(&dir),
        Some(Command::Lopt(c)) => crate::lopt::run(c),
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

fn list(args: &ListArgs) -> Result<ExitCode> {
    let tasks = load_tasks(&args.registry)?;
    println!("{:<48} {:>10} {:>8}  data", "task", "params", "steps");
    for t in &tasks {
        let data = match t.problem.dataset.locate() {
            Ok(_) => "available".to_string(),
            Err(_) => "missing (see `suite run`)".to_string(),
        };
        println!("{:<48} {:>10} {:>8}  {data}", t.id(), t.params(), t.steps);
    }
    eprintln!("{} tasks in tier {}", tasks.len(), args.registry.tier.as_str());
    Ok(ExitCode::SUCCESS)
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let started = Instant::now();
    if args.device != "cpu" {
        bail!("device `{}` is not available: this build supports `cpu` only", args.device);
    }
    let device = candle_core::Device::Cpu;
    let all = load_tasks(&args.registry)?;
    // Tasks whose data is missing are skipped with one line per dataset saying how to get it.
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    let mut missing_reported = std::collections::BTreeSet::new();
    for t in all {
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
    let store = Store::open(&out)?;
    store.write_study(&study)?;
    let workers = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
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
    if !args.no_report {
        report(&out)?;
    }
    Ok(if summary.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn report(dir: &Path) -> Result<ExitCode> {
    let r = beatmatch_reports::write_report(dir, &beatmatch_reports::ReportOptions::default())?;
    eprintln!("{}", r.headline);
    eprintln!("report written to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}
