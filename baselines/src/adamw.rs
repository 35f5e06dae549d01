//! AdamW (Loshchilov & Hutter 2019) as optax's `adamw`: Adam's update plus decoupled weight
//! decay `wd · p`, both scaled by the learning rate.

use crate::adam::Moments;
use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-3), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8), ("wd", 1e-4)];

/// AdamW.
pub struct AdamW {
    moments: Moments,
    lr: f32,
    wd: f32,
}

impl AdamW {
    /// Zero moments for `params`.
    pub fn new(lr: f64, b1: f64, b2: f64, eps: f64, wd: f64, params: &[ParamInfo]) -> Self {
        Self { moments: Moments::new(b1, b2, eps, params), lr: lr as f32, wd: wd as f32 }
    }
}

impl Optimizer for AdamW {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        let (lr, wd) = (self.lr, self.wd);
        self.moments.step(params, grads, |w, u| *w += -lr * (u + wd * *w));
    }
}
