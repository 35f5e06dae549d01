//! The run-record schema: one file per training run, immutable once written.
//!
//! A record holds everything reports need (loss curve, held-out evaluations, divergence) and
//! everything that made it (problem hash, optimizer spec and hash, seed, code version, device).
//! It holds no wall-clock times, so the same run always writes the same bytes.

use crate::{content_hash, OptimizerSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of this schema; bumped on any incompatible change.
pub const RECORD_SCHEMA_VERSION: u32 = 1;

/// What identifies a run. Its content hash is the record's key and file name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunKey {
    /// Readable id of the training problem (model × dataset × batch size), e.g. `mlp-w128-d2-relu.mnist1d.b128`.
    pub problem_id: String,
    /// Content hash of the problem's resolved configuration.
    pub problem_hash: String,
    /// The optimizer configuration.
    pub optimizer: OptimizerSpec,
    /// Content hash of the optimizer configuration (or checkpoint).
    pub optimizer_hash: String,
    /// Seed for initialisation and data order.
    pub seed: u64,
    /// Steps trained.
    pub steps: u64,
    /// Horizon given to the optimizer (steps); equals `steps` except for constant-schedule runs
    /// that are trained once to the longest budget and read off at shorter ones.
    pub horizon: u64,
    /// [`crate::code_version`] of the code that ran it.
    pub code_version: String,
    /// Device that ran it, e.g. `cpu`.
    pub device: String,
}

impl RunKey {
    /// The content hash naming this run's record.
    pub fn hash(&self) -> String {
        content_hash(self)
    }
}

/// Mean training loss at one step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Steps taken before the measurement (0 = at initialisation).
    pub step: u64,
    /// Mean loss (nats) over the fixed measurement batches of the training split; `None` when
    /// not finite.
    pub train_loss: Option<f32>,
}

/// Held-out evaluation at one step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Steps taken before the evaluation.
    pub step: u64,
    /// Mean loss (nats) over the held-out split; `None` when not finite.
    pub eval_loss: Option<f32>,
    /// Classification accuracy on the held-out split in [0, 1], where the task has one.
    pub eval_accuracy: Option<f32>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunStatus {
    /// All steps taken with finite losses.
    Finished,
    /// Stopped early: the loss became non-finite or exploded. Every budget at or past `step`
    /// scores as +∞ for this run.
    Diverged {
        /// The step at which divergence was detected.
        step: u64,
        /// Why, e.g. `non-finite loss` or `loss 25.1 > 10 × initial 2.30`.
        reason: String,
    },
    /// The run itself failed (a bug or resource error, not the optimizer's fault).
    Failed {
        /// The error message.
        error: String,
    },
}

/// One run's result record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`RECORD_SCHEMA_VERSION`] when written.
    pub schema_version: u32,
    /// `key.hash()`: the record's file name stem.
    pub hash: String,
    /// What made this run.
    pub key: RunKey,
    /// Trainable parameter count of the model.
    pub params: u64,
    /// How the run ended.
    pub status: RunStatus,
    /// Training loss along the run, ascending by step.
    pub curve: Vec<CurvePoint>,
    /// Held-out evaluations, ascending by step (at each step budget the run covers).
    pub evals: Vec<EvalPoint>,
    /// Library name → version, as the step-protocol worker that ran the optimizer reported them
    /// (`python`, `numpy`, `torch`, …); empty for optimizers that run inside the suite.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub worker_versions: BTreeMap<String, String>,
}

impl RunRecord {
    /// The step at which the run diverged, if it did.
    pub fn diverged_at(&self) -> Option<u64> {
        match self.status {
            RunStatus::Diverged { step, .. } => Some(step),
            _ => None,
        }
    }

    /// Training loss after `step` steps, read off the curve: +∞ when the run diverged at or
    /// before `step` or failed, `None` when the curve has no point at `step`.
    pub fn train_loss_at(&self, step: u64) -> Option<f64> {
        if matches!(self.status, RunStatus::Failed { .. }) {
            return Some(f64::INFINITY);
        }
        if self.diverged_at().is_some_and(|d| d <= step) {
            return Some(f64::INFINITY);
        }
        let p = self.curve.iter().find(|p| p.step == step)?;
        Some(p.train_loss.map_or(f64::INFINITY, f64::from))
    }

    /// Held-out loss after `step` steps (+∞ when diverged by then or not finite).
    pub fn eval_at(&self, step: u64) -> Option<EvalPoint> {
        self.evals.iter().find(|e| e.step == step).copied()
    }
}
