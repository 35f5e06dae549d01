//! Adam (Kingma & Ba 2015) as optax's `adam`: bias-corrected moments, `eps` outside the root.

use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-3), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8)];

/// Adam's hyperparameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamParams {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub b1: f64,
    /// Second-moment decay.
    pub b2: f64,
    /// Added to the root of the second moment.
    pub eps: f64,
}

/// Adam with per-tensor first and second moments.
pub struct Adam {
    p: AdamParams,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl Adam {
    /// Zero moments for `params`.
    pub fn new(p: AdamParams, params: &[ParamInfo]) -> Self {
        let zeros = || params.iter().map(|i| vec![0.0; i.numel()]).collect();
        Self { p, m: zeros(), v: zeros(), t: 0 }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        self.t += 1;
        let (b1, b2) = (self.p.b1 as f32, self.p.b2 as f32);
        let (lr, eps) = (self.p.lr as f32, self.p.eps as f32);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            for (((w, &g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *w -= lr * ((*m / c1) / ((*v / c2).sqrt() + eps));
            }
        }
    }
}
