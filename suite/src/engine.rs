//! Where the work of a study is done, decided once: the host engine, or a candle device.
//!
//! * [`Engine::Host`]: the native dense engine trains logistic regressions, MLPs and
//!   autoencoders as populations (a run group's members at once), candle the other families
//!   one run at a time; every optimizer is its host rule on the parameters' own storage.
//! * [`Engine::Device`]: candle on a device (the CPU for `--device cpu-device`, a GPU for
//!   `cuda`): every optimizer is its device rule on device-resident tensors; every family
//!   trains as device populations (one forward and backward pass for a run group's members).
//!
//! The engine answers the questions that depend on it — how optimizers are built, which
//! runner trains run groups and at what population size, how a problem's costs are
//! calibrated — so no other module asks which engine it is.

use crate::calibrate::{calibrate, calibrate_device_population, calibrate_population, ProblemCost, StepCost};
use crate::factory::OptimizerFactory;
use crate::runner::{host_population, DevicePopulationRunner, PopulationRunner, Runner};
use crate::target::{free_memory, members_that_fit};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};
use beatmatch_learned::checkpoint::Checkpoint;
use beatmatch_tasks::datasets::Dataset;
use beatmatch_tasks::device_population::DevicePopulation;
use beatmatch_tasks::population::Population;
use beatmatch_tasks::Problem;
use candle_core::Device;

/// The engine a study trains on.
#[derive(Clone, Debug)]
pub enum Engine {
    /// The host path: populations on the native dense engine, host optimizer rules.
    Host,
    /// A candle device through the device rules: device populations where the family batches
    /// members, else one run at a time.
    Device(Device),
}

impl Engine {
    /// The device parameters live on (the CPU for the host path).
    pub fn device(&self) -> &Device {
        static CPU: Device = Device::Cpu;
        match self {
            Engine::Host => &CPU,
            Engine::Device(d) => d,
        }
    }

    /// Whether runs train through the device rules (`cpu-device`, a GPU).
    pub fn is_device(&self) -> bool {
        matches!(self, Engine::Device(_))
    }

    /// The hand-designed optimizer over the members `specs` configure: the host rule, or the
    /// device rule (one member).
    pub fn build_kind(&self, specs: &[OptimizerSpec], params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
        match self {
            Engine::Host => beatmatch_baselines::build_members(specs, params),
            Engine::Device(d) => beatmatch_baselines::build_on(specs, params, d),
        }
    }

    /// A learned checkpoint's optimizer over `members` members: the host rule (its large
    /// tensors' updates split over `threads` threads), or the device rule (one member).
    pub fn build_learned(&self, ckpt: &Checkpoint, members: usize, threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
        match self {
            Engine::Host => Ok(ckpt.arch.host(&ckpt.theta, &ckpt.hyperparameters, members, threads, params)?),
            Engine::Device(d) => beatmatch_learned::build_on(ckpt.arch, &ckpt.theta, &ckpt.hyperparameters, members, params, d),
        }
    }

    /// The largest population the runner trains together for a model of `params` parameters:
    /// the one asked for; else on the host as many members as [`host_population`] allows, on
    /// a device the whole run group (None).
    pub fn max_members(&self, requested: Option<usize>, params: u64) -> Option<usize> {
        match self {
            Engine::Host => Some(requested.unwrap_or_else(|| host_population(params))),
            Engine::Device(_) => requested,
        }
    }

    /// The runner that trains run groups here, building optimizers with `factory`.
    pub fn runner<'a>(&self, factory: &'a OptimizerFactory, population: Option<usize>) -> Box<dyn Runner + 'a> {
        match self {
            Engine::Host => Box::new(PopulationRunner { max: population, factory }),
            Engine::Device(d) => Box::new(DevicePopulationRunner { device: d.clone(), max: population, factory }),
        }
    }

    /// Measure `problem`'s costs here: as populations of 1 and 8 members where it trains as
    /// one, else a few steps of one run on the device.
    pub fn calibrate(&self, problem: &Problem, data: &Dataset) -> Result<ProblemCost> {
        match self {
            Engine::Host if Population::<dyn Optimizer>::supports(problem) => return calibrate_population(problem, data, 60),
            // Calibration times 8 members: a problem where they do not fit is timed as one run.
            Engine::Device(d) if DevicePopulation::supports(problem) && members_that_fit(problem, d)?.is_none_or(|n| n >= 8) => {
                let mut cost = calibrate_device_population(problem, data, d, 20)?;
                // The plan's measured memory: one run's high-water mark (GPUs only).
                if free_memory(d)?.is_some() {
                    cost.fixed.device_bytes = calibrate(problem, data, d, 2)?.device_bytes;
                }
                return Ok(cost);
            }
            _ => {}
        }
        let zero = StepCost { step_s: 0.0, measure_s: 0.0, eval_s: 0.0, device_bytes: 0 };
        let fixed = calibrate(problem, data, self.device(), 5)?;
        Ok(ProblemCost { fixed, per_member: zero, population: false })
    }
}
