//! Measuring what a problem costs on this machine: a few training steps, one train-loss
//! measurement and one held-out evaluation, timed — alone on a device ([`calibrate`]), or as
//! populations of 1 and 8 members on the host engine ([`calibrate_population`]), split into a
//! fixed and a per-member part. [`crate::estimate`] turns these into a plan's time; the
//! [`crate::engine::Engine`] says which measurement a problem takes.

use crate::target::free_memory;
use anyhow::Result;
use beatmatch_tasks::data::{rng, BatchStream, View, STREAM_INIT};
use beatmatch_tasks::datasets::Dataset;
use beatmatch_tasks::device_population::DevicePopulation;
use beatmatch_tasks::inner::loss_and_grads;
use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup, Population};
use beatmatch_tasks::Problem;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Measured costs of one problem on one device (seconds), for time estimates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepCost {
    /// One training step's forward and backward pass (the optimizer update excluded).
    pub step_s: f64,
    /// One train-loss measurement (the fixed measurement batches).
    pub measure_s: f64,
    /// One held-out evaluation.
    pub eval_s: f64,
    /// Device memory a training step held at its peak as the driver reports it (parameters,
    /// gradients and what the allocator kept), in bytes; 0 on the CPU, where it is not measured.
    #[serde(default)]
    pub device_bytes: u64,
}

/// Time `steps` training steps (after one warm-up step), one train-loss measurement and one
/// held-out evaluation of `problem` (and on a GPU, the memory a step holds).
pub fn calibrate(problem: &Problem, data: &Dataset, device: &Device, steps: usize) -> Result<StepCost> {
    let free_before = free_memory(device)?;
    let mut least_free = free_before;
    let model = problem.build_model();
    let train_view = View::new(problem, data, false)?;
    let test_view = View::new(problem, data, true)?;
    let params: Vec<Tensor> = model
        .init(&mut rng(0, STREAM_INIT))
        .into_iter()
        .zip(model.params())
        .map(|(v, p)| Ok(candle_core::Var::from_vec(v, p.shape.clone(), device)?.as_tensor().clone()))
        .collect::<Result<_>>()?;
    let mut batches = BatchStream::new(train_view.len(), 0);
    let mut idx = Vec::new();
    let mut timed = 0.0;
    for i in 0..=steps {
        batches.next_indices(problem.batch_size, &mut idx);
        let start = Instant::now();
        let (xb, yb) = train_view.batch(&idx, device)?;
        let grads = loss_and_grads(model.as_ref(), &params, &xb, &yb)?;
        if i > 0 {
            timed += start.elapsed().as_secs_f64();
        }
        // While the gradients are alive: the step's high-water mark as far as the driver sees.
        if let Some(free) = free_memory(device)? {
            least_free = least_free.map(|l| l.min(free));
        }
        drop(grads);
    }
    let measure_idx = train_view.measurement_items(problem);
    let start = Instant::now();
    train_view.evaluate(model.as_ref(), &params, Some(&measure_idx), problem.batch_size, device)?;
    let measure_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    test_view.evaluate(model.as_ref(), &params, None, test_view.chunk(), device)?;
    let device_bytes = free_before.zip(least_free).map_or(0, |(b, l)| b.saturating_sub(l));
    Ok(StepCost { step_s: timed / steps.max(1) as f64, measure_s, eval_s: start.elapsed().as_secs_f64(), device_bytes })
}

/// A problem's costs: per population step (`fixed`) and per member (`per_member`); a problem
/// trained one by one has all of its cost in `fixed` and is never batched.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProblemCost {
    /// Paid once per step of a population (of a run, when not batched).
    pub fixed: StepCost,
    /// Paid per member.
    pub per_member: StepCost,
    /// Whether the problem trains as a population.
    pub population: bool,
}

/// Time populations of 1 and 8 members of a dense problem (SGD without momentum, the cheapest
/// update; updates are estimated apart) and split each cost into its fixed and per-member part.
pub fn calibrate_population(problem: &Problem, data: &Dataset, steps: u64) -> Result<ProblemCost> {
    let infos = problem.build_model().params().to_vec();
    let problem = &quiet(problem);
    split(&|k| {
        let opt = beatmatch_baselines::build_members(&vec![cheapest(); k], &infos)?;
        let pop = Population::new(problem, data, 0, &plans(k, steps), vec![OptimizerGroup { optimizer: opt, members: 0..k }])?;
        timed(pop, steps, |p| Ok(p.time_measurements()))
    })
}

/// [`calibrate_population`] for a device population on `device` (SGD's fused kernel over
/// every member).
pub fn calibrate_device_population(problem: &Problem, data: &Dataset, device: &Device, steps: u64) -> Result<ProblemCost> {
    let infos = problem.build_model().params().to_vec();
    let problem = &quiet(problem);
    split(&|k| {
        let opt = beatmatch_baselines::build_on(&vec![cheapest(); k], &infos, device)?;
        let pop = DevicePopulation::new(problem, data, 0, device, &plans(k, steps), vec![OptimizerGroup { optimizer: opt, members: 0..k }])?;
        timed(pop, steps, DevicePopulation::time_measurements)
    })
}

/// `k` members with room for a warm-up step and `steps` timed ones.
fn plans(k: usize, steps: u64) -> Vec<MemberPlan> {
    vec![MemberPlan { steps: steps + 2, horizon: steps + 2 }; k]
}

/// A population's step cost: one warm-up step, then `steps` timed; `measurements` gives its
/// train-loss measurement's and held-out evaluation's seconds.
fn timed<P: Members>(mut pop: P, steps: u64, measurements: impl FnOnce(&mut P) -> Result<(f64, f64)>) -> Result<StepCost> {
    pop.advance(1)?;
    let start = Instant::now();
    pop.advance(steps)?;
    let step_s = start.elapsed().as_secs_f64() / steps as f64;
    let (measure_s, eval_s) = measurements(&mut pop)?;
    Ok(StepCost { step_s, measure_s, eval_s, device_bytes: 0 })
}

/// SGD without momentum: the cheapest update (updates are estimated apart).
fn cheapest() -> beatmatch_core::OptimizerSpec {
    beatmatch_core::OptimizerSpec::new(beatmatch_baselines::sgd::NAME).with("lr", 1e-3).with("momentum", 0.0)
}

/// `problem` without the measurements a run takes between steps (those are timed apart).
fn quiet(problem: &Problem) -> Problem {
    let mut quiet = problem.clone();
    quiet.measurement.every = u64::MAX / 2;
    quiet.measurement.eval_at.clear();
    quiet
}

/// A problem's costs from `time(k)`, the costs of a population of `k` members: those of 1 and
/// 8 split into a fixed and a per-member part.
fn split(time: &dyn Fn(usize) -> Result<StepCost>) -> Result<ProblemCost> {
    let (one, eight) = (time(1)?, time(8)?);
    let member = |a: f64, b: f64| ((b - a) / 7.0).max(0.0);
    let per_member = StepCost {
        step_s: member(one.step_s, eight.step_s),
        measure_s: member(one.measure_s, eight.measure_s),
        eval_s: member(one.eval_s, eight.eval_s),
        device_bytes: 0,
    };
    let fixed = StepCost {
        step_s: (one.step_s - per_member.step_s).max(0.0),
        measure_s: (one.measure_s - per_member.measure_s).max(0.0),
        eval_s: (one.eval_s - per_member.eval_s).max(0.0),
        device_bytes: 0,
    };
    Ok(ProblemCost { fixed, per_member, population: true })
}
