//! Command-line interface: parses the arguments and dispatches to `beatmatch_suite::commands`.

use anyhow::Result;
use beatmatch_reports::figures::Format;
use beatmatch_suite::commands::{self, CiOptions};
use beatmatch_suite::executor::Progress;
use beatmatch_suite::study::{Selection, StudyOptions};
use beatmatch_tasks::Tier;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// beatmatch: does an optimizer beat or match the tuned baselines?
///
/// With no command, runs the default `quick` tier: Celo with its authors' published weights
/// (learned/checkpoints/published/celo) against the default baselines (`--baselines`), then
/// writes the report to `results/quick`.
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
    Validate(ValidateArgs),
    /// Write the report for a result directory (tasks.csv, win_rate_bins.csv, summary.md, PNGs).
    Report {
        /// Result directory written by `suite run` (by one process or many shards).
        dir: PathBuf,
        #[command(flatten)]
        region: RegionArgs,
        /// Report even when the records come from several code versions (the report says so).
        #[arg(long)]
        allow_mixed: bool,
    },
    /// How far a result directory (or each study under it) is: runs done, running, pending and
    /// failed, per shard, with the failures' first lines.
    Status {
        /// Result directory, or a folder of them (e.g. `results`).
        dir: PathBuf,
    },
    /// List records no current study references, stale claims and crash leftovers; with
    /// `--delete`, remove them.
    Gc {
        /// Result directory.
        dir: PathBuf,
        /// Remove what is listed.
        #[arg(long)]
        delete: bool,
    },
    /// Compare two candidates (specs or checkpoints, run on the same tasks and seeds) or two
    /// result directories: paired per-task deltas, sign and Wilcoxon tests, compare.md.
    Compare(CompareArgs),
    /// Regression gate: run the smoke tier and compare with the reference in ci/reference.json.
    Ci(CiArgs),
    /// Learned-optimizer checkpoints: inspect or convert.
    #[command(subcommand)]
    Lopt(LoptCommand),
    /// Meta-train a learned optimizer from a recipe (learned/recipes/*.yaml): antithetic ES or
    /// truncated PES on meta_train tasks; rerun the same command to resume after a crash.
    MetaTrain(MetaTrainArgs),
    /// Data sets: where each was found, or how to get it.
    #[command(subcommand)]
    Data(DataCommand),
    /// The optimizers beatmatch knows: every hand-designed kind with its hyperparameters and
    /// defaults (as markdown: the README's table), the learned architectures, the figures.
    Kinds,
}

/// `--candidate`'s help, from the lists of kinds and architectures.
fn candidate_help() -> String {
    format!(
        "The optimizer under test: `kind:key=value,...` (a hand-designed kind: {}; `suite kinds` lists their hyperparameters), a learned optimizer `ARCH:PATH` ({}) — learned_optimization's or Celo's checkpoint, e.g. the published VeLO `params`, a PyLO safetensors file, or a native `.safetensors` with its `.yaml` — or a published learned optimizer shipped with beatmatch, by name alone ({}), its hyperparameters settable (`celo2:lr=3e-3`); or a tuning protocol (a built-in name, e.g. `celo2-lr`, or a YAML file), tuned as the baselines are and labelled with its number of trials; or an optimizer in another process: `python:PATH[:FACTORY][:KEY=VALUE,...]` (a numpy step function, a torch.optim.Optimizer or an optax GradientTransformation; BEATMATCH_PYTHON names the interpreter) or `exec:COMMAND[:KEY=VALUE,...]`, over the step protocol (docs/step-protocol.md)",
        beatmatch_baselines::kind_names(),
        beatmatch_learned::Architecture::names(),
        beatmatch_suite::factory::published_names()
    )
}

/// `--baselines`' help, from the embedded protocols and the sets.
fn baselines_help() -> String {
    let sets: Vec<String> = beatmatch_baselines::protocol::SETS.iter().map(|(n, m, what)| format!("`{n}` ({}: {what})", m.join(", "))).collect();
    format!(
        "Comma-separated tuning protocols for the baselines: built-in names ({}), YAML files, or sets: {}",
        beatmatch_baselines::Protocol::embedded_names().join(", "),
        sets.join("; ")
    )
}

/// `--arch`'s help, from the list of architectures.
fn arch_help() -> String {
    format!("Architecture, when the file's tensors do not say ({})", beatmatch_learned::Architecture::names())
}

