//! RMSProp as optax 0.2.3's `rmsprop` (no momentum, not centred): `ν ← ρν + (1−ρ)g²` from 0,
//! update `−lr · g / √(ν + eps)` — eps inside the root, no bias correction.

use crate::adam::zeros;
use beatmatch_core::{ParamInfo, StepContext, UpdateRule};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-3), ("decay", 0.9), ("eps", 1e-8)];

/// One member's constants.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Hp {
    lr: f32,
    decay: f32,
    /// `1 − decay`, computed in f64 then rounded (optax computes it on Python floats).
    one_minus_decay: f32,
    eps: f32,
}

/// RMSProp over one or more members.
pub struct RmsProp {
    members: Vec<Hp>,
}

impl RmsProp {
    /// One member per `(lr, decay, eps)`.
    pub fn new(members: &[(f64, f64, f64)]) -> Self {
        Self {
            members: members
                .iter()
                .map(|&(lr, decay, eps)| Hp { lr: lr as f32, decay: decay as f32, one_minus_decay: (1.0 - decay) as f32, eps: eps as f32 })
                .collect(),
        }
    }
}

impl UpdateRule for RmsProp {
    /// Second moments ν per tensor (`members × numel`).
    type State = Vec<Vec<f32>>;
    fn name(&self) -> &'static str {
        "rmsprop"
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        zeros(params, self.members())
    }
    fn update(&self, nu: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        for ((w, g), nu) in params.iter_mut().zip(grads).zip(nu.iter_mut()) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            for (k, ((w, g), nu)) in w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(nu.chunks_exact_mut(n)).enumerate() {
                let Hp { lr, decay: rho, one_minus_decay: one_minus_rho, eps } = self.members[k];
                for ((w, &g), nu) in w.iter_mut().zip(g.iter()).zip(nu.iter_mut()) {
                    *nu = one_minus_rho * (g * g) + rho * *nu;
                    *w += -lr * (g / (*nu + eps).sqrt());
                }
            }
        }
    }
}
