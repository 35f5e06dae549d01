//! NAdamW as learned_optimization's `NAdamW` (Metz et al. 2020, arXiv 2002.11887) with its
//! cosine schedule — the optimizer behind `OptList` (opt_list). Bias correction is folded into
//! the step size, `lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`, and epsilon is added outside the root:
//! `u = lr_t·m/(√v + ε)` (Nesterov: `m → β₁m + (1−β₁)g`) `+ lr_t·wd·p`; `p ← p − u`.

use crate::schedule::Cosine;
use beatmatch_core::{Optimizer, ParamInfo, StepContext};

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
#[derive(Clone, Copy, Debug)]
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

/// NAdamW.
pub struct NAdamW {
    p: NAdamWParams,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    iteration: u64,
}

impl NAdamW {
    /// Zero moments for `params`.
    pub fn new(p: NAdamWParams, params: &[ParamInfo]) -> Self {
        let zeros = || params.iter().map(|i| vec![0.0; i.numel()]).collect();
        Self { p, m: zeros(), v: zeros(), iteration: 0 }
    }

    /// The schedule's learning rate at the next step for horizon `num_steps`.
    pub fn learning_rate(&self, num_steps: u64) -> f32 {
        // A constant schedule (constant_fraction 1) would divide 0 by 0 in the cosine term.
        if self.p.schedule.constant_fraction >= 1.0 && self.p.schedule.warmup_fraction <= 0.0 {
            return self.p.schedule.lr as f32;
        }
        self.p.schedule.at(self.iteration, num_steps)
    }
}

impl Optimizer for NAdamW {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext) {
        let lr = self.learning_rate(ctx.num_steps);
        let (b1, b2, eps) = (self.p.b1 as f32, self.p.b2 as f32, self.p.eps as f32);
        let (awd, l2) = (self.p.adamw_wd as f32, self.p.l2_wd as f32);
        let t = self.iteration as f32 + 1.0;
        let lr_t = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
        let nesterov = self.p.nesterov;
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            for (((w, &g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = g - *w * l2;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * (g * g);
                let num = if nesterov { b1 * *m + (1.0 - b1) * g } else { *m };
                let step = lr_t * num / (v.sqrt() + eps) + lr_t * awd * *w;
                *w += -step;
            }
        }
        self.iteration += 1;
    }
}
