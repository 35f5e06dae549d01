//! beatmatch tasks: the registry of training problems, their datasets and models, and the
//! training loop that runs one optimizer on one of them.
//!
//! Data flows one way: `registry` (YAML) → [`Task`]s → `train` → outcomes the suite records.

pub mod datasets;
pub mod models;
pub mod registry;
pub mod task;
pub mod train;

pub use datasets::{Dataset, DatasetName, MissingData};
pub use task::{DeviceReq, Problem, Split, Task, Tier};
