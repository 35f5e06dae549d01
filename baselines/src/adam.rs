//! Adam (Kingma & Ba 2015) as optax's `adam`: bias-corrected moments, `eps` outside the root.
//! The host rule, the fused device step (`kernels/rules.h`'s `bm_adam`, rounding as the host
//! rule does) and the kind's descriptor; the moments are shared with AdamW.

use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::simd::{self, simd_dispatch};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{Consts, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "adam";

crate::hyperparameters! {
    /// One Adam member's hyperparameters (defaults: optax's).
    pub struct AdamHp {
        /// Learning rate.
        lr: f64 = 1e-3, Positive;
        /// First-moment decay.
        b1: f64 = 0.9, Decay;
        /// Second-moment decay.
        b2: f64 = 0.999, Decay;
        /// Added outside the square root.
        eps: f64 = 1e-8, Epsilon;
    }
}

/// One member's moment constants, rounded as optax rounds them: the EMA weights `1 − β` are
/// computed in f64 (Python floats) and then rounded to f32, while the bias corrections `1 − βᵗ`
/// are computed in f32 at each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MomentHp {
    /// First-moment decay β₁.
    pub b1: f32,
    /// Second-moment decay β₂.
    pub b2: f32,
    /// EMA weight 1 − β₁ (rounded from f64).
    pub one_minus_b1: f32,
    /// EMA weight 1 − β₂ (rounded from f64).
    pub one_minus_b2: f32,
    /// Added outside the root.
    pub eps: f32,
}

impl MomentHp {
    /// Constants for decays `b1`, `b2` and `eps`.
    pub fn new(b1: f64, b2: f64, eps: f64) -> Self {
        Self { b1: b1 as f32, b2: b2 as f32, one_minus_b1: (1.0 - b1) as f32, one_minus_b2: (1.0 - b2) as f32, eps: eps as f32 }
    }

    /// The bias corrections (1 − β₁ᵗ, 1 − β₂ᵗ) of step `t` (1-based), in f32 as every
    /// implementation (host, device) divides by them.
    pub fn bias_corrections(&self, t: i32) -> (f32, f32) {
        (1.0 - self.b1.powi(t), 1.0 - self.b2.powi(t))
    }
}

/// Adam's bias-corrected moment estimates, shared by Adam and AdamW: the run state.
#[derive(Clone, Debug)]
pub struct Moments {
    /// First moments per tensor (`members × numel`).
    pub m: Vec<Vec<f32>>,
    /// Second moments per tensor.
    pub v: Vec<Vec<f32>>,
    /// Steps taken.
    pub count: i32,
}

/// Zero buffers of `members × numel` per tensor.
pub(crate) fn zeros(params: &[ParamInfo], members: usize) -> Vec<Vec<f32>> {
    params.iter().map(|i| vec![0.0; i.numel() * members]).collect()
}

impl Moments {
    /// Zero moments for `members` members of `params`.
    pub fn zeros(params: &[ParamInfo], members: usize) -> Self {
        Self { m: zeros(params, members), v: zeros(params, members), count: 0 }
    }

    /// Update the moments with `grads` and apply, per element of member `k`, `apply(k)(param,
    /// direction)` where the direction is m̂ / (√v̂ + eps) (optax's order of operations).
    #[inline]
    pub fn step<F: Fn(&mut f32, f32)>(&mut self, hp: &[MomentHp], params: &mut [&mut [f32]], grads: &[&[f32]], apply: impl Fn(usize) -> F) {
        self.count += 1;
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            let n = g.len() / hp.len();
            if n == 0 {
                continue;
            }
            let members = w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(m.chunks_exact_mut(n)).zip(v.chunks_exact_mut(n));
            for (k, (((w, g), m), v)) in members.enumerate() {
                let corrections = hp[k].bias_corrections(self.count);
                let apply = apply(k);
                simd_dispatch(&mut MomentsPass { w, g, m, v, hp: hp[k], corrections, apply: &apply });
            }
        }
    }
}

/// One member's tensor through [`Moments::step`]: compiled for the widest vector unit
/// (`core::simd`), whose divisions and square roots are as exact as the scalar ones, so every
/// path gives the same bits; the baseline build ran them four at a time.
struct MomentsPass<'a, F> {
    w: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
    hp: MomentHp,
    /// The bias corrections (1 − β₁ᵗ, 1 − β₂ᵗ).
    corrections: (f32, f32),
    apply: &'a F,
}

