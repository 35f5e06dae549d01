//! Shared vocabulary of beatmatch, imported by every other crate.
//!
//! * [`optimizer`]: the optimizer interface — an update rule (hyperparameters or bound
//!   meta-parameters) apart from each run's state, the buffer seam through which it sees
//!   tensors, and the textual optimizer specification (`adam:lr=1e-3`) that names one.
//! * [`record`]: the schema of one run's result record, the only thing reports ever read.
//! * [`study`]: the schema of a result directory's manifest (tasks with their meta split, arms, cells).
//! * [`store`]: the result directory's layout, atomic writes and the read API reports use.
//! * [`claim`]: exclusive, expiring claims on run groups, for many writers on one store.
//! * [`hash`]: content hashing of configurations, so records are keyed by what made them.
//!
//! This crate depends on serde (and `gemm` for [`matmul`]) alone: the reports side links it
//! without linking candle.

pub mod claim;
pub mod files;
pub mod hash;
pub mod matmul;
pub mod newton_schulz;
pub mod optimizer;
pub mod record;
pub mod shape;
pub mod simd;
pub mod step_protocol;
pub mod store;
pub mod study;

pub use hash::{content_hash, short_hash};
pub use optimizer::{Bound, Buffers, EvalAt, Optimizer, OptimizerSpec, ParamInfo, Params, Role, Snapshot, SpecError, StepContext, UpdateError, UpdateRule};
pub use record::{CurvePoint, EvalPoint, RunKey, RunRecord, RunStatus, RECORD_SCHEMA_VERSION};
pub use store::{ShardFile, Store, StoreError, Timing};
pub use study::{Arm, ArmRole, Cell, Split, Study, StudyTask, SPEEDUP_CAP, STUDY_SCHEMA_VERSION};

/// The version of beatmatch's training semantics, part of every run's content key.
///
/// Bump it whenever a change alters the numbers a run produces (data order, initialisation,
/// loss measurement, an optimizer's arithmetic), so cached records from older code are not reused.
/// 3: dense networks (logreg, MLPs, autoencoders) train on beatmatch's own forward/backward
/// pass instead of candle's (the same math, other float rounding).
/// 4: ConvNets, LSTMs and Transformers train there too (other float rounding; a ConvNet's
/// ReLU derivative at 0 is 0 and a tied max-pooling window routes its gradient to one input,
/// where candle's gave 1 and each).
pub const TRAINING_SEMANTICS_VERSION: u32 = 4;

/// The code version written into every record: crate version plus training-semantics version.
pub fn code_version() -> String {
    format!("beatmatch-{}+sem{}", env!("CARGO_PKG_VERSION"), TRAINING_SEMANTICS_VERSION)
}
