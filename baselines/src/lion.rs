//! Lion (Chen et al. 2023) as optax's `lion`: `u = sign((1−β₁)g + β₁μ) + wd·p`, `p ← p − lr·u`,
//! then `μ ← β₂μ + (1−β₂)g`.

use crate::adam::zeros;
use beatmatch_core::{ParamInfo, StepContext, UpdateRule};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-4), ("b1", 0.9), ("b2", 0.99), ("wd", 1e-3)];

/// One Lion member's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionHp {
    /// Learning rate.
    pub lr: f64,
    /// Interpolation of the update's sign.
    pub b1: f64,
    /// Momentum decay.
    pub b2: f64,
    /// Decoupled weight decay.
    pub wd: f64,
}

#[derive(Clone, Copy, Debug)]
struct Consts {
    lr: f32,
    b1: f32,
    b2: f32,
    wd: f32,
    /// `1 − β`, computed in f64 then rounded (optax computes them on Python floats).
    one_minus_b1: f32,
    one_minus_b2: f32,
}

/// Lion over one or more members.
pub struct Lion {
    members: Vec<Consts>,
}

impl Lion {
    /// One member per entry of `members`.
    pub fn new(members: &[LionHp]) -> Self {
        Self {
            members: members
                .iter()
                .map(|h| Consts {
                    lr: h.lr as f32,
                    b1: h.b1 as f32,
                    b2: h.b2 as f32,
                    wd: h.wd as f32,
                    one_minus_b1: (1.0 - h.b1) as f32,
                    one_minus_b2: (1.0 - h.b2) as f32,
                })
                .collect(),
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

impl UpdateRule for Lion {
    /// Momentum μ per tensor (`members × numel`).
    type State = Vec<Vec<f32>>;
    fn name(&self) -> &'static str {
        "lion"
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        zeros(params, self.members())
    }
    fn update(&self, mu: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        for ((w, g), mu) in params.iter_mut().zip(grads).zip(mu.iter_mut()) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            for (k, ((w, g), mu)) in w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(mu.chunks_exact_mut(n)).enumerate() {
                let Consts { lr, b1, b2, wd, one_minus_b1: w1, one_minus_b2: w2 } = self.members[k];
                for ((w, &g), mu) in w.iter_mut().zip(g.iter()).zip(mu.iter_mut()) {
                    let u = sign(w1 * g + b1 * *mu) + wd * *w;
                    *w += -lr * u;
                    *mu = w2 * g + b2 * *mu;
                }
            }
        }
    }
}