impl<F: Fn(&mut f32, f32)> simd::Kernel for MomentsPass<'_, F> {
    #[inline(always)]
    fn run(&mut self) {
        // A bias correction that has rounded to 1 (1 − β₁ᵗ from step 165 at β₁ = 0.9, 1 − β₂ᵗ
        // from about step 17,300 at β₂ = 0.999) divides by 1: the dividend's own bits, so the
        // pass skips that division, one of the three divisions and a square root per
        // parameter that bound it. Under `FlushDenormals` (DAZ) a subnormal moment that skips
        // it is read as zero by the next operation, as the quotient would have been.
        match self.corrections {
            (1.0, 1.0) => self.pass::<false, false>(),
            (1.0, _) => self.pass::<false, true>(),
            (_, 1.0) => self.pass::<true, false>(),
            _ => self.pass::<true, true>(),
        }
    }
}

impl<F: Fn(&mut f32, f32)> MomentsPass<'_, F> {
    /// The pass, dividing the first (`C1`) and second (`C2`) moments by their corrections.
    #[inline(always)]
    fn pass<const C1: bool, const C2: bool>(&mut self) {
        let MomentHp { b1, b2, one_minus_b1: w1, one_minus_b2: w2, eps } = self.hp;
        let (c1, c2) = self.corrections;
        for (((w, &g), m), v) in self.w.iter_mut().zip(self.g).zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            *m = w1 * g + b1 * *m;
            *v = w2 * (g * g) + b2 * *v;
            let m_hat = if C1 { *m / c1 } else { *m };
            let v_hat = if C2 { *v / c2 } else { *v };
            (self.apply)(w, m_hat / (v_hat.sqrt() + eps));
        }
    }
}

/// Adam over one or more members.
pub struct Adam {
    moments: Vec<MomentHp>,
    lr: Vec<f32>,
}

impl Adam {
    /// One member per entry of `members`.
    pub fn new(members: &[AdamHp]) -> Self {
        Self { moments: members.iter().map(|h| MomentHp::new(h.b1, h.b2, h.eps)).collect(), lr: members.iter().map(|h| h.lr as f32).collect() }
    }
}

impl UpdateRule for Adam {
    type State = Moments;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.lr.len()
    }
    fn init(&self, params: &[ParamInfo]) -> Moments {
        Moments::zeros(params, self.members())
    }
    fn update(&self, state: &mut Moments, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        state.step(&self.moments, params, grads, |k| {
            let lr = self.lr[k];
            move |w: &mut f32, u: f32| *w += -lr * u
        });
    }
}

/// The constants Adam and AdamW share for step `steps + 1` of the fused kernels: `{1-b1, b1,
/// 1-b2, b2, 1-b1^t, 1-b2^t, eps, -lr}` (the bias corrections in f32 as the host takes them).
pub(crate) fn fused_moments(hp: &MomentHp, lr: f32, steps: u64) -> [f32; 8] {
    let (c1, c2) = hp.bias_corrections((steps + 1) as i32);
    [hp.one_minus_b1, hp.b1, hp.one_minus_b2, hp.b2, c1, c2, hp.eps, -lr]
}

/// Adam as a fused device step (one member).
pub struct AdamStep {
    moments: MomentHp,
    lr: f32,
}

impl AdamStep {
    /// Adam with `hp`.
    pub fn new(hp: AdamHp) -> Self {
        Self { moments: MomentHp::new(hp.b1, hp.b2, hp.eps), lr: hp.lr as f32 }
    }
}

impl FusedRule for AdamStep {
    const KERNEL: Kernel = Kernel::Adam;
    const NAME: &'static str = NAME;
    fn consts(&self, steps: u64, _ctx: &StepContext<'_>) -> Consts {
        Consts::of(&fused_moments(&self.moments, self.lr, steps))
    }
}

/// The spec of optax's `adam` or `adamw` (`kind` is ours), with the options both leave off.
pub(crate) fn optax_moments(r: &ReferenceArgs<'_>, kind: &str) -> Result<OptimizerSpec> {
    r.require("eps_root", |v| v.as_f64() == Some(0.0))?;
    r.require_null("mu_dtype")?;
    r.require_false("nesterov")?;
    Ok(OptimizerSpec::new(kind).with("lr", r.num("learning_rate")?).with("b1", r.num("b1")?).with("b2", r.num("b2")?).with("eps", r.num("eps")?))
}

/// The kind.
pub struct AdamKind;

impl Kind for AdamKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "Adam (Kingma & Ba 2015) as optax.adam"
    }
    fn hparams(&self) -> &'static [Hparam] {
        AdamHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Adam::new(&members.iter().map(AdamHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device_members(&self, members: &[Values], params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(members.iter().map(|member| AdamStep::new(AdamHp::from_values(member))).collect()), params, device))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.adam").then(|| optax_moments(&ReferenceArgs::of(name, meta), NAME))
    }
}
