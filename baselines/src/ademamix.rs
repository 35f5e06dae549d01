//! AdEMAMix (Pagliardini, Ablin & Grangier 2024, arXiv 2409.03137) as optax 0.2.8's
//! `optax.contrib.ademamix`: Adam's bias-corrected fast EMA and second moment plus `alpha` times
//! a slow EMA (decay `b3`, not bias-corrected), `u = (m̂₁ + α·m₂) / (√ν̂ + eps)`, then decoupled
//! weight decay `u + wd·p` and `p ← p − lr·u`. The host rule, the fused device step
//! (`bm_ademamix`) and the kind's descriptor.

use crate::adam::{zeros, MomentHp};
use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{Consts, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "ademamix";

crate::hyperparameters! {
    /// One AdEMAMix member's hyperparameters (defaults: optax's `ademamix`).
    pub struct AdemamixHp {
        /// Learning rate.
        lr: f64 = 1e-3, Positive;
        /// Decay of the fast EMA (bias-corrected).
        b1: f64 = 0.9, Decay;
        /// Decay of the second moment (bias-corrected).
        b2: f64 = 0.999, Decay;
        /// Decay of the slow EMA (not bias-corrected).
        b3: f64 = 0.9999, Decay;
        /// Weight of the slow EMA in the update.
        alpha: f64 = 5.0, Off;
        /// Added outside the square root.
        eps: f64 = 1e-8, Epsilon;
        /// Decoupled weight decay (per step, times the learning rate).
        wd: f64 = 0.0, Off;
    }
}

/// One member's constants, rounded as optax rounds them (the EMA weights from f64, as Python
/// floats are; the bias corrections in f32 each step).
#[derive(Clone, Copy, Debug)]
struct Member {
    moments: MomentHp,
    b3: f32,
    one_minus_b3: f32,
    alpha: f32,
    wd: f32,
    lr: f32,
}

impl Member {
    fn new(h: &AdemamixHp) -> Self {
        Self {
            moments: MomentHp::new(h.b1, h.b2, h.eps),
            b3: h.b3 as f32,
            one_minus_b3: (1.0 - h.b3) as f32,
            alpha: h.alpha as f32,
            wd: h.wd as f32,
            lr: h.lr as f32,
        }
    }
}

/// AdEMAMix over one or more members.
pub struct Ademamix {
    members: Vec<Member>,
}

impl Ademamix {
    /// One member per entry of `members`.
    pub fn new(members: &[AdemamixHp]) -> Self {
        Self { members: members.iter().map(Member::new).collect() }
    }
}

/// AdEMAMix's run state.
#[derive(Clone, Debug)]
pub struct AdemamixState {
    /// Fast EMA per tensor (`members × numel`).
    pub m1: Vec<Vec<f32>>,
    /// Slow EMA per tensor.
    pub m2: Vec<Vec<f32>>,
    /// Second moment per tensor.
    pub nu: Vec<Vec<f32>>,
    /// Steps taken.
    pub count: i32,
}

impl UpdateRule for Ademamix {
    type State = AdemamixState;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> AdemamixState {
        let k = self.members();
        AdemamixState { m1: zeros(params, k), m2: zeros(params, k), nu: zeros(params, k), count: 0 }
    }
    fn update(&self, s: &mut AdemamixState, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        s.count += 1;
        for ((((w, g), m1), m2), nu) in params.iter_mut().zip(grads).zip(&mut s.m1).zip(&mut s.m2).zip(&mut s.nu) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            let members = w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(m1.chunks_exact_mut(n)).zip(m2.chunks_exact_mut(n)).zip(nu.chunks_exact_mut(n));
            for (k, ((((w, g), m1), m2), nu)) in members.enumerate() {
                let c = self.members[k];
                let MomentHp { b1, b2, one_minus_b1: w1, one_minus_b2: w2, eps } = c.moments;
                let (c1, c2) = c.moments.bias_corrections(s.count);
                for ((((w, &g), m1), m2), nu) in w.iter_mut().zip(g.iter()).zip(m1.iter_mut()).zip(m2.iter_mut()).zip(nu.iter_mut()) {
                    *m1 = w1 * g + b1 * *m1;
                    *m2 = c.one_minus_b3 * g + c.b3 * *m2;
                    *nu = w2 * (g * g) + b2 * *nu;
                    let u = (*m1 / c1 + c.alpha * *m2) / ((*nu / c2).sqrt() + eps);
                    *w += -c.lr * (u + c.wd * *w);
                }
            }
        }
    }
}

/// AdEMAMix as a fused device step (one member).
pub struct AdemamixStep(Member);

impl FusedRule for AdemamixStep {
    const KERNEL: Kernel = Kernel::Ademamix;
    const NAME: &'static str = NAME;
    fn consts(&self, steps: u64, _ctx: &StepContext<'_>) -> Consts {
        let c = self.0;
        let m = c.moments;
        let (c1, c2) = m.bias_corrections((steps + 1) as i32);
        Consts::of(&[m.one_minus_b1, m.b1, c.one_minus_b3, c.b3, m.one_minus_b2, m.b2, c1, c2, c.alpha, m.eps, c.wd, -c.lr])
    }
}

/// The kind.
pub struct AdemamixKind;

impl Kind for AdemamixKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "AdEMAMix (Pagliardini et al. 2024) as optax.contrib.ademamix"
    }
    fn hparams(&self) -> &'static [Hparam] {
        AdemamixHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Ademamix::new(&members.iter().map(AdemamixHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device_members(&self, members: &[Values], params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(members.iter().map(|member| AdemamixStep(Member::new(&AdemamixHp::from_values(member)))).collect()), params, device))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.contrib.ademamix").then(|| {
            let r = ReferenceArgs::of(name, meta);
            // The optional arguments the fixture leaves at their defaults, when it names them.
            r.require("eps_root", |v| v.is_null() || v.as_f64() == Some(0.0))?;
            r.require_null("mu_dtype")?;
            r.require_null("mask")?;
            Ok(OptimizerSpec::new(NAME)
                .with("lr", r.num("learning_rate")?)
                .with("b1", r.num("b1")?)
                .with("b2", r.num("b2")?)
                .with("b3", r.num("b3")?)
                .with("alpha", r.num("alpha")?)
                .with("eps", r.num("eps")?)
                .with("wd", r.num("weight_decay")?))
        })
    }
}
