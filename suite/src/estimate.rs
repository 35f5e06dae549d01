//! Time estimates for a plan, from measured costs: each problem's training step, train-loss
//! measurement and held-out evaluation, and each optimizer's update per parameter, timed once
//! on this machine (a few steps each) and cached in `$HOME/.cache/beatmatch/calibration.json`
//! keyed by problem (or optimizer) hash, code version and CPU model.
//!
//! Problems trained one by one (candle): a run costs steps × (step + update per parameter ×
//! parameters) + measurements × measurement + evaluations × evaluation. Problems trained as a
//! population (every family on the host path): each cost is split into a fixed part, paid once per step of
//! the population (batch assembly and the like), and a per-member part, both measured from
//! populations of 1 and 8 members; a population costs its longest member's steps × the fixed
//! part plus every member's own. The wall time of N workers is the larger of the sum over N
//! and the longest population (or run). On the device path (`cpu-device`, a GPU) every family
//! trains as device populations, each cost measured on that
//! device (a device population's from populations of 1 and 8 members with SGD's fused kernel),
//! the optimizer's update on device tensors; the cache key then names the device class too.

use crate::calibrate::ProblemCost;
use crate::factory::OptimizerFactory;
use crate::plan::Job;
use crate::target::Target;
use anyhow::{Context, Result};
use beatmatch_core::store::write_json_atomic;
use beatmatch_core::{Buffers, ParamInfo, StepContext};
use beatmatch_device::DeviceTensors;
use beatmatch_tasks::Problem;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Cached measurements.
#[derive(Default, Serialize, Deserialize)]
pub struct Calibration {
    /// Problem costs by `problem hash/code version/cpu`.
    #[serde(default)]
    pub problem_costs: BTreeMap<String, ProblemCost>,
    /// Optimizer update cost in seconds per parameter per step, by `optimizer hash+problem
    /// hash/code version/cpu`.
    #[serde(default)]
    pub optimizers: BTreeMap<String, f64>,
    #[serde(skip)]
    path: PathBuf,
    /// This machine's part of every key (code version and CPU model), read once.
    #[serde(skip)]
    host: String,
    #[serde(skip)]
    dirty: bool,
}

/// A plan's estimate.
#[derive(Debug, Default)]
pub struct Estimate {
    /// Sum over the runs still to do (CPU seconds, one core each).
    pub total_s: f64,
    /// Longest single population or run (seconds).
    pub longest_s: f64,
    /// Problems measured now / taken from the cache.
    pub measured: usize,
    /// Problems whose costs came from the cache.
    pub from_cache: usize,
    /// Single-core seconds by (model family, dataset), largest first.
    pub by_group: Vec<(String, f64)>,
    /// Each problem's measured costs, by problem id.
    pub problems: BTreeMap<String, ProblemCost>,
}

impl Estimate {
    /// Wall-clock seconds on `workers` single-threaded workers.
    pub fn wall_s(&self, workers: usize) -> f64 {
        (self.total_s / workers.max(1) as f64).max(self.longest_s)
    }
}

fn host() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{}/{cpu}", beatmatch_core::code_version())
}

impl Calibration {
    /// The cache at `$HOME/.cache/beatmatch/calibration.json` (empty if absent or unreadable).
    pub fn load() -> Self {
        let path = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache/beatmatch/calibration.json");
        let mut c: Calibration = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        c.path = path;
        c.host = host();
        c
    }

    /// Write the cache back if anything was measured.
    pub fn save(&self) -> Result<()> {
        if self.dirty {
            std::fs::create_dir_all(self.path.parent().expect("a file path")).with_context(|| format!("creating {}", self.path.display()))?;
            write_json_atomic(&self.path, self)?;
        }
        Ok(())
    }

    /// The cache key of `hash` on `target`: the CPU's keys name no device (they predate it).
    fn key(&self, hash: &str, target: &Target) -> String {
        if target.key == "cpu" {
            format!("{hash}/{}", self.host)
        } else {
            format!("{hash}/{}/{}", self.host, target.key)
        }
    }

    fn problem(&mut self, problem: &Problem, target: &Target, fresh: &mut bool) -> Result<ProblemCost> {
        let key = self.key(&problem.hash(), target);
        if let Some(c) = self.problem_costs.get(&key) {
            return Ok(*c);
        }
        let data = problem.dataset.load()?;
        let c = target.engine.calibrate(problem, &data).with_context(|| format!("calibrating {}", problem.id()))?;
        self.problem_costs.insert(key, c);
        self.dirty = true;
        *fresh = true;
        Ok(c)
    }

