//! SGD with (heavy-ball or Nesterov) momentum, as optax's `sgd(lr, momentum, nesterov)`:
//! `t ← g + μ t`; update `−lr·t` (heavy ball) or `−lr·(g + μ t)` (Nesterov).

use beatmatch_core::{Optimizer, ParamInfo, StepContext};

/// Hyperparameters and defaults; `nesterov` is 0 or 1.
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-2), ("momentum", 0.9), ("nesterov", 0.0)];

/// SGD's hyperparameters.
#[derive(Clone, Copy, Debug)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f64,
    /// Momentum coefficient μ (0 = plain SGD).
    pub momentum: f64,
    /// Nesterov's variant.
    pub nesterov: bool,
}

/// SGD with momentum.
pub struct Sgd {
    p: SgdParams,
    trace: Vec<Vec<f32>>,
}

impl Sgd {
    /// Zero momentum for `params`.
    pub fn new(p: SgdParams, params: &[ParamInfo]) -> Self {
        Self { p, trace: params.iter().map(|i| vec![0.0; i.numel()]).collect() }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext) {
        let (lr, mu, nesterov) = (self.p.lr as f32, self.p.momentum as f32, self.p.nesterov);
        for ((w, g), t) in params.iter_mut().zip(grads).zip(&mut self.trace) {
            for ((w, &g), t) in w.iter_mut().zip(g.iter()).zip(t.iter_mut()) {
                *t = g + mu * *t;
                let u = if nesterov { g + mu * *t } else { *t };
                *w -= lr * u;
            }
        }
    }
}
