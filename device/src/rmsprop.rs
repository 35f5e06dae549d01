//! RMSProp (no momentum, not centred) on device tensors, rounding as
//! `beatmatch_baselines::rmsprop` does.

use crate::{times, value, zeros_like, DeviceRule};
use beatmatch_core::StepContext;
use candle_core::{Tensor, Var};

/// RMSProp (one member).
pub struct RmsProp {
    lr: f32,
    decay: f32,
    one_minus_decay: f32,
    eps: f32,
}

impl RmsProp {
    /// RMSProp with (lr, decay, eps).
    pub fn new((lr, decay, eps): (f64, f64, f64)) -> Self {
        Self { lr: lr as f32, decay: decay as f32, one_minus_decay: (1.0 - decay) as f32, eps: eps as f32 }
    }
}

impl DeviceRule for RmsProp {
    /// Second moments ν per tensor.
    type State = Vec<Tensor>;
    fn name(&self) -> &'static str {
        "rmsprop"
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<Vec<Tensor>> {
        zeros_like(params)
    }
    fn update(&self, nu: &mut Vec<Tensor>, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        for ((w, g), nu) in params.iter().zip(grads).zip(nu.iter_mut()) {
            *nu = (times(&g.sqr()?, self.one_minus_decay)? + times(nu, self.decay)?)?;
            let u = g.div(&nu.affine(1.0, f64::from(self.eps))?.sqrt()?)?;
            w.set(&(value(w) + times(&u, -self.lr)?)?)?;
        }
        Ok(())
    }
}
