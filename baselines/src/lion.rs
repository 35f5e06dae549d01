//! Lion (Chen et al. 2023) as optax's `lion`: `u = sign((1−β₁)g + β₁μ) + wd·p`, `p ← p − lr·u`,
//! then `μ ← β₂μ + (1−β₂)g`.

use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-4), ("b1", 0.9), ("b2", 0.99), ("wd", 1e-3)];

/// Lion.
pub struct Lion {
    lr: f32,
    b1: f32,
    b2: f32,
    wd: f32,
    /// `1 − β`, computed in f64 then rounded (optax computes them on Python floats).
    one_minus_b1: f32,
    one_minus_b2: f32,
    mu: Vec<Vec<f32>>,
}

impl Lion {
    /// Zero momentum for `params`.
    pub fn new(lr: f64, b1: f64, b2: f64, wd: f64, params: &[ParamInfo]) -> Self {
        Self {
            lr: lr as f32,
            b1: b1 as f32,
            b2: b2 as f32,
            wd: wd as f32,
            one_minus_b1: (1.0 - b1) as f32,
            one_minus_b2: (1.0 - b2) as f32,
            mu: params.iter().map(|i| vec![0.0; i.numel()]).collect(),
        }
    }
}

/// jnp.sign: −1, 0 or +1 (0 for ±0).
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

impl Optimizer for Lion {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        let (lr, b1, b2, wd) = (self.lr, self.b1, self.b2, self.wd);
        let (w1, w2) = (self.one_minus_b1, self.one_minus_b2);
        for ((w, g), mu) in params.iter_mut().zip(grads).zip(&mut self.mu) {
            for ((w, &g), mu) in w.iter_mut().zip(g.iter()).zip(mu.iter_mut()) {
                let u = sign(w1 * g + b1 * *mu) + wd * *w;
                *w += -lr * u;
                *mu = w2 * g + b2 * *mu;
            }
        }
    }
}
