//! NAdamW as learned_optimization's `NAdamW` (Metz et al. 2020, arXiv 2002.11887) with its
//! cosine schedule — the optimizer behind `OptList` (opt_list). Bias correction is folded into
//! the step size, `lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`, and epsilon is added outside the root:
//! `u = lr_t·m/(√v + ε)` (Nesterov: `m → β₁m + (1−β₁)g`) `+ lr_t·wd·p`; `p ← p − u`.

use crate::adam::zeros;
use crate::schedule::Cosine;
use beatmatch_core::{ParamInfo, StepContext, UpdateRule};

/// Hyperparameters and defaults (learned_optimization's NAdamW; schedule constant unless set).
pub const HPARAMS: &[(&str, f64)] = &[
    ("lr", 1e-4),
    ("b1", 0.9),
    ("b2", 0.999),
    ("eps", 1e-8),
    ("adamw_wd", 0.0),
    ("l2_wd", 0.0),
    ("nesterov", 1.0),
    ("warmup_fraction", 0.0),
    ("constant_fraction", 1.0),
    ("min_lr_mult", 0.0),
];

/// NAdamW's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NAdamWParams {
    /// Learning-rate schedule (peak `lr` inside).
    pub schedule: Cosine,
    /// First-moment decay.
    pub b1: f64,
    /// Second-moment decay.
    pub b2: f64,
    /// Added outside the root.
    pub eps: f64,
    /// Decoupled (AdamW) weight decay, scaled by `lr_t`.
    pub adamw_wd: f64,
    /// L2 weight decay fed into the moments (the reference subtracts `p·l2` from the gradient).
    pub l2_wd: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// NAdamW over one or more members.
pub struct NAdamW {
    members: Vec<NAdamWParams>,
}

/// NAdamW's run state.
#[derive(Clone, Debug)]
pub struct NAdamWState {
    /// First moments per tensor (`members × numel`).
    pub m: Vec<Vec<f32>>,
    /// Second moments per tensor.
    pub v: Vec<Vec<f32>>,
    /// Steps taken.
    pub iteration: u64,
}

impl NAdamWParams {
    /// The schedule's learning rate at `iteration` for horizon `num_steps`.
    pub fn learning_rate(&self, iteration: u64, num_steps: u64) -> f32 {
        // A constant schedule (constant_fraction 1) would divide 0 by 0 in the cosine term.
        if self.schedule.constant_fraction >= 1.0 && self.schedule.warmup_fraction <= 0.0 {
            return self.schedule.lr as f32;
        }
        self.schedule.at(iteration, num_steps)
    }

    /// The bias-corrected step size lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ) at `iteration` (t = iteration +
    /// 1) for horizon `num_steps`, in f32 as every implementation (host, device) takes it.
    pub fn step_size(&self, iteration: u64, num_steps: u64) -> f32 {
        let t = iteration as f32 + 1.0;
        let (b1, b2) = (self.b1 as f32, self.b2 as f32);
        self.learning_rate(iteration, num_steps) * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t))
    }
}

impl NAdamW {
    /// One member per entry of `members`.
    pub fn new(members: &[NAdamWParams]) -> Self {
        Self { members: members.to_vec() }
    }
}

impl UpdateRule for NAdamW {
    type State = NAdamWState;
    fn name(&self) -> &'static str {
        "nadamw"
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> NAdamWState {
        NAdamWState { m: zeros(params, self.members()), v: zeros(params, self.members()), iteration: 0 }
    }
    fn update(&self, state: &mut NAdamWState, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut state.m).zip(&mut state.v) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            let members = w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(m.chunks_exact_mut(n)).zip(v.chunks_exact_mut(n));
            for (k, (((w, g), m), v)) in members.enumerate() {
                let p = &self.members[k];
                let (b1, b2, eps) = (p.b1 as f32, p.b2 as f32, p.eps as f32);
                let (awd, l2) = (p.adamw_wd as f32, p.l2_wd as f32);
                let lr_t = p.step_size(state.iteration, ctx.num_steps);
                let nesterov = p.nesterov;
                for (((w, &g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = g - *w * l2;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * (g * g);
                    let num = if nesterov { b1 * *m + (1.0 - b1) * g } else { *m };
                    let step = lr_t * num / (v.sqrt() + eps) + lr_t * awd * *w;
                    *w += -step;
                }
            }
        }
        state.iteration += 1;
    }
}
