//! AdamW (Loshchilov & Hutter 2019) as optax's `adamw`: Adam's direction plus decoupled weight
//! decay, `w ← w − lr·(m̂/(√v̂ + eps) + wd·w)`. The host rule, the fused device step
//! (`bm_adamw`) and the kind's descriptor.

use crate::adam::{fused_moments, optax_moments, MomentHp, Moments};
use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{Consts, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "adamw";

crate::hyperparameters! {
    /// One AdamW member's hyperparameters (defaults: optax's).
    pub struct AdamWHp {
        /// Learning rate.
        lr: f64 = 1e-3, Positive;
        /// First-moment decay.
        b1: f64 = 0.9, Decay;
        /// Second-moment decay.
        b2: f64 = 0.999, Decay;
        /// Added outside the square root.
        eps: f64 = 1e-8, Epsilon;
        /// Decoupled weight decay (per step, times the learning rate).
        wd: f64 = 1e-4, Off;
    }
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
        NAME
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

/// AdamW as a fused device step (one member): Adam's direction plus decoupled weight decay.
pub struct AdamWStep {
    moments: MomentHp,
    lr: f32,
    wd: f32,
}

impl AdamWStep {
    /// AdamW with `hp`.
    pub fn new(hp: AdamWHp) -> Self {
        Self { moments: MomentHp::new(hp.b1, hp.b2, hp.eps), lr: hp.lr as f32, wd: hp.wd as f32 }
    }
}

impl FusedRule for AdamWStep {
    const KERNEL: Kernel = Kernel::Adamw;
    const NAME: &'static str = NAME;
    fn consts(&self, steps: u64, _ctx: &StepContext<'_>) -> Consts {
        let mut c = Consts::of(&fused_moments(&self.moments, self.lr, steps));
        c.0[8] = self.wd;
        c
    }
}

/// The kind.
pub struct AdamWKind;

impl Kind for AdamWKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "AdamW (Loshchilov & Hutter 2019) as optax.adamw"
    }
    fn hparams(&self) -> &'static [Hparam] {
        AdamWHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(AdamW::new(&members.iter().map(AdamWHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device(&self, member: &Values, params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(AdamWStep::new(AdamWHp::from_values(member))), params, device))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.adamw").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require_null("mask")?;
            Ok(optax_moments(&r, NAME)?.with("wd", r.num("weight_decay")?))
        })
    }
}
