//! One whole training run: [`train`] drives an [`InnerRun`] from start to end.

use crate::datasets::Dataset;
pub use crate::inner::{InnerRun, RunSettings, TrainOutcome, EXPLOSION_FACTOR};
use crate::task::Problem;
use anyhow::Result;
use beatmatch_core::Optimizer;

/// Train `problem` with `optimizer` for `settings.steps` steps. `on_progress(steps_done)` is
/// called now and then for progress display. Divergence is an outcome, not an error; errors
/// are bugs or I/O.
pub fn train(
    problem: &Problem,
    data: &Dataset,
    optimizer: Box<dyn Optimizer>,
    settings: RunSettings<'_>,
    on_progress: &mut dyn FnMut(u64),
) -> Result<TrainOutcome> {
    InnerRun::new(problem, data, optimizer, settings)?.finish_with(on_progress)
}
