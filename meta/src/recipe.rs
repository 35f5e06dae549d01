//! Meta-training recipes: `learned/recipes/*.yaml`, validated like the registry (an unknown key,
//! a bad value, a meta_test task → the file, the line and what was expected).
//!
//! ```yaml
//! name: small_fc_es_mnist1d        # names the checkpoints
//! architecture: small_fc           # small_fc | mlp_lopt
//! init: { seed: 0 }                # reference initialisation; or { checkpoint: PATH } (warm start)
//! estimator: full_es               # full_es | truncated_pes
//! meta_loss: avg                   # avg | last_recompute (full_es)
//! recompute_batches: 4             # fresh batches for last_recompute
//! sigma: 0.01                      # perturbation standard deviation (> 0)
//! pairs: 8                         # antithetic pairs per outer step
//! outer_steps: 300
//! unroll: { min: 50, max: 300 }    # steps: log-uniform in [min, max]; min = max for fixed
//! truncation: 50                   # truncated_pes: steps per truncation (divides the unroll)
//! tasks: { tier: quick }           # a tier's meta_train problems; or { ids: [task ids] }
//! validation: { tasks: [ids], every: 25, seeds: 1 }   # held-back meta_train tasks
//! outer: { lr: 0.003, warmup: 20, final_fraction: 0.1, clip: { elementwise: 3.0 } }
//! checkpoint_every: 25             # outer steps
//! seed: 0
//! frozen: [rnn_params, lstm_init_state]   # optional: theta tensors (path prefixes) kept as initialised
//! hyperparameters: { train_phase: 1 }     # optional: the architecture's settable hyperparameters
//! ```
//!
//! `frozen` and `hyperparameters` meta-train an architecture in phases, as Celo is: phase 1
//! trains the per-parameter MLP with the scheduler frozen and unused (`train_phase: 1`), phase 2
//! starts from phase 1's checkpoint and trains the scheduler with the MLP frozen. An
//! architecture without a reference initialisation (Celo's published weights) can be
//! meta-trained further from a checkpoint (`init: { checkpoint: PATH }`).

use crate::outer::OuterConfig;
use anyhow::{anyhow, Result};
use beatmatch_learned::Architecture;
use beatmatch_tasks::task::{Split, Task, Tier};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Gradient estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Antithetic full-episode ES.
    FullEs,
    /// Truncated PES.
    TruncatedPes,
}

/// What the estimator scores an unroll by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaLoss {
    /// Mean pre-update mini-batch loss over the unroll.
    Avg,
    /// Final train loss re-estimated on fresh batches.
    LastRecompute,
}

/// Where the initial theta comes from; in YAML `{ seed: N }` or `{ checkpoint: PATH }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "OneOf<u64, PathBuf>", into = "OneOf<u64, PathBuf>")]
pub enum Init {
    /// The architecture's reference initialisation from this seed.
    Seed(u64),
    /// Warm start from a checkpoint (relative to the recipe's folder).
    Checkpoint(PathBuf),
}

/// Unroll lengths (inner steps).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unroll {
    /// Shortest.
    pub min: u64,
    /// Longest.
    pub max: u64,
}

/// Which tasks to meta-train on; in YAML `{ tier: NAME }` or `{ ids: [ID, …] }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "TierOrIds", into = "TierOrIds")]
pub enum TaskList {
    /// Every meta_train problem of a tier.
    Tier(String),
    /// These registry task ids (each must be meta_train).
    Ids(Vec<String>),
}

/// `{ seed: N }` or `{ checkpoint: PATH }` as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneOf<A, B> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<A>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint: Option<B>,
}

impl TryFrom<OneOf<u64, PathBuf>> for Init {
    type Error = &'static str;
    fn try_from(o: OneOf<u64, PathBuf>) -> Result<Self, Self::Error> {
        match (o.seed, o.checkpoint) {
            (Some(s), None) => Ok(Init::Seed(s)),
            (None, Some(p)) => Ok(Init::Checkpoint(p)),
            _ => Err("init: expected exactly one of `seed: N` (reference initialisation) or `checkpoint: PATH` (warm start)"),
        }
    }
}

impl From<Init> for OneOf<u64, PathBuf> {
    fn from(i: Init) -> Self {
        match i {
            Init::Seed(s) => OneOf { seed: Some(s), checkpoint: None },
            Init::Checkpoint(p) => OneOf { seed: None, checkpoint: Some(p) },
        }
    }
}

/// `{ tier: NAME }` or `{ ids: [...] }` as written.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierOrIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ids: Option<Vec<String>>,
}

