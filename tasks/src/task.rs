//! Problems (model × dataset × batch size) and tasks (a problem with a step budget).

use crate::datasets::DatasetName;
use crate::models::{Model, ModelConfig};
use serde::{Deserialize, Serialize};

pub use beatmatch_core::Split;

/// Registry tiers, smallest first; a tier includes every smaller one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// A handful of tasks, under a minute: tests and CI.
    Smoke,
    /// The default: ≥ 40 tasks, ≤ 10 minutes on 2 cores including baselines.
    Quick,
    /// Everything a 2-core CPU finishes in ≤ 4 hours including baselines (`suite plan` checks).
    Cpu,
    /// Everything in the registry: long budgets and GPU-only models.
    Full,
}

impl Tier {
    /// Every tier, smallest first.
    pub const ALL: [Tier; 4] = [Tier::Smoke, Tier::Quick, Tier::Cpu, Tier::Full];

    /// Registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Smoke => "smoke",
            Tier::Quick => "quick",
            Tier::Cpu => "cpu",
            Tier::Full => "full",
        }
    }

    /// Parse a registry name.
    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How losses are measured along a run.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Measurement {
    /// Train loss is measured every this many steps (and at every budget).
    pub every: u64,
    /// Number of fixed training batches the train loss is averaged over.
    pub batches: usize,
    /// Steps at which held-out loss and accuracy are evaluated: the problem's budgets.
    pub eval_at: Vec<u64>,
}

/// A training problem: what is trained, on what, in what batches, and how it is measured.
/// Step budgets are not part of it, so runs of constant-schedule optimizers serve every budget.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Problem {
    /// The model.
    pub model: ModelConfig,
    /// The dataset.
    pub dataset: DatasetName,
    /// Examples per step.
    pub batch_size: usize,
    /// Loss measurement protocol.
    pub measurement: Measurement,
}

impl Problem {
    /// A problem whose measurements cover the given budgets (ascending, non-empty).
    pub fn new(model: ModelConfig, dataset: DatasetName, batch_size: usize, budgets: &[u64]) -> Self {
        // About 20 measurements over the shortest budget, so speedups resolve to ~5% of it.
        let every = (budgets[0] / 20).max(1);
        Self { model, dataset, batch_size, measurement: Measurement { every, batches: 4, eval_at: budgets.to_vec() } }
    }

    /// Readable id, e.g. `mlp-w128-d2-relu.fashion_mnist.b128`.
    pub fn id(&self) -> String {
        format!("{}.{}.b{}", self.model.id(), self.dataset, self.batch_size)
    }

    /// Content hash of the resolved configuration.
    pub fn hash(&self) -> String {
        beatmatch_core::content_hash(self)
    }

    /// The model this problem trains.
    pub fn build_model(&self) -> Box<dyn Model> {
        let (shape, classes) = self.dataset.signature();
        self.model.build(&shape, classes)
    }

    /// Steps at which the train loss is measured in a run of `steps` steps: every
    /// `measurement.every` steps, at every budget, and at the end.
    pub fn measure_steps(&self, steps: u64) -> Vec<u64> {
        let m = &self.measurement;
        let mut v: Vec<u64> = (0..=steps).step_by(m.every as usize).collect();
        v.extend(m.eval_at.iter().copied().filter(|&b| b <= steps));
        v.push(steps);
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The device a task needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceReq {
    /// Runs anywhere.
    Cpu,
    /// Too large for a CPU in reasonable time or memory: needs a CUDA GPU.
    Cuda,
}

impl DeviceReq {
    /// Registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceReq::Cpu => "cpu",
            DeviceReq::Cuda => "cuda",
        }
    }
}

/// A concrete task: a problem and a step budget.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Task {
    /// What is trained.
    pub problem: Problem,
    /// Step budget.
    pub steps: u64,
    /// Smallest tier that includes this task.
    pub tier: Tier,
    /// Meta-train or meta-test.
    pub split: Split,
    /// Device it needs.
    pub device: DeviceReq,
}

impl Task {
    /// Readable id, e.g. `mlp-w128-d2-relu.fashion_mnist.b128.s1000`.
    pub fn id(&self) -> String {
        format!("{}.s{}", self.problem.id(), self.steps)
    }

    /// Trainable parameter count.
    pub fn params(&self) -> u64 {
        self.problem.build_model().param_count()
    }
}
