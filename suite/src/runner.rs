//! Runners: what trains a run group — the jobs of one problem from one seed, which share
//! initialisation and every mini-batch. A runner says how many members it trains at once:
//! [`OneByOne`] one, [`PopulationRunner`] as many as [`host_population`] allows on the native
//! engine, [`DevicePopulationRunner`] whole groups on a device. The
//! [`crate::executor`] feeds them; [`crate::engine::Engine::runner`] picks one.
//!
//! A diverged run is a result; an error or panic inside a run is recorded as `failed` (and
//! retried next time) — neither stops the other runs.

use crate::factory::OptimizerFactory;
use crate::foreign::source::is_foreign;
use crate::plan::Job;
use anyhow::Result;
use beatmatch_core::{OptimizerSpec, RunRecord, RunStatus, Timing, RECORD_SCHEMA_VERSION};
use beatmatch_tasks::device_population::DevicePopulation;
use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup, Population};
use beatmatch_tasks::train::{train, RunSettings, TrainOutcome};
use beatmatch_tasks::{Dataset, Problem};
use candle_core::Device;
use std::collections::BTreeMap;
use std::time::Instant;

/// The jobs of one run group: one problem trained from one seed by one or more optimizers.
pub struct JobGroup<'a> {
    /// The problem.
    pub problem: &'a Problem,
    /// The seed (initialisation and data order).
    pub seed: u64,
    /// The runs, largest first.
    pub jobs: Vec<&'a Job>,
}

/// Trains run groups.
pub trait Runner: Sync {
    /// Largest group this runner trains at once for a model of `params` parameters; larger
    /// groups are split (None: any size).
    fn max_members(&self, params: u64) -> Option<usize>;
    /// Train every job of `group`. `progress(job, steps)` reports a job's steps done so far;
    /// `done(job, record, timing)` hands back each finished run (failed runs included: a
    /// runner turns its errors into `failed` records).
    fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing));
}

/// The plain runner: each job trained alone, single-threaded, on one device.
pub struct OneByOne<'a> {
    /// Device to train on.
    pub device: Device,
    /// Builds each job's optimizer.
    pub factory: &'a OptimizerFactory,
}

impl Runner for OneByOne<'_> {
    fn max_members(&self, _params: u64) -> Option<usize> {
        Some(1)
    }

    fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing)) {
        for &job in &group.jobs {
            let started = Instant::now();
            let record = run_one(job, &self.device, self.factory, &mut |step| progress(job, step));
            done(job, record, Timing { seconds: started.elapsed().as_secs_f64(), steps: job.key.steps });
        }
    }
}

/// The population runner: the members of a run group train together as one [`Population`]
/// (every family the native engine has), their optimizers grouped by kind and horizon;
/// others would train one by one. Each member's record is the same bits as alone.
pub struct PopulationRunner<'a> {
    /// Largest population (None: as many members as [`host_population`] allows).
    pub max: Option<usize>,
    /// Builds the members' optimizers.
    pub factory: &'a OptimizerFactory,
}

/// Bytes of parameters, gradients and optimizer state (four floats per parameter: Adam's)
/// that a host population's members may hold together by default: 8 MiB.
///
/// Why a cap: a population steps every member's forward and backward pass, then every
/// member's update, so in a large population a member's state has left the cache by the time
/// its update reads it. Measured (2026-12-06, `bench/results/2026-12-06-xeon-spr-avx512.md`):
/// an MLP of 145k parameters trains at 1.00–1.06× one-by-one's rate in populations of 3,
/// 0.94× in populations of 8 and 0.46–0.72× in populations of 60 (a run group under the
/// default baselines), while a logistic regression's populations of 60 (126 KB a member) run
/// 2.4× faster than one by one.
pub const HOST_POPULATION_BYTES: u64 = 8 << 20;

/// The most members a host population of a `params`-parameter model holds by default: as many
/// as fit [`HOST_POPULATION_BYTES`], at least one.
pub fn host_population(params: u64) -> usize {
    usize::try_from(HOST_POPULATION_BYTES / (16 * params.max(1))).unwrap_or(usize::MAX).max(1)
}

/// Kind, checkpoint with hyperparameters, horizon: what [`optimizer_key`] compares.
type OptimizerKey = (String, Option<String>, u64);

/// How members are grouped under one optimizer: same kind and horizon; a learned optimizer's
/// members also share its checkpoint and hyperparameters (one bound rule serves them all).
fn optimizer_key(job: &Job) -> OptimizerKey {
    let o = &job.key.optimizer;
    (o.kind.clone(), o.checkpoint.as_ref().map(|sha| format!("{sha}{:?}", o.hparams)), job.key.horizon)
}

impl Runner for PopulationRunner<'_> {
    fn max_members(&self, params: u64) -> Option<usize> {
        crate::engine::Engine::Host.max_members(self.max, params)
    }

    fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing)) {
        if !Population::<dyn beatmatch_core::Optimizer>::supports(group.problem) {
            return OneByOne { device: Device::Cpu, factory: self.factory }.run_group(group, progress, done);
        }
        run_members(self, self.factory, group, progress, done);
    }
}