impl TryFrom<TierOrIds> for TaskList {
    type Error = &'static str;
    fn try_from(o: TierOrIds) -> Result<Self, Self::Error> {
        match (o.tier, o.ids) {
            (Some(t), None) => Ok(TaskList::Tier(t)),
            (None, Some(ids)) => Ok(TaskList::Ids(ids)),
            _ => Err("tasks: expected exactly one of `tier: NAME` (its meta_train problems) or `ids: [task ids]`"),
        }
    }
}

impl From<TaskList> for TierOrIds {
    fn from(t: TaskList) -> Self {
        match t {
            TaskList::Tier(t) => TierOrIds { tier: Some(t), ids: None },
            TaskList::Ids(ids) => TierOrIds { tier: None, ids: Some(ids) },
        }
    }
}

/// Held-back validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// meta_train task ids, not trained on, each run at its own budget.
    pub tasks: Vec<String>,
    /// Evaluate every this many outer steps (and at the end).
    pub every: u64,
    /// Seeds per task.
    #[serde(default = "one")]
    pub seeds: u64,
}

fn one() -> u64 {
    1
}
fn four() -> usize {
    4
}
fn sigma_default() -> f64 {
    0.01
}

/// A parsed recipe (see the module docs for the file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Names the checkpoints.
    pub name: String,
    /// What is meta-trained.
    pub architecture: Architecture,
    /// Initial theta.
    pub init: Init,
    /// Gradient estimator.
    pub estimator: Estimator,
    /// Meta-loss (FullES).
    #[serde(default = "avg")]
    pub meta_loss: MetaLoss,
    /// Fresh batches for `last_recompute`.
    #[serde(default = "four")]
    pub recompute_batches: usize,
    /// Perturbation standard deviation.
    #[serde(default = "sigma_default")]
    pub sigma: f64,
    /// Antithetic pairs per outer step.
    pub pairs: usize,
    /// Outer steps.
    pub outer_steps: u64,
    /// Unroll lengths.
    pub unroll: Unroll,
    /// Steps per truncation (PES).
    #[serde(default)]
    pub truncation: Option<u64>,
    /// Training tasks.
    pub tasks: TaskList,
    /// Validation.
    pub validation: Validation,
    /// Outer optimizer.
    pub outer: OuterConfig,
    /// Checkpoint every this many outer steps.
    pub checkpoint_every: u64,
    /// Seed of every random stream.
    #[serde(default)]
    pub seed: u64,
    /// Theta tensors (path prefixes, e.g. `rnn_params`) held at their initial values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen: Vec<String>,
    /// The architecture's settable hyperparameters, for training and the checkpoints written.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub hyperparameters: beatmatch_learned::Hyperparameters,
}

fn avg() -> MetaLoss {
    MetaLoss::Avg
}

/// A recipe with its tasks looked up.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The recipe.
    pub recipe: Recipe,
    /// SHA-256 of the file's bytes (hex).
    pub sha256: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// Training problems (one task per problem; the unroll length replaces its budget).
    pub train: Vec<Task>,
    /// Validation tasks (at their budgets).
    pub validation: Vec<Task>,
}

/// The 1-based line of the first line of `text` containing `needle` (1 when none does).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).map_or(1, |i| i + 1)
}

