//! Lion (Chen et al. 2023) as optax's `lion`: `u = sign((1−β₁)g + β₁μ) + wd·p`, `p ← p − lr·u`,
//! then `μ ← β₂μ + (1−β₂)g`. The host rule, the fused device step (`bm_lion`) and the kind's
//! descriptor.

use crate::adam::zeros;
use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{self, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "lion";

crate::hyperparameters! {
    /// One Lion member's hyperparameters (defaults: optax's).
    pub struct LionHp {
        /// Learning rate.
        lr: f64 = 1e-4, Positive;
        /// Interpolation of the update's sign.
        b1: f64 = 0.9, Decay;
        /// Momentum decay.
        b2: f64 = 0.99, Decay;
        /// Decoupled weight decay (per step, times the learning rate).
        wd: f64 = 1e-3, Off;
    }
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
        NAME
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

/// Lion as a fused device step (one member).
pub struct LionStep(pub LionHp);

impl FusedRule for LionStep {
    const KERNEL: Kernel = Kernel::Lion;
    const NAME: &'static str = NAME;
    fn consts(&self, _steps: u64, _ctx: &StepContext<'_>) -> fused::Consts {
        let h = self.0;
        fused::Consts::of(&[(1.0 - h.b1) as f32, h.b1 as f32, h.wd as f32, -(h.lr as f32), (1.0 - h.b2) as f32, h.b2 as f32])
    }
}

/// The kind.
pub struct LionKind;

impl Kind for LionKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "Lion (Chen et al. 2023) as optax.lion"
    }
    fn hparams(&self) -> &'static [Hparam] {
        LionHp::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Lion::new(&members.iter().map(LionHp::from_values).collect::<Vec<_>>()), params)
    }
    fn device_members(&self, members: &[Values], params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(members.iter().map(|member| LionStep(LionHp::from_values(member))).collect()), params, device))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.lion").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require_null("mask")?;
            r.require_null("mu_dtype")?;
            Ok(OptimizerSpec::new(NAME)
                .with("lr", r.num("learning_rate")?)
                .with("b1", r.num("b1")?)
                .with("b2", r.num("b2")?)
                .with("wd", r.num("weight_decay")?))
        })
    }
}
