//! The inner problems an estimator unrolls.
//!
//! [`InnerTasks`] is the seam: a set of tasks, each started as a small group of member runs
//! that share the task, initialisation and mini-batches and differ only in the theta their
//! optimizer is bound to (the ± members of an antithetic pair). [`RegistryTasks`] implements it
//! over registry problems trained as [`Population`]s on the dense engine; the tests implement it
//! over a quadratic whose meta-gradient is known.
//!
//! **Loss normalisation**, so tasks of different scales can be mixed in one meta-loss: a
//! classifier's mini-batch loss is clipped to [0, 1.5 · ln C] (learned_optimization's rule for
//! its image MLPs) and divided by ln C, so every classifier's meta-loss lies in [0, 1.5] and
//! starts near 1; an autoencoder's mean squared error is divided by its first mini-batch loss and
//! clipped to [0, 1.5]. A non-finite loss, and every step after a member diverged, count as the
//! maximum, 1.5: a diverging theta is scored as the worst, never dropped. Language models do not
//! train on the dense engine and are refused here (see the README).

use anyhow::{bail, Context, Result};
use beatmatch_core::{ParamInfo, RunStatus};
use beatmatch_learned::theta::Theta;
use beatmatch_learned::Architecture;
use beatmatch_tasks::datasets::Dataset;
use beatmatch_tasks::models::Normalizer;
use beatmatch_tasks::population::{MemberPlan, Members, OptimizerGroup, Population};
use beatmatch_tasks::task::Task;
use rand::Rng;
use std::sync::Arc;

/// The normalised loss of a member that diverged or whose loss is not finite.
pub const MAX_LOSS: f32 = 1.5;

