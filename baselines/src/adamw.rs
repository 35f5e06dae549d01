//! AdamW (Loshchilov & Hutter 2019) as optax's `adamw`: Adam's direction plus decoupled weight
//! decay, `w ← w − lr_t·(m̂/(√v̂ + eps) + wd·w)`. The learning rate is constant (optax's default)
//! or, what papers train with, warmed up linearly from 0 and decayed by a half cosine to 0 at
//! the run's budget (`warmup_fraction`, `cosine`: optax's `warmup_cosine_decay_schedule` as the
//! learning rate of `adamw`). The host rule, the fused device step (`bm_adamw`) and the kind's
//! descriptor.

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
        /// Fraction of the budget over which the learning rate warms up linearly from 0.
        warmup_fraction: f64 = 0.0, Fraction;
        /// Decay the learning rate by a half cosine to 0 at the budget, after the warm-up (0 or 1).
        cosine: bool = 0.0, Flag;
    }
}

impl AdamWHp {
    /// The learning rate at 0-based step `count` of a `budget`-step run.
    /// (Unscheduled, `warmup_cosine` gives `lr` itself.)
    fn lr_at(&self, budget: u64, count: u64) -> f32 {
        crate::schedule::warmup_cosine(self.lr, self.warmup_fraction, self.cosine, budget, count)
    }

    /// Whether the learning rate depends on the budget.
    fn scheduled(&self) -> bool {
        self.warmup_fraction > 0.0 || self.cosine
    }
}

/// AdamW over one or more members.
pub struct AdamW {
    moments: Vec<MomentHp>,
    members: Vec<AdamWHp>,
}

impl AdamW {
    /// One member per entry of `members`.
    pub fn new(members: &[AdamWHp]) -> Self {
        Self { moments: members.iter().map(|h| MomentHp::new(h.b1, h.b2, h.eps)).collect(), members: members.to_vec() }
    }
}

impl UpdateRule for AdamW {
    type State = Moments;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Moments {
        Moments::zeros(params, self.members())
    }
    fn update(&self, state: &mut Moments, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        let count = state.count as u64;
        let lr_wd: Vec<(f32, f32)> = self.members.iter().map(|h| (h.lr_at(ctx.num_steps, count), h.wd as f32)).collect();
        state.step(&self.moments, params, grads, |k| {
            let (lr, wd) = lr_wd[k];
            move |w: &mut f32, u: f32| *w += -lr * (u + wd * *w)
        });
    }
}

/// AdamW as a fused device step (one member): Adam's direction plus decoupled weight decay.
pub struct AdamWStep {
    moments: MomentHp,
    hp: AdamWHp,
}

impl AdamWStep {
    /// AdamW with `hp`.
    pub fn new(hp: AdamWHp) -> Self {
        Self { moments: MomentHp::new(hp.b1, hp.b2, hp.eps), hp }
    }
}

impl FusedRule for AdamWStep {
    const KERNEL: Kernel = Kernel::Adamw;
    const NAME: &'static str = NAME;
    fn consts(&self, steps: u64, ctx: &StepContext<'_>) -> Consts {
        let mut c = Consts::of(&fused_moments(&self.moments, self.hp.lr_at(ctx.num_steps, steps), steps));
        c.0[8] = self.hp.wd as f32;
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
        "AdamW (Loshchilov & Hutter 2019) as optax.adamw, optionally with warm-up and a cosine decay to 0 (warmup_cosine_decay_schedule)"
    }
    fn hparams(&self) -> &'static [Hparam] {
        AdamWHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(AdamW::new(&members.iter().map(AdamWHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device_members(&self, members: &[Values], params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(members.iter().map(|member| AdamWStep::new(AdamWHp::from_values(member))).collect()), params, device))
    }
    fn is_horizon_free(&self, member: &Values) -> bool {
        !AdamWHp::from_values(member).scheduled()
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.adamw").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require_null("mask")?;
            let schedule = &r.args["learning_rate"];
            if !schedule.is_object() {
                return Ok(optax_moments(&r, NAME)?.with("wd", r.num("weight_decay")?));
            }
            // optax.warmup_cosine_decay_schedule(0, peak, warmup_steps, decay_steps = the budget, 0).
            let s = ReferenceArgs { name, args: schedule };
            s.require("schedule", |v| v == "warmup_cosine_decay_schedule")?;
            s.require("init_value", |v| v.as_f64() == Some(0.0))?;
            s.require("end_value", |v| v.as_f64() == Some(0.0))?;
            s.require("decay_steps", |v| v.as_u64() == meta["num_steps"].as_u64())?;
            r.require("eps_root", |v| v.as_f64() == Some(0.0))?;
            r.require_null("mu_dtype")?;
            r.require_false("nesterov")?;
            Ok(OptimizerSpec::new(NAME)
                .with("lr", s.num("peak_value")?)
                .with("b1", r.num("b1")?)
                .with("b2", r.num("b2")?)
                .with("eps", r.num("eps")?)
                .with("wd", r.num("weight_decay")?)
                .with("warmup_fraction", s.num("warmup_steps")? / s.num("decay_steps")?)
                .with("cosine", 1.0))
        })
    }
}