    /// The update cost of the job's optimizer on the job's problem (seconds per parameter per
    /// step), timed on the problem's own tensors: Muon's and SOAP's costs grow faster than the
    /// parameter count (Newton–Schulz is O(m·n·min(m, n)) per matrix), so a cost taken on
    /// another shape would misestimate them. The first update is not timed (SOAP's builds its
    /// preconditioner); the ten timed ones include one eigenbasis refresh at SOAP's default
    /// frequency.
    fn optimizer(&mut self, job: &Job, optimizers: &OptimizerFactory, target: &Target) -> Result<f64> {
        let key = self.key(&format!("{}+{}", job.key.optimizer_hash, job.key.problem_hash), target);
        if let Some(&c) = self.optimizers.get(&key) {
            return Ok(c);
        }
        let infos = job.problem.build_model().params().to_vec();
        let mut opt = optimizers.build(&job.key.optimizer, &infos)?;
        let mut values: Vec<Vec<f32>> = infos.iter().map(|p| (0..p.numel()).map(|i| ((i % 13) as f32 - 6.0) * 1e-2).collect()).collect();
        let grads: Vec<Vec<f32>> = infos.iter().map(|p| (0..p.numel()).map(|i| ((i % 7) as f32 - 3.0) * 1e-3).collect()).collect();
        let n: usize = infos.iter().map(ParamInfo::numel).sum();
        let steps = 11;
        let mut on_device = if opt.wants_device_tensors() {
            let dev = target.device();
            let params = values.iter().zip(&infos).map(|(v, i)| Var::from_slice(v, i.shape.clone(), dev)).collect::<candle_core::Result<Vec<_>>>()?;
            let grads = grads.iter().zip(&infos).map(|(g, i)| Tensor::from_slice(g, i.shape.clone(), dev)).collect::<candle_core::Result<Vec<_>>>()?;
            Some(DeviceTensors { params, grads })
        } else {
            None
        };
        let mut start = Instant::now();
        for step in 0..steps {
            if step == 1 {
                target.device().synchronize()?;
                start = Instant::now();
            }
            let ctx = StepContext { step, num_steps: 1000, losses: &[1.0] };
            match on_device.as_mut() {
                Some(t) => opt.update(Buffers::Device(t), &ctx)?,
                None => {
                    let mut params: Vec<&mut [f32]> = values.iter_mut().map(|v| v.as_mut_slice()).collect();
                    let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
                    opt.step(&mut params, &g, &ctx);
                }
            }
        }
        target.device().synchronize()?;
        let per_param = start.elapsed().as_secs_f64() / ((steps - 1) as f64 * n.max(1) as f64);
        self.optimizers.insert(key, per_param);
        self.dirty = true;
        Ok(per_param)
    }

    /// Estimate the time of `jobs` (those still to run) on `target`, measuring what is not
    /// cached; `on_problem(done, total)` reports calibration progress.
    pub fn estimate(
        &mut self,
        jobs: &[&Job],
        target: &Target,
        optimizers: &OptimizerFactory,
        population: Option<usize>,
        on_problem: &mut dyn FnMut(usize, usize),
    ) -> Result<Estimate> {
        let mut problems: BTreeMap<String, &Problem> = BTreeMap::new();
        for j in jobs {
            problems.entry(j.key.problem_hash.clone()).or_insert(&j.problem);
        }
        let mut est = Estimate::default();
        let mut costs = BTreeMap::new();
        let total = problems.len();
        for (i, (hash, p)) in problems.into_iter().enumerate() {
            on_problem(i, total);
            let mut fresh = false;
            let c = self.problem(p, target, &mut fresh)?;
            est.problems.insert(p.id(), c);
            costs.insert(hash, c);
            if fresh {
                est.measured += 1;
            } else {
                est.from_cache += 1;
            }
        }
        on_problem(total, total);
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        // The runner's run groups: the jobs of one (problem, seed), in populations of at most
        // the engine's `max_members` where the problem batches, else one job each.
        let pending: Vec<&Job> = jobs.to_vec();
        for g in crate::executor::groups(&pending, &|params| target.engine.max_members(population, params)) {
            let c = costs[&g.problem.hash()];
            let parts: Vec<Vec<&Job>> = if c.population { vec![g.jobs.clone()] } else { g.jobs.iter().map(|&j| vec![j]).collect() };
            for part in parts {
                let mut secs = 0.0;
                let (mut steps_max, mut measure_union, mut eval_union) = (0u64, std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
                for j in &part {
                    let update = self.optimizer(j, optimizers, target)?;
                    let steps = j.key.steps;
                    let measures = j.problem.measure_steps(steps);
                    let evals: Vec<u64> = j.problem.measurement.eval_at.iter().copied().filter(|&b| b <= steps).collect();
                    secs += steps as f64 * (c.per_member.step_s + update * j.params as f64)
                        + measures.len() as f64 * c.per_member.measure_s
                        + evals.len() as f64 * c.per_member.eval_s;
                    steps_max = steps_max.max(steps);
                    measure_union.extend(measures);
                    eval_union.extend(evals);
                }
                secs += steps_max as f64 * c.fixed.step_s + measure_union.len() as f64 * c.fixed.measure_s + eval_union.len() as f64 * c.fixed.eval_s;
                est.total_s += secs;
                est.longest_s = est.longest_s.max(secs);
                let model = g.problem.model.id();
                let family = model.split('-').next().unwrap_or(&model);
                *groups.entry(format!("{family} on {}", g.problem.dataset)).or_default() += secs;
            }
        }
        est.by_group = groups.into_iter().collect();
        est.by_group.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(est)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_time_is_the_larger_of_shared_work_and_the_longest_run() {
        let e = Estimate { total_s: 100.0, longest_s: 30.0, ..Default::default() };
        assert_eq!(e.wall_s(2), 50.0);
        assert_eq!(e.wall_s(8), 30.0);
        assert_eq!(e.wall_s(0), 100.0);
    }
}
