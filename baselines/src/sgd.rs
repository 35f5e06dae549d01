//! SGD with (heavy-ball or Nesterov) momentum, as optax's `sgd(lr, momentum, nesterov)`:
//! `t ← g + μ t`; update `−lr·t` (heavy ball) or `−lr·(g + μ t)` (Nesterov).

use crate::adam::zeros;
use beatmatch_core::{ParamInfo, StepContext, UpdateRule};

/// Hyperparameters and defaults; `nesterov` is 0 or 1.
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-2), ("momentum", 0.9), ("nesterov", 0.0)];

/// One SGD member's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    /// Learning rate.
    pub lr: f64,
    /// Momentum coefficient μ (0 = plain SGD).
    pub momentum: f64,
    /// Nesterov's variant.
    pub nesterov: bool,
}

/// SGD with momentum over one or more members.
pub struct Sgd {
    members: Vec<SgdParams>,
}

/// The momentum traces per tensor (`members × numel`).
pub type Trace = Vec<Vec<f32>>;

impl Sgd {
    /// One member per entry of `members`.
    pub fn new(members: &[SgdParams]) -> Self {
        Self { members: members.to_vec() }
    }
}

impl UpdateRule for Sgd {
    type State = Trace;
    fn name(&self) -> &'static str {
        "sgdm"
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Trace {
        zeros(params, self.members())
    }
    fn update(&self, trace: &mut Trace, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        for ((w, g), t) in params.iter_mut().zip(grads).zip(trace.iter_mut()) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            for (k, ((w, g), t)) in w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(t.chunks_exact_mut(n)).enumerate() {
                let p = self.members[k];
                let (lr, mu, nesterov) = (p.lr as f32, p.momentum as f32, p.nesterov);
                for ((w, &g), t) in w.iter_mut().zip(g.iter()).zip(t.iter_mut()) {
                    *t = g + mu * *t;
                    let u = if nesterov { g + mu * *t } else { *t };
                    *w -= lr * u;
                }
            }
        }
    }
}
