//! RMSProp as optax 0.2.3's `rmsprop` (no momentum, not centred): `ν ← ρν + (1−ρ)g²` from 0,
//! update `−lr · g / √(ν + eps)` — eps inside the root, no bias correction.

use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-3), ("decay", 0.9), ("eps", 1e-8)];

/// RMSProp.
pub struct RmsProp {
    lr: f32,
    decay: f32,
    /// `1 − decay`, computed in f64 then rounded (optax computes it on Python floats).
    one_minus_decay: f32,
    eps: f32,
    nu: Vec<Vec<f32>>,
}

impl RmsProp {
    /// Zero second moments for `params`.
    pub fn new(lr: f64, decay: f64, eps: f64, params: &[ParamInfo]) -> Self {
        Self {
            lr: lr as f32,
            decay: decay as f32,
            one_minus_decay: (1.0 - decay) as f32,
            eps: eps as f32,
            nu: params.iter().map(|i| vec![0.0; i.numel()]).collect(),
        }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        let (lr, rho, one_minus_rho, eps) = (self.lr, self.decay, self.one_minus_decay, self.eps);
        for ((w, g), nu) in params.iter_mut().zip(grads).zip(&mut self.nu) {
            for ((w, &g), nu) in w.iter_mut().zip(g.iter()).zip(nu.iter_mut()) {
                *nu = one_minus_rho * (g * g) + rho * *nu;
                *w += -lr * (g / (*nu + eps).sqrt());
            }
        }
    }
}
