//! beatmatch tasks: the registry of training problems, their datasets and models, and the
//! resumable inner run that trains one optimizer on one of them.
//!
//! Data flows one way: `registry` (YAML) → [`Task`]s → [`inner::InnerRun`] (driven to the end
//! by [`train::train`]) → outcomes the suite records.

pub mod data;
pub mod datasets;
pub mod dense;
pub mod device_population;
pub mod inner;
pub mod ledger;
pub mod memory;
pub mod models;
pub mod native;
pub mod population;
pub mod registry;
pub mod task;
pub mod train;

pub use datasets::{Dataset, DatasetName, MissingData};
pub use inner::{InnerRun, RunSettings, TrainOutcome};
pub use task::{DeviceReq, Problem, Split, Task, Tier};