/// A set of inner tasks that runs can be started on.
pub trait InnerTasks: Sync {
    /// A group of member runs in progress.
    type Run<'a>: Send
    where
        Self: 'a;
    /// Number of tasks.
    fn len(&self) -> usize;
    /// Whether there are no tasks.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Readable name of task `task`.
    fn name(&self, task: usize) -> String;
    /// Meta-parameters (length of a flat theta).
    fn theta_len(&self) -> usize;
    /// Fresh runs of task `task` from `seed`, one member per theta, each an episode of `steps`
    /// steps.
    fn start<'a>(&'a self, task: usize, seed: u64, steps: u64, thetas: &[Vec<f32>]) -> Result<Self::Run<'a>>;
    /// Bind new thetas to the members, keeping their optimizer state (PES between truncations).
    fn rebind(&self, run: &mut Self::Run<'_>, thetas: &[Vec<f32>]) -> Result<()>;
    /// Take up to `n` more steps (fewer when the episode ends); each member's normalised
    /// pre-update mini-batch loss at every step the episode took, [`MAX_LOSS`] for steps after
    /// it diverged.
    fn advance(&self, run: &mut Self::Run<'_>, n: u64) -> Result<Vec<Vec<f32>>>;
    /// Whether the episode is over.
    fn is_done(&self, run: &Self::Run<'_>) -> bool;
    /// Each member's normalised train loss at its current parameters over `batches` fresh
    /// mini-batches drawn from `seed` (the same batches for every member).
    fn recompute(&self, run: &mut Self::Run<'_>, batches: usize, seed: u64) -> Result<Vec<f32>>;
    /// Each member's normalised final train loss as the suite measures it (the problem's fixed
    /// measurement batches), [`MAX_LOSS`] if it diverged; call when the episode is over.
    fn final_loss(&self, run: &Self::Run<'_>) -> Vec<f32>;
}

/// Registry tasks trained as populations on the dense engine, the optimizer of every member
/// the architecture bound to that member's theta.
pub struct RegistryTasks {
    arch: Architecture,
    /// The recipe's hyperparameters, every member's.
    hyper: beatmatch_learned::Hyperparameters,
    template: Theta,
    tasks: Vec<(Task, Arc<Dataset>)>,
}

/// How a task's losses are normalised.
#[derive(Clone, Copy, Debug)]
enum Scale {
    /// Divide by ln C.
    Classes(f32),
    /// Divide by the first mini-batch loss (set at the first step).
    Initial(Option<f32>),
}

impl Scale {
    fn apply(self, loss: f32) -> f32 {
        let v = match self {
            Scale::Classes(ln_c) => loss.clamp(0.0, MAX_LOSS * ln_c) / ln_c,
            Scale::Initial(Some(l0)) if l0 > 0.0 => (loss / l0).clamp(0.0, MAX_LOSS),
            Scale::Initial(_) => 1.0,
        };
        if v.is_finite() {
            v
        } else {
            MAX_LOSS
        }
    }
}

/// Runs of one registry task.
pub struct RegistryRun<'a> {
    pop: Population<'a>,
    params: Vec<ParamInfo>,
    steps: u64,
    batch: usize,
    scale: Scale,
}

impl RegistryTasks {
    /// Tasks `tasks` (with their loaded data) for architecture `arch`, whose thetas have the
    /// names and shapes of `template`.
    pub fn new(arch: Architecture, hyper: beatmatch_learned::Hyperparameters, template: Theta, tasks: Vec<(Task, Arc<Dataset>)>) -> Result<Self> {
        for (t, _) in &tasks {
            if !Population::<dyn beatmatch_core::Optimizer>::supports(&t.problem) {
                bail!("{}: meta-training trains only the families the native engine has", t.id());
            }
        }
        Ok(Self { arch, hyper, template, tasks })
    }

    /// The tasks.
    pub fn tasks(&self) -> &[(Task, Arc<Dataset>)] {
        &self.tasks
    }

    fn optimizer(&self, theta: &[f32], params: &[ParamInfo]) -> Result<Box<dyn beatmatch_core::Optimizer>> {
        let t = self.template.with_flat(theta)?;
        Ok(self.arch.host(&t, &self.hyper, 1, 1, params)?)
    }
}

impl InnerTasks for RegistryTasks {
    type Run<'a> = RegistryRun<'a>;

    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn name(&self, task: usize) -> String {
        self.tasks[task].0.problem.id()
    }

    fn theta_len(&self) -> usize {
        self.template.count()
    }

    fn start<'a>(&'a self, task: usize, seed: u64, steps: u64, thetas: &[Vec<f32>]) -> Result<RegistryRun<'a>> {
        let (t, data) = &self.tasks[task];
        let params = t.problem.build_model().params().to_vec();
        let plan = vec![MemberPlan { steps, horizon: steps }; thetas.len()];
        let groups = thetas
            .iter()
            .enumerate()
            .map(|(k, th)| Ok(OptimizerGroup { optimizer: self.optimizer(th, &params)?, members: k..k + 1 }))
            .collect::<Result<Vec<_>>>()?;
        let pop = Population::new(&t.problem, data, seed, &plan, groups).with_context(|| t.id())?;
        let scale = match t.problem.model.normalizer() {
            Normalizer::InitialLoss => Scale::Initial(None),
            Normalizer::LogClasses => Scale::Classes((t.problem.dataset.signature().1.max(2) as f32).ln()),
        };
        Ok(RegistryRun { pop, params, steps, batch: t.problem.batch_size, scale })
    }

    fn rebind(&self, run: &mut RegistryRun<'_>, thetas: &[Vec<f32>]) -> Result<()> {
        let params = run.params.clone();
        for (g, th) in run.pop.groups_mut().iter_mut().zip(thetas) {
            let mut fresh = self.optimizer(th, &params)?;
            fresh.restore(&g.optimizer.snapshot())?;
            g.optimizer = fresh;
        }
        Ok(())
    }

    fn advance(&self, run: &mut RegistryRun<'_>, n: u64) -> Result<Vec<Vec<f32>>> {
        let expected = n.min(run.steps - run.pop.step().min(run.steps)) as usize;
        run.pop.advance(n)?;
        if let Scale::Initial(None) = run.scale {
            run.scale = Scale::Initial(run.pop.batch_losses(0).first().copied());
        }
        Ok((0..run.pop.len())
            .map(|m| {
                let mut v: Vec<f32> = run.pop.batch_losses(m).iter().map(|&l| run.scale.apply(l)).collect();
                v.resize(expected.max(v.len()), MAX_LOSS);
                v
            })
            .collect())
    }

    fn is_done(&self, run: &RegistryRun<'_>) -> bool {
        run.pop.is_done()
    }

    fn recompute(&self, run: &mut RegistryRun<'_>, batches: usize, seed: u64) -> Result<Vec<f32>> {
        let n = run.pop.train_len() as u32;
        let size = run.batch;
        let mut r = crate::stream(seed, 0, 0, crate::Purpose::Recompute);
        let idx: Vec<u32> = (0..batches * size).map(|_| r.random_range(0..n)).collect();
        Ok(run.pop.train_losses_on(&idx).into_iter().map(|l| run.scale.apply(l)).collect())
    }

    fn final_loss(&self, run: &RegistryRun<'_>) -> Vec<f32> {
        (0..run.pop.len())
            .map(|m| {
                let out = run.pop.outcome(m);
                match (&out.status, out.curve.last().and_then(|c| c.train_loss)) {
                    (RunStatus::Diverged { .. }, _) | (_, None) => MAX_LOSS,
                    (_, Some(l)) => run.scale.apply(l),
                }
            })
            .collect()
    }
}

/// Draw an unroll length: `min` when `min == max`, otherwise log-uniform in [min, max].
pub fn unroll_length(r: &mut impl Rng, min: u64, max: u64) -> u64 {
    if min >= max {
        return min;
    }
    let (a, b) = ((min as f64).ln(), (max as f64).ln());
    let x: f64 = r.random_range(a..b);
    (x.exp().round() as u64).clamp(min, max)
}
