//! SGD with heavy-ball or Nesterov momentum on device tensors, rounding as
//! `beatmatch_baselines::sgd` does.

use crate::{times, value, zeros_like, DeviceRule};
use beatmatch_baselines::sgd::SgdParams;
use beatmatch_core::StepContext;
use candle_core::{Tensor, Var};

/// SGD with momentum (one member).
pub struct Sgd(pub SgdParams);

impl DeviceRule for Sgd {
    /// The momentum trace per tensor.
    type State = Vec<Tensor>;
    fn name(&self) -> &'static str {
        "sgdm"
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<Vec<Tensor>> {
        zeros_like(params)
    }
    fn update(&self, trace: &mut Vec<Tensor>, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let (lr, mu) = (self.0.lr as f32, self.0.momentum as f32);
        for ((w, g), t) in params.iter().zip(grads).zip(trace.iter_mut()) {
            *t = (g + times(t, mu)?)?;
            let u = if self.0.nesterov { (g + times(t, mu)?)? } else { t.clone() };
            w.set(&(value(w) - times(&u, lr)?)?)?;
        }
        Ok(())
    }
}
