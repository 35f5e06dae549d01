//! SGD with (heavy-ball or Nesterov) momentum, as optax's `sgd(lr, momentum, nesterov)`:
//! `t ← g + μ t`; update `−lr·t` (heavy ball) or `−lr·(g + μ t)` (Nesterov). The host rule,
//! the fused device step (`bm_sgd`) and the kind's descriptor.

use crate::adam::zeros;
use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{Consts, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "sgdm";

crate::hyperparameters! {
    /// One SGD member's hyperparameters.
    pub struct SgdParams {
        /// Learning rate.
        lr: f64 = 1e-2, Positive;
        /// Momentum coefficient μ (0 = plain SGD).
        momentum: f64 = 0.9, Decay;
        /// Nesterov's variant (0 or 1).
        nesterov: bool = 0.0, Flag;
    }
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
        NAME
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

/// SGD with momentum as a fused device step (one member).
pub struct SgdStep(pub SgdParams);

impl FusedRule for SgdStep {
    const KERNEL: Kernel = Kernel::Sgd;
    const NAME: &'static str = NAME;
    fn consts(&self, _steps: u64, _ctx: &StepContext<'_>) -> Consts {
        Consts::of(&[self.0.momentum as f32, self.0.lr as f32, f32::from(u8::from(self.0.nesterov))])
    }
}

/// The kind.
pub struct SgdKind;

impl Kind for SgdKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "SGD with heavy-ball or Nesterov momentum as optax.sgd"
    }
    fn hparams(&self) -> &'static [Hparam] {
        SgdParams::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Sgd::new(&members.iter().map(SgdParams::from_values).collect::<Vec<_>>()), params)
    }
    fn device_members(&self, members: &[Values], params: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(members.iter().map(|member| SgdStep(SgdParams::from_values(member))).collect()), params, device))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.sgd").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require_null("accumulator_dtype")?;
            Ok(OptimizerSpec::new(NAME).with("lr", r.num("learning_rate")?).with("momentum", r.num_or("momentum", 0.0)).with("nesterov", r.flag("nesterov")))
        })
    }
}
