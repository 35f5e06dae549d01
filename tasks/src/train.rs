//! One whole training run: [`train`] drives a population of one (the native engine, on the
//! CPU) or an [`InnerRun`] (candle: the device path) from start to end.

use crate::datasets::Dataset;
pub use crate::inner::{InnerRun, RunSettings, TrainOutcome, EXPLOSION_FACTOR};
use crate::population::{MemberPlan, Members, OptimizerGroup, Population};
use crate::task::Problem;
use anyhow::Result;
use beatmatch_core::Optimizer;

/// Train `problem` with `optimizer` for `settings.steps` steps. `on_progress(steps_done)` is
/// called now and then for progress display. Divergence is an outcome, not an error; errors
/// are bugs or I/O.
///
/// On the CPU every family the native engine has trains as a population of one (so a run alone
/// gives the same bytes as the same member in any population); otherwise through candle
/// ([`InnerRun`]), as does every run of an optimizer that
/// [wants device tensors](Optimizer::wants_device_tensors).
pub fn train(
    problem: &Problem,
    data: &Dataset,
    optimizer: Box<dyn Optimizer>,
    settings: RunSettings<'_>,
    on_progress: &mut dyn FnMut(u64),
) -> Result<TrainOutcome> {
    if settings.device.is_cpu() && !optimizer.wants_device_tensors() && Population::<dyn Optimizer>::supports(problem) {
        let plan = [MemberPlan { steps: settings.steps, horizon: settings.horizon }];
        let mut pop = Population::new(problem, data, settings.seed, &plan, vec![OptimizerGroup { optimizer, members: 0..1 }])?;
        while !pop.is_done() {
            pop.advance(64)?;
            on_progress(pop.step());
        }
        return Ok(pop.outcome(0));
    }
    InnerRun::new(problem, data, optimizer, settings)?.finish_with(on_progress)
}
