//! The study manifest (`study.json`): which tasks a result directory covers, which optimizers
//! ("arms") were compared, and which record answers each (task, arm, configuration, seed) cell.
//!
//! Reports read this and the records, nothing else; every number they print can be traced to
//! the record hashes listed here.

use crate::OptimizerSpec;
use serde::{Deserialize, Serialize};

/// Version of the manifest schema (2: tasks carry their meta split, the study its speedup cap).
pub const STUDY_SCHEMA_VERSION: u32 = 2;

/// How far past each problem's longest budget the speedup reference (LR-tuned Adam) runs;
/// speedups are capped here ("≥ 4").
pub const SPEEDUP_CAP: u64 = 4;

/// Which side of a meta-learning split a task is on: learned optimizers are meta-trained on
/// `meta_train` tasks only, so `meta_test` tasks measure generalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// May be used for meta-training.
    MetaTrain,
    /// Held out from meta-training.
    MetaTest,
}

impl Split {
    /// Both sides, training side first.
    pub const ALL: [Split; 2] = [Split::MetaTrain, Split::MetaTest];

    /// Registry name.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::MetaTrain => "meta_train",
            Split::MetaTest => "meta_test",
        }
    }

    /// The default split of a problem: about one problem in four is held out, chosen by its
    /// content hash (so every budget of a problem is on the same side, and the choice is
    /// reproducible without a list).
    pub fn by_hash(problem_hash: &str) -> Split {
        let first = u8::from_str_radix(&problem_hash[..2.min(problem_hash.len())], 16).unwrap_or(0);
        if first.is_multiple_of(4) {
            Split::MetaTest
        } else {
            Split::MetaTrain
        }
    }
}

/// One task of the study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyTask {
    /// Readable task id, e.g. `mlp-w128-d2-relu.fashion_mnist.b128.s1000`.
    pub id: String,
    /// Readable problem id (the task without its budget).
    pub problem_id: String,
    /// Content hash of the problem configuration.
    pub problem_hash: String,
    /// Trainable parameters.
    pub params: u64,
    /// Step budget.
    pub steps: u64,
    /// Meta-train or meta-test side of the split.
    pub split: Split,
}

/// What part an arm plays in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArmRole {
    /// The optimizer under test.
    Candidate,
    /// A tuned baseline.
    Baseline,
}

/// One optimizer (or tuned family) in the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    /// Short name, e.g. `adam-lr15` or `candidate`.
    pub name: String,
    /// Legend label with trial count, e.g. `AdamLR (15 trials)`.
    pub legend: String,
    /// Candidate or baseline.
    pub role: ArmRole,
    /// Configurations tried.
    pub configs: Vec<OptimizerSpec>,
    /// Number of seeds per configuration.
    pub seeds: u32,
    /// Whether this arm's runs extend past each budget to build the speedup reference
    /// (the LR-tuned Adam envelope).
    pub speedup_reference: bool,
    /// Where the optimizer comes from, when that bears on the meta split: a published learned
    /// optimizer's authors and what it was meta-trained on (every task here held out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
}

/// One cell: the record answering (task, arm, config, seed), read at `steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Index into `tasks`.
    pub task: usize,
    /// Index into `arms`.
    pub arm: usize,
    /// Index into the arm's `configs`.
    pub config: usize,
    /// Seed.
    pub seed: u64,
    /// Record hash (file `runs/<hash>.json`).
    pub record: String,
}

/// The manifest of a result directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Study {
    /// [`STUDY_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Tier or registry selection the tasks came from.
    pub selection: String,
    /// Code version that planned it.
    pub code_version: String,
    /// Device the runs were planned for.
    pub device: String,
    /// Speedups are capped at this multiple of the budget (the reference runs that far).
    pub speedup_cap: u64,
    /// Tasks.
    pub tasks: Vec<StudyTask>,
    /// Arms; exactly one has role `candidate`.
    pub arms: Vec<Arm>,
    /// Cells.
    pub cells: Vec<Cell>,
    /// Tasks left out, with the reason (e.g. missing data), as (task id, reason).
    pub skipped: Vec<(String, String)>,
}