/// Parse recipe `text` (named `file` in errors) against the registry's `tasks`.
pub fn parse(file: &str, text: &str, registry: &[Task]) -> Result<Resolved> {
    let recipe: Recipe = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        anyhow!("{file}{loc}: {e}")
    })?;
    let at = |key: &str, msg: String| anyhow!("{file}:{}: {msg}", line_of(text, key));
    let r = &recipe;
    if !(r.sigma > 0.0 && r.sigma.is_finite()) {
        return Err(at("sigma", format!("sigma {} must be a positive number (the perturbation's standard deviation, e.g. 0.01)", r.sigma)));
    }
    if let Err(e) = r.architecture.check_hyperparameters(&r.hyperparameters) {
        return Err(at("hyperparameters", format!("{e:#}")));
    }
    if !r.architecture.meta_trainable() && !matches!(r.init, Init::Checkpoint(_)) {
        let trainable: Vec<&str> = Architecture::all().into_iter().filter(|a| a.meta_trainable()).map(|a| a.as_str()).collect();
        return Err(at(
            "architecture",
            format!(
                "{} has no reference initialisation here: start it from a checkpoint (`init: {{ checkpoint: PATH }}`) or use one of: {}",
                r.architecture.label(),
                trainable.join(", ")
            ),
        ));
    }
    if r.pairs == 0 {
        return Err(at("pairs", "pairs must be at least 1".into()));
    }
    if r.outer_steps == 0 || r.checkpoint_every == 0 || r.validation.every == 0 || r.validation.seeds == 0 {
        let key = if r.outer_steps == 0 {
            "outer_steps"
        } else if r.checkpoint_every == 0 {
            "checkpoint_every"
        } else {
            "every"
        };
        return Err(at(key, "outer_steps, checkpoint_every, validation.every and validation.seeds must be at least 1".into()));
    }
    if r.unroll.min == 0 || r.unroll.min > r.unroll.max {
        return Err(at("unroll", format!("unroll {{ min: {}, max: {} }}: expected 1 ≤ min ≤ max", r.unroll.min, r.unroll.max)));
    }
    if r.outer.lr.is_nan() || r.outer.lr <= 0.0 {
        return Err(at("lr", format!("outer lr {} must be positive", r.outer.lr)));
    }
    match (r.estimator, r.truncation) {
        (Estimator::TruncatedPes, None) => return Err(at("estimator", "truncated_pes needs `truncation: K` (steps per truncation)".into())),
        (Estimator::TruncatedPes, Some(k)) => {
            if k == 0 || r.unroll.min != r.unroll.max || !r.unroll.min.is_multiple_of(k) {
                return Err(at(
                    "truncation",
                    format!(
                        "truncated_pes needs a fixed unroll (min = max) that is a multiple of truncation {k}: episodes are aligned so a checkpoint between them resumes exactly"
                    ),
                ));
            }
            let per_episode = r.unroll.min / k;
            if !r.outer_steps.is_multiple_of(per_episode) {
                return Err(at(
                    "outer_steps",
                    format!(
                        "outer_steps {} must be a multiple of the {per_episode} truncations per episode (the last checkpoint falls between episodes)",
                        r.outer_steps
                    ),
                ));
            }
            if r.meta_loss != MetaLoss::Avg {
                return Err(at("meta_loss", "truncated_pes scores truncations by their average loss: expected meta_loss: avg".into()));
            }
        }
        (Estimator::FullEs, Some(_)) => return Err(at("truncation", "truncation applies to truncated_pes only".into())),
        (Estimator::FullEs, None) => {}
    }
    let find = |id: &str, role: &str| -> Result<Task> {
        let t = registry.iter().find(|t| t.id() == id).ok_or_else(|| at(id, format!("{role} task `{id}` is not in the registry (see `suite list`)")))?;
        if t.split != Split::MetaTrain {
            return Err(at(id, format!("{role} task `{id}` is meta_test: meta-training may only see meta_train tasks")));
        }
        Ok(t.clone())
    };
    let validation: Vec<Task> = r.validation.tasks.iter().map(|id| find(id, "validation")).collect::<Result<_>>()?;
    if validation.is_empty() {
        return Err(at("validation", "validation.tasks must name at least one meta_train task".into()));
    }
    let held: BTreeSet<String> = validation.iter().map(|t| t.problem.hash()).collect();
    let mut train: Vec<Task> = Vec::new();
    match &r.tasks {
        TaskList::Ids(ids) => {
            for id in ids {
                let t = find(id, "training")?;
                if held.contains(&t.problem.hash()) {
                    return Err(at(id, format!("training task `{id}` is also a validation problem; validation must be held back")));
                }
                train.push(t);
            }
        }
        TaskList::Tier(name) => {
            let tier = Tier::parse(name).ok_or_else(|| at("tier", format!("unknown tier `{name}`; expected smoke, quick, cpu or full")))?;
            let mut seen = BTreeSet::new();
            for t in beatmatch_tasks::registry::select(registry, tier) {
                if t.split == Split::MetaTrain && !held.contains(&t.problem.hash()) && seen.insert(t.problem.hash()) {
                    train.push(t);
                }
            }
        }
    }
    if train.is_empty() {
        return Err(at("tasks", "no training tasks left (every meta_train problem is held back for validation?)".into()));
    }
    Ok(Resolved { recipe, sha256: beatmatch_learned::checkpoint::sha256(text.as_bytes()), path: PathBuf::from(file), train, validation })
}