/// `suite validate` arguments.
#[derive(Args)]
struct ValidateArgs {
    /// Comma-separated checks to run [default: all]: mnist1d_logreg, mnist1d_mlp,
    /// fashion_conv, moby_transformer.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seed for initialisation and data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `suite meta-train` arguments.
#[derive(Args)]
struct MetaTrainArgs {
    /// Recipe file.
    #[arg(long)]
    recipe: PathBuf,
    /// Output folder [default: results/meta/NAME]; holding a run of this recipe, it is resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads (the result does not depend on it) [default: number of cores].
    #[arg(long)]
    jobs: Option<usize>,
    /// Progress display: bar (a terminal's default), lines (otherwise) or none.
    #[arg(long, value_parser = parse_progress)]
    progress: Option<Progress>,
    /// Read the registry from this directory of YAML files instead of the built-in one.
    #[arg(long)]
    registry: Option<PathBuf>,
}

/// Checkpoint commands.
#[derive(Subcommand)]
enum LoptCommand {
    /// Print a checkpoint's architecture, meta-parameter count and SHA-256.
    Inspect {
        /// learned_optimization checkpoint (msgpack, e.g. VeLO's `params`) or native `.safetensors`.
        file: PathBuf,
        #[arg(long, help = arch_help())]
        arch: Option<String>,
    },
    /// Convert between learned_optimization's msgpack and beatmatch's native format (an
    /// output ending in `.safetensors` is native, with a `.yaml` sidecar; anything else msgpack).
    Convert {
        /// Input checkpoint.
        input: PathBuf,
        /// Output path.
        output: PathBuf,
        #[arg(long, help = arch_help())]
        arch: Option<String>,
    },
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
    /// Only the tasks whose id matches this regular expression (e.g. `mlp-.*fashion`).
    #[arg(long, value_parser = parse_regex)]
    only: Option<regex::Regex>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// List every data set with its source (embedded, generated, directory) or how to get it.
    Status,
    /// Download a data set from its canonical URL, check its SHA-256 sums, and install it where
    /// the suite looks ($BEATMATCH_DATA/NAME, else ~/.cache/beatmatch/data/NAME).
    Fetch {
        /// Data set: fashion_mnist, mnist or cifar10.
        name: String,
    },
}

#[derive(Args, Clone)]
struct RegionArgs {
    /// Headline region: tasks with fewer parameters than this.
    #[arg(long, default_value_t = 5e8)]
    max_params: f64,
    /// Headline region: tasks with fewer steps than this.
    #[arg(long, default_value_t = 2e5)]
    max_steps: f64,
    /// Figure formats, comma-separated: png, svg (report.html embeds the SVGs when written).
    #[arg(long, value_delimiter = ',', default_value = "png,svg", value_parser = parse_format)]
    figures: Vec<Format>,
}

impl RegionArgs {
    fn options(&self, allow_mixed: bool) -> beatmatch_reports::ReportOptions {
        let figures: &'static [Format] = match (self.figures.contains(&Format::Png), self.figures.contains(&Format::Svg)) {
            (true, false) => &[Format::Png],
            (false, true) => &[Format::Svg],
            _ => &[Format::Png, Format::Svg],
        };
        beatmatch_reports::ReportOptions {
            region: beatmatch_reports::win_rate::Region { max_params: self.max_params, max_steps: self.max_steps },
            figures,
            allow_mixed,
            ..Default::default()
        }
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("unknown figure format `{s}`; expected png or svg"))
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
    /// Read the registry from this directory of YAML files instead of the built-in one.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Only the tasks whose id matches this regular expression.
    #[arg(long, value_parser = parse_regex)]
    only: Option<regex::Regex>,
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
    #[arg(long, default_value = beatmatch_suite::factory::DEFAULT_CANDIDATE)]
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
    /// Also write the verdicts as JUnit XML (one test case per task), for CI test reports.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Also write a pull-request comment (summary line, moved tasks, collapsed details).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
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
    /// Result directory [default: results/TIER].
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = beatmatch_suite::factory::DEFAULT_CANDIDATE, help = candidate_help())]
    candidate: String,
    #[arg(long, default_value = beatmatch_baselines::protocol::DEFAULT_BASELINES, value_delimiter = ',', help = baselines_help())]
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
    /// Device: `cpu` (the host path); `cpu-device` (the device path on the CPU: what a GPU run
    /// executes); `cuda` or `cuda:N` (builds with `--features cuda`).
    /// Tasks that need a GPU are skipped on the CPU with one line.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Largest population trained as one computation: the members of a run group (one
    /// problem, one seed) share every mini-batch and train together [default: on the host, as
    /// many as fit 8 MiB of parameters, gradients and Adam's state (a logistic regression's
    /// whole run group, 3 members of a 145k-parameter MLP); on a device, whole groups]; `1`
    /// trains them one by one. Records are the same either way.
    #[arg(long)]
    population: Option<usize>,
    /// Progress display: `bar` (a terminal's default), `lines` (a line every 30 s: the default
    /// when stderr is not a terminal, as under CI or nohup), `none`.
    #[arg(long, value_parser = parse_progress)]
    progress: Option<beatmatch_suite::executor::Progress>,
    /// No progress display (`--progress none`).
    #[arg(long, short)]
    quiet: bool,
    /// Only train; do not write the report.
    #[arg(long)]
    no_report: bool,
    /// Train only shard I of N (1-based): run groups dealt out by estimated cost, the same way
    /// on every host. Without it, a Slurm array task's index is used (SLURM_ARRAY_TASK_ID), or a
    /// Kubernetes Indexed Job's (JOB_COMPLETION_INDEX, with --shards N).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Number of shards, for a Kubernetes Indexed Job (its completions).
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Join a result directory planned by another code version: keep its finished runs, train
    /// the rest with this one (reports then need --allow-mixed too).
    #[arg(long)]
    allow_mixed: bool,
    #[command(flatten)]
    report: RegionArgs,
}

fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| format!("not a regular expression: {e}"))
}

fn parse_progress(s: &str) -> Result<Progress, String> {
    match s {
        "bar" => Ok(Progress::Bar),
        "lines" => Ok(Progress::Lines),
        "none" => Ok(Progress::None),
        _ => Err(format!("unknown progress display `{s}`; expected bar, lines or none")),
    }
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier `{s}`; expected one of: smoke, quick, cpu, full"))
}

impl RegistryArgs {
    fn selection(&self) -> Selection {
        Selection { tier: self.tier, registry: self.registry.clone(), only: self.only.clone() }
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

    fn options(&self) -> Result<StudyOptions> {
        let shard = beatmatch_suite::shard::Shard::resolve(self.shard.as_deref(), self.shards, &|k| std::env::var(k).ok())?;
        Ok(StudyOptions {
            selection: self.registry.selection(),
            out: self.out.clone(),
            candidate: self.candidate.clone(),
            baselines: self.baselines.clone(),
            opt_list: self.opt_list.clone(),
            seeds: self.seeds,
            jobs: self.jobs,
            device: self.device.clone(),
            population: self.population,
            progress: if self.quiet { Progress::None } else { self.progress.unwrap_or_else(Progress::for_stderr) },
            shard,
            allow_mixed: self.allow_mixed,
        })
    }
}

/// Parse the command line and run it.
pub fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        None => {
            let a = RunArgs::parse_from_defaults();
            commands::run(&a.options()?, (!a.no_report).then(|| a.report.options(a.allow_mixed)))
        }
        Some(Command::List(a)) => commands::list(&a.registry.selection()),
        Some(Command::Run(a)) => commands::run(&a.options()?, (!a.no_report).then(|| a.report.options(a.allow_mixed))),
        Some(Command::Plan(a)) => {
            // `suite plan --shards N` alone shows how N shards would split the work.
            let indexed = beatmatch_suite::shard::INDEX_VARIABLES.iter().any(|v| std::env::var_os(v).is_some());
            let split = a.shards.filter(|_| a.shard.is_none() && !indexed);
            let a = RunArgs { shards: if split.is_some() { None } else { a.shards }, ..a };
            commands::plan(&a.options()?, split)
        }
        Some(Command::Validate(a)) => beatmatch_suite::validate::run(&a.only, a.seed),
        Some(Command::Report { dir, region, allow_mixed }) => commands::report(&dir, &region.options(allow_mixed)),
        Some(Command::Status { dir }) => beatmatch_suite::status::run(&dir),
        Some(Command::Gc { dir, delete }) => commands::gc(&dir, delete),
        Some(Command::Compare(a)) => {
            let sel = Selection { tier: a.tier, registry: a.registry, only: a.only };
            commands::compare(&a.a, &a.b, &sel, a.out, a.seeds, a.jobs)
        }
        Some(Command::Ci(a)) => commands::ci(&CiOptions {
            candidate: a.candidate,
            reference: a.reference,
            out: a.out,
            update_reference: a.update_reference,
            strict: a.strict,
            z: a.z,
            jobs: a.jobs,
            junit: a.junit,
            markdown: a.markdown,
        }),
        Some(Command::Lopt(LoptCommand::Inspect { file, arch })) => beatmatch_suite::lopt::inspect(&file, arch.as_deref()),
        Some(Command::Lopt(LoptCommand::Convert { input, output, arch })) => beatmatch_suite::lopt::convert(&input, &output, arch.as_deref()),
        Some(Command::MetaTrain(a)) => beatmatch_suite::meta_train::run(&beatmatch_suite::meta_train::MetaTrainOptions {
            recipe: a.recipe,
            out: a.out,
            jobs: a.jobs,
            progress: a.progress.unwrap_or_else(Progress::for_stderr),
            registry: a.registry,
        }),
        Some(Command::Data(DataCommand::Status)) => commands::data_status(),
        Some(Command::Data(DataCommand::Fetch { name })) => commands::data_fetch(&name),
        Some(Command::Kinds) => commands::kinds(),
    }
}