impl BuildMembers for PopulationRunner<'_> {
    fn build<'d>(&self, problem: &'d Problem, seed: u64, data: &'d Dataset, jobs: &[&Job]) -> Result<Box<dyn Members + 'd>> {
        let groups = optimizer_groups(self.factory, problem, jobs, &|_| true)?;
        Ok(Box::new(Population::new(problem, data, seed, &plans(jobs), groups)?))
    }
}

/// The optimizer groups of `jobs` (in optimizer-group order): each run of one optimizer key
/// is one group where `together` holds for its spec, one group per member elsewhere.
fn optimizer_groups(factory: &OptimizerFactory, problem: &Problem, jobs: &[&Job], together: &dyn Fn(&OptimizerSpec) -> bool) -> Result<Vec<OptimizerGroup>> {
    let infos = problem.build_model().params().to_vec();
    let mut groups = Vec::new();
    let mut start = 0;
    while start < jobs.len() {
        let key = optimizer_key(jobs[start]);
        let mut end = start + jobs[start..].iter().take_while(|j| optimizer_key(j) == key).count();
        if !together(&jobs[start].key.optimizer) {
            end = start + 1;
        }
        let specs: Vec<_> = jobs[start..end].iter().map(|j| j.key.optimizer.clone()).collect();
        groups.push(OptimizerGroup { optimizer: factory.build_members(&specs, &infos)?, members: start..end });
        start = end;
    }
    Ok(groups)
}

/// The device population runner: the members of a run group train together as one
/// [`DevicePopulation`] on `device` (the families whose model batches members), a fused kind's
/// members stepped together, every other rule one member at a time; the other families train
/// one by one there. Each member's record is the bits of its run alone on the CPU device.
pub struct DevicePopulationRunner<'a> {
    /// Device to train on.
    pub device: Device,
    /// Largest population (None: whole run groups).
    pub max: Option<usize>,
    /// Builds the members' optimizers.
    pub factory: &'a OptimizerFactory,
}

impl Runner for DevicePopulationRunner<'_> {
    fn max_members(&self, _params: u64) -> Option<usize> {
        self.max
    }

    fn run_group(&self, group: &JobGroup<'_>, progress: &mut dyn FnMut(&Job, u64), done: &mut dyn FnMut(&Job, RunRecord, Timing)) {
        if !DevicePopulation::supports(group.problem) {
            return OneByOne { device: self.device.clone(), factory: self.factory }.run_group(group, progress, done);
        }
        // The study's memory check sized one run; a population holds about one run's memory
        // per member, so on a GPU a group is split to what fits.
        if let Some(fit) = crate::target::members_that_fit(group.problem, &self.device).ok().flatten() {
            if group.jobs.len() > fit {
                for jobs in group.jobs.chunks(fit) {
                    self.run_group(&JobGroup { problem: group.problem, seed: group.seed, jobs: jobs.to_vec() }, progress, done);
                }
                return;
            }
        }
        run_members(self, self.factory, group, progress, done);
    }
}

impl BuildMembers for DevicePopulationRunner<'_> {
    fn build<'d>(&self, problem: &'d Problem, seed: u64, data: &'d Dataset, jobs: &[&Job]) -> Result<Box<dyn Members + 'd>> {
        // A fused kind's members step together; the other rules one member each.
        let groups = optimizer_groups(self.factory, problem, jobs, &beatmatch_baselines::steps_members_on_device)?;
        Ok(Box::new(DevicePopulation::new(problem, data, seed, &self.device, &plans(jobs), groups)?))
    }
}

/// Each job's budget and horizon.
fn plans(jobs: &[&Job]) -> Vec<MemberPlan> {
    jobs.iter().map(|j| MemberPlan { steps: j.key.steps, horizon: j.key.horizon }).collect()
}

/// How a population runner makes the population of a run group's jobs (in optimizer-group
/// order) on its data.
trait BuildMembers {
    fn build<'d>(&self, problem: &'d Problem, seed: u64, data: &'d Dataset, jobs: &[&Job]) -> Result<Box<dyn Members + 'd>>;
}