/// Read and parse the recipe at `path`.
pub fn load(path: &Path, registry: &[Task]) -> Result<Resolved> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow!("reading recipe {}: {e}", path.display()))?;
    let mut r = parse(&path.display().to_string(), &text, registry)?;
    r.path = path.to_path_buf();
    if let Init::Checkpoint(p) = &r.recipe.init {
        if p.is_relative() {
            r.recipe.init = Init::Checkpoint(path.parent().unwrap_or(Path::new(".")).join(p));
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGISTRY: &str = include_str!("../tests/common/registry.yaml");

    const GOOD: &str = "name: t
architecture: small_fc
init: { seed: 0 }
estimator: full_es
sigma: 0.01
pairs: 2
outer_steps: 10
unroll: { min: 10, max: 30 }
tasks: { ids: [logreg.mnist1d.b32.s40] }
validation: { tasks: [mlp-w8-d1-relu.mnist1d.b32.s30], every: 5 }
outer: { lr: 0.01, clip: { global_norm: 1.0 } }
checkpoint_every: 5
";

    fn registry() -> Vec<Task> {
        beatmatch_tasks::registry::parse("r.yaml", REGISTRY).unwrap()
    }

    fn err(text: &str) -> String {
        parse("recipe.yaml", text, &registry()).unwrap_err().to_string()
    }

    #[test]
    fn a_good_recipe_resolves_its_tasks() {
        let r = parse("recipe.yaml", GOOD, &registry()).unwrap();
        assert_eq!(r.train.len(), 1);
        assert_eq!(r.validation[0].steps, 30);
        assert_eq!(r.recipe.outer.clip, crate::outer::Clip::GlobalNorm(1.0));
        assert_eq!(r.recipe.init, Init::Seed(0));
        // A tier list takes the tier's meta_train problems minus the validation ones.
        let tier = parse("recipe.yaml", &GOOD.replace("{ ids: [logreg.mnist1d.b32.s40] }", "{ tier: smoke }"), &registry()).unwrap();
        assert_eq!(tier.train.iter().map(|t| t.id()).collect::<Vec<_>>(), vec!["logreg.mnist1d.b32.s40", "mlp-w8-d1-tanh.mnist1d.b32.s30"]);
    }

    #[test]
    fn bad_recipes_name_the_file_the_line_and_what_was_expected() {
        let e = err(&GOOD.replace("pairs: 2", "pairs: 2\nsigmaa: 0.1"));
        assert!(e.starts_with("recipe.yaml:7") && e.contains("unknown field `sigmaa`"), "{e}");
        let e = err(&GOOD.replace("sigma: 0.01", "sigma: -0.5"));
        assert!(e.starts_with("recipe.yaml:5:") && e.contains("positive"), "{e}");
        let e = err(&GOOD.replace("sigma: 0.01", "sigma: 0"));
        assert!(e.starts_with("recipe.yaml:5:"), "{e}");
        let e = err(&GOOD.replace("[logreg.mnist1d.b32.s40]", "[mlp-w16-d1-relu.mnist1d.b32.s30]"));
        assert!(e.starts_with("recipe.yaml:9:") && e.contains("is meta_test"), "{e}");
        let e = err(&GOOD.replace("tasks: [mlp-w8-d1-relu.mnist1d.b32.s30]", "tasks: [mlp-w16-d1-relu.mnist1d.b32.s30]"));
        assert!(e.starts_with("recipe.yaml:10:") && e.contains("is meta_test"), "{e}");
        let e = err(&GOOD.replace("[logreg.mnist1d.b32.s40]", "[nope.s1]"));
        assert!(e.starts_with("recipe.yaml:9:") && e.contains("not in the registry"), "{e}");
        let e = err(&GOOD.replace("estimator: full_es", "estimator: pes"));
        assert!(e.starts_with("recipe.yaml:4") && e.contains("full_es"), "{e}");
        let e = err(&GOOD.replace("estimator: full_es", "estimator: truncated_pes\ntruncation: 7"));
        assert!(e.contains("recipe.yaml:5:") && e.contains("multiple of truncation 7"), "{e}");
        let e = err(&GOOD.replace("architecture: small_fc", "architecture: velo"));
        assert!(
            e.starts_with("recipe.yaml:2:")
                && e.contains("VeLO has no reference initialisation here: start it from a checkpoint")
                && e.contains("small_fc, mlp_lopt"),
            "{e}"
        );
        let e = err(&GOOD.replace("{ min: 10, max: 30 }", "{ min: 30, max: 10 }"));
        assert!(e.starts_with("recipe.yaml:8:") && e.contains("min ≤ max"), "{e}");
        let e = err(&GOOD.replace("[logreg.mnist1d.b32.s40]", "[mlp-w8-d1-relu.mnist1d.b32.s30]"));
        assert!(e.contains("held back"), "{e}");
    }
}
