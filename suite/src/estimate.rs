//! Time estimates for a plan, from measured costs: each problem's training step, train-loss
//! measurement and held-out evaluation, and each optimizer's update per parameter, timed once
//! on this machine (a few steps each) and cached in `$HOME/.cache/beatmatch/calibration.json`
//! keyed by problem (or optimizer) hash, code version and CPU model.
//!
//! A run's estimate: steps × (step + update per parameter × parameters) + measurements ×
//! measurement + evaluations × evaluation. The wall time of N workers is the larger of the sum
//! over N and the longest run. Only the CPU is estimated: this build has no CUDA path.

use crate::factory::OptimizerFactory;
use crate::plan::Job;
use anyhow::{Context, Result};
use beatmatch_core::store::write_json_atomic;
use beatmatch_core::{ParamInfo, StepContext};
use beatmatch_tasks::data::{rng, BatchStream, View, STREAM_INIT};
use beatmatch_tasks::datasets::Dataset;
use beatmatch_tasks::inner::loss_and_grads;
use beatmatch_tasks::Problem;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
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
}

/// Time `steps` training steps (after one warm-up step), one train-loss measurement and one
/// held-out evaluation of `problem`.
pub fn calibrate(problem: &Problem, data: &Dataset, device: &Device, steps: usize) -> Result<StepCost> {
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
        loss_and_grads(model.as_ref(), &params, &xb, &yb)?;
        if i > 0 {
            timed += start.elapsed().as_secs_f64();
        }
    }
    let measure_idx = train_view.measurement_items(problem);
    let start = Instant::now();
    train_view.evaluate(model.as_ref(), &params, Some(&measure_idx), problem.batch_size, device)?;
    let measure_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    test_view.evaluate(model.as_ref(), &params, None, test_view.chunk(), device)?;
    Ok(StepCost { step_s: timed / steps.max(1) as f64, measure_s, eval_s: start.elapsed().as_secs_f64() })
}

/// Cached measurements.
#[derive(Default, Serialize, Deserialize)]
pub struct Calibration {
    /// Problem costs by `problem hash/code version/cpu`.
    pub problems: BTreeMap<String, StepCost>,
    /// Optimizer update cost in seconds per parameter per step, by `optimizer hash/code version/cpu`.
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
    /// Longest single run (seconds).
    pub longest_s: f64,
    /// Problems measured now / taken from the cache.
    pub measured: usize,
    /// Problems whose costs came from the cache.
    pub from_cache: usize,
    /// Single-core seconds by (model family, dataset), largest first.
    pub by_group: Vec<(String, f64)>,
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

    fn problem(&mut self, problem: &Problem, device: &Device, fresh: &mut bool) -> Result<StepCost> {
        let key = format!("{}/{}", problem.hash(), self.host);
        if let Some(c) = self.problems.get(&key) {
            return Ok(*c);
        }
        let data = problem.dataset.load()?;
        let c = calibrate(problem, &data, device, 5).with_context(|| format!("calibrating {}", problem.id()))?;
        self.problems.insert(key, c);
        self.dirty = true;
        *fresh = true;
        Ok(c)
    }

    fn optimizer(&mut self, job: &Job, optimizers: &OptimizerFactory) -> Result<f64> {
        let key = format!("{}/{}", job.key.optimizer_hash, self.host);
        if let Some(&c) = self.optimizers.get(&key) {
            return Ok(c);
        }
        // A mid-sized layer: a [256, 256] matrix and its bias.
        let infos = vec![ParamInfo { name: "b".into(), shape: vec![256] }, ParamInfo { name: "w".into(), shape: vec![256, 256] }];
        let mut opt = optimizers.build(&job.key.optimizer, &infos)?;
        let mut values: Vec<Vec<f32>> = infos.iter().map(|p| vec![0.01; p.numel()]).collect();
        let grads: Vec<Vec<f32>> = infos.iter().map(|p| (0..p.numel()).map(|i| ((i % 7) as f32 - 3.0) * 1e-3).collect()).collect();
        let n: usize = infos.iter().map(ParamInfo::numel).sum();
        let steps = 20;
        let start = Instant::now();
        for step in 0..steps {
            let mut params: Vec<&mut [f32]> = values.iter_mut().map(|v| v.as_mut_slice()).collect();
            let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
            opt.step(&mut params, &g, &StepContext { step, num_steps: 1000, losses: &[1.0] });
        }
        let per_param = start.elapsed().as_secs_f64() / (steps as f64 * n as f64);
        self.optimizers.insert(key, per_param);
        self.dirty = true;
        Ok(per_param)
    }

    /// Estimate the CPU time of `jobs` (those still to run), measuring what is not cached;
    /// `on_problem(done, total)` reports calibration progress.
    pub fn estimate(&mut self, jobs: &[&Job], device: &Device, optimizers: &OptimizerFactory, on_problem: &mut dyn FnMut(usize, usize)) -> Result<Estimate> {
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
            costs.insert(hash, self.problem(p, device, &mut fresh)?);
            if fresh {
                est.measured += 1;
            } else {
                est.from_cache += 1;
            }
        }
        on_problem(total, total);
        let mut groups: BTreeMap<String, f64> = BTreeMap::new();
        for j in jobs {
            let c = costs[&j.key.problem_hash];
            let update = self.optimizer(j, optimizers)?;
            let steps = j.key.steps;
            let measurements = j.problem.measure_steps(steps).len() as f64;
            let evals = j.problem.measurement.eval_at.iter().filter(|&&b| b <= steps).count() as f64;
            let s = steps as f64 * (c.step_s + update * j.params as f64) + measurements * c.measure_s + evals * c.eval_s;
            est.total_s += s;
            est.longest_s = est.longest_s.max(s);
            let model = j.problem.model.id();
            let family = model.split('-').next().unwrap_or(&model);
            *groups.entry(format!("{family} on {}", j.problem.dataset)).or_default() += s;
        }
        est.by_group = groups.into_iter().collect();
        est.by_group.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(est)
    }
}

/// `1 h 05 min`, `12 min 30 s`, `45 s`.
pub fn human(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        3600..=172_799 => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
        _ => format!("{:.1} days", seconds / 86400.0),
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

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(45.2), "45 s");
        assert_eq!(human(750.0), "12 min 30 s");
        assert_eq!(human(3900.0), "1 h 05 min");
        assert_eq!(human(3.0 * 86400.0), "3.0 days");
    }
}
