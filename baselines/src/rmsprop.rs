//! RMSProp as optax 0.2.3's `rmsprop` (no momentum, not centred): `ν ← ρν + (1−ρ)g²` from 0,
//! update `−lr · g / √(ν + eps)` — eps inside the root, no bias correction. The host rule, the
//! fused device step (`bm_rmsprop`) and the kind's descriptor.

use crate::adam::zeros;
use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{Consts, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "rmsprop";

crate::hyperparameters! {
    /// One RMSProp member's hyperparameters (defaults: optax's).
    pub struct RmsPropHp {
        /// Learning rate.
        lr: f64 = 1e-3, Positive;
        /// Decay ρ of the second moment.
        decay: f64 = 0.9, Decay;
        /// Added inside the square root.
        eps: f64 = 1e-8, Epsilon;
    }
}

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

impl Hp {
    fn new(h: &RmsPropHp) -> Self {
        Self { lr: h.lr as f32, decay: h.decay as f32, one_minus_decay: (1.0 - h.decay) as f32, eps: h.eps as f32 }
    }
}

impl RmsProp {
    /// One member per entry of `members`.
    pub fn new(members: &[RmsPropHp]) -> Self {
        Self { members: members.iter().map(Hp::new).collect() }
    }
}

impl UpdateRule for RmsProp {
    /// Second moments ν per tensor (`members × numel`).
    type State = Vec<Vec<f32>>;
    fn name(&self) -> &'static str {
        NAME
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

/// RMSProp as a fused device step (one member).
pub struct RmsPropStep(Hp);

impl RmsPropStep {
    /// RMSProp with `hp`.
    pub fn new(hp: &RmsPropHp) -> Self {
        Self(Hp::new(hp))
    }
}

impl FusedRule for RmsPropStep {
    const KERNEL: Kernel = Kernel::Rmsprop;
    const NAME: &'static str = NAME;
    fn consts(&self, _steps: u64, _ctx: &StepContext<'_>) -> Consts {
        let h = self.0;
        Consts::of(&[h.one_minus_decay, h.decay, h.eps, -h.lr])
    }
}

/// The kind.
pub struct RmsPropKind;

impl Kind for RmsPropKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "RMSProp (no momentum, not centred) as optax.rmsprop"
    }
    fn hparams(&self) -> &'static [Hparam] {
        RmsPropHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(RmsProp::new(&members.iter().map(RmsPropHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device_members(&self, members: &[Values], params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(members.iter().map(|member| RmsPropStep::new(&RmsPropHp::from_values(member))).collect()), params, device))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.rmsprop").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require_false("centered")?;
            r.require_null("momentum")?;
            r.require("initial_scale", |v| v.as_f64() == Some(0.0))?;
            Ok(OptimizerSpec::new(NAME).with("lr", r.num("learning_rate")?).with("decay", r.num("decay")?).with("eps", r.num("eps")?))
        })
    }
}
