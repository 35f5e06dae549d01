//! AdamW (Loshchilov & Hutter 2019) as optax's `adamw`: Adam's direction plus decoupled weight
//! decay, `w ← w − lr·(m̂/(√v̂ + eps) + wd·w)`.

use crate::adam::{MomentHp, Moments};
use beatmatch_core::{ParamInfo, StepContext, UpdateRule};

/// Hyperparameters and defaults (optax's).
pub const HPARAMS: &[(&str, f64)] = &[("lr", 1e-3), ("b1", 0.9), ("b2", 0.999), ("eps", 1e-8), ("wd", 1e-4)];

/// One AdamW member's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWHp {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub b1: f64,
    /// Second-moment decay.
    pub b2: f64,
    /// Added outside the root.
    pub eps: f64,
    /// Decoupled weight decay.
    pub wd: f64,
}

/// AdamW over one or more members.
pub struct AdamW {
    moments: Vec<MomentHp>,
    lr_wd: Vec<(f32, f32)>,
}

impl AdamW {
    /// One member per entry of `members`.
    pub fn new(members: &[AdamWHp]) -> Self {
        Self {
            moments: members.iter().map(|h| MomentHp::new(h.b1, h.b2, h.eps)).collect(),
            lr_wd: members.iter().map(|h| (h.lr as f32, h.wd as f32)).collect(),
        }
    }
}

impl UpdateRule for AdamW {
    type State = Moments;
    fn name(&self) -> &'static str {
        "adamw"
    }
    fn members(&self) -> usize {
        self.lr_wd.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Moments {
        Moments::zeros(params, self.members())
    }
    fn update(&self, state: &mut Moments, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        state.step(&self.moments, params, grads, |k| {
            let (lr, wd) = self.lr_wd[k];
            move |w: &mut f32, u: f32| *w += -lr * (u + wd * *w)
        });
    }
}