/// Train `group` as the population `build` makes of its data and jobs (in optimizer-group
/// order), handing back each member's record as it ends; an error ends every job not yet done
/// as `failed`. A worker that fails ends the population it is in: each foreign configuration
/// trains in a population of its own, so it takes no other optimizer's runs down with it.
fn run_members(
    builder: &dyn BuildMembers,
    factory: &OptimizerFactory,
    group: &JobGroup<'_>,
    progress: &mut dyn FnMut(&Job, u64),
    done: &mut dyn FnMut(&Job, RunRecord, Timing),
) {
    let mut parts: BTreeMap<Option<OptimizerKey>, Vec<&Job>> = BTreeMap::new();
    for &j in &group.jobs {
        parts.entry(is_foreign(&j.key.optimizer).then(|| optimizer_key(j))).or_default().push(j);
    }
    if parts.len() > 1 {
        for (_, jobs) in parts {
            run_members(builder, factory, &JobGroup { problem: group.problem, seed: group.seed, jobs }, progress, done);
        }
        return;
    }
    // Members in optimizer-group order; `finished[i]` once job i's record is out.
    let mut jobs: Vec<&Job> = group.jobs.clone();
    jobs.sort_by_key(|j| optimizer_key(j));
    let mut finished = vec![false; jobs.len()];
    let started = Instant::now();
    let result = (|| -> Result<()> {
        let data = group.problem.dataset.load()?;
        let mut pop = builder.build(group.problem, group.seed, &data, &jobs)?;
        // Wall time is shared among the members training during each stretch.
        let mut seconds = vec![0f64; jobs.len()];
        while !pop.is_done() {
            let live: Vec<usize> = (0..jobs.len()).filter(|&m| pop.ended(m).is_none()).collect();
            let t = Instant::now();
            pop.advance(64)?;
            let share = t.elapsed().as_secs_f64() / live.len().max(1) as f64;
            for &m in &live {
                seconds[m] += share;
                progress(jobs[m], pop.step().min(jobs[m].key.steps));
            }
            for m in live.into_iter().filter(|&m| pop.ended(m).is_some()) {
                let o = pop.outcome(m);
                finished[m] = true;
                let r = stamped(factory, record(jobs[m], o.status, o.curve, o.evals));
                done(jobs[m], r, Timing { seconds: seconds[m], steps: jobs[m].key.steps });
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let msg = format!("{e:#}");
        let secs = started.elapsed().as_secs_f64();
        for (job, _) in jobs.iter().zip(&finished).filter(|(_, f)| !**f) {
            done(job, stamped(factory, failed(job, msg.clone())), Timing { seconds: secs / jobs.len() as f64, steps: 0 });
        }
    }
}

/// Train one job into its record; errors and panics become a `failed` record.
pub fn run_one(job: &Job, device: &Device, factory: &OptimizerFactory, on_progress: &mut dyn FnMut(u64)) -> RunRecord {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<TrainOutcome> {
        let data = job.problem.dataset.load()?;
        let infos = job.problem.build_model().params().to_vec();
        let opt = factory.build(&job.key.optimizer, &infos)?;
        let settings = RunSettings { device, seed: job.key.seed, steps: job.key.steps, horizon: job.key.horizon };
        train(&job.problem, &data, opt, settings, on_progress)
    }));
    let r = match outcome {
        Ok(Ok(o)) => record(job, o.status, o.curve, o.evals),
        Ok(Err(e)) => failed(job, format!("{e:#}")),
        Err(panic) => failed(job, format!("panic: {}", panic_message(panic.as_ref()))),
    };
    stamped(factory, r)
}

/// `r` with the library versions its step-protocol worker reported, if it had one.
fn stamped(factory: &OptimizerFactory, mut r: RunRecord) -> RunRecord {
    r.worker_versions = factory.worker_versions(&r.key.optimizer);
    r
}

/// A panic's message, where it carried one.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// `job`'s record with the given results.
pub fn record(job: &Job, status: RunStatus, curve: Vec<beatmatch_core::CurvePoint>, evals: Vec<beatmatch_core::EvalPoint>) -> RunRecord {
    RunRecord {
        schema_version: RECORD_SCHEMA_VERSION,
        hash: job.key.hash(),
        key: job.key.clone(),
        params: job.params,
        status,
        curve,
        evals,
        worker_versions: Default::default(),
    }
}

/// `job`'s record of a failed run.
pub fn failed(job: &Job, error: String) -> RunRecord {
    record(job, RunStatus::Failed { error }, vec![], vec![])
}

#[cfg(test)]
mod tests {
    use super::{host_population, HOST_POPULATION_BYTES};
    use crate::engine::Engine;

    #[test]
    fn a_host_population_holds_as_many_members_as_fit_its_budget() {
        // Parameter counts of the registry: logreg on Fashion-MNIST, a 128-wide and the
        // 256-wide 2- and 3-layer MLPs, and past the budget alone.
        for params in [7_850u64, 23_050, 78_858, 144_650, 1 << 20] {
            let k = host_population(params) as u64;
            let bytes = |members: u64| members * 16 * params;
            assert!(k >= 1, "{params} parameters");
            assert!(k == 1 || bytes(k) <= HOST_POPULATION_BYTES, "{params} parameters: {k} members overflow");
            assert!(bytes(k + 1) > HOST_POPULATION_BYTES, "{params} parameters: {} members would fit", k + 1);
        }
        assert!(host_population(7_850) >= 60, "a logistic regression keeps a whole run group");
        assert_eq!(host_population(0), host_population(1));
    }

    #[test]
    fn the_population_asked_for_wins_and_a_device_takes_whole_groups() {
        assert_eq!(Engine::Host.max_members(None, 144_650), Some(host_population(144_650)));
        assert_eq!(Engine::Host.max_members(Some(40), 144_650), Some(40));
        assert_eq!(Engine::Host.max_members(Some(1), 7_850), Some(1));
        let device = Engine::Device(candle_core::Device::Cpu);
        assert_eq!(device.max_members(None, 144_650), None);
        assert_eq!(device.max_members(Some(5), 144_650), Some(5));
    }
}
