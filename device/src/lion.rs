//! Lion on device tensors, rounding as `beatmatch_baselines::lion` does.

use crate::{times, value, zeros_like, DeviceRule};
use beatmatch_baselines::lion::LionHp;
use beatmatch_core::StepContext;
use candle_core::{Tensor, Var};

/// Lion (one member).
pub struct Lion(pub LionHp);

impl DeviceRule for Lion {
    /// Momentum μ per tensor.
    type State = Vec<Tensor>;
    fn name(&self) -> &'static str {
        "lion"
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<Vec<Tensor>> {
        zeros_like(params)
    }
    fn update(&self, mu: &mut Vec<Tensor>, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let h = self.0;
        let (lr, b1, b2, wd) = (h.lr as f32, h.b1 as f32, h.b2 as f32, h.wd as f32);
        let (w1, w2) = ((1.0 - h.b1) as f32, (1.0 - h.b2) as f32);
        for ((w, g), mu) in params.iter().zip(grads).zip(mu.iter_mut()) {
            let w0 = value(w);
            let u = ((times(g, w1)? + times(mu, b1)?)?.sign()? + times(&w0, wd)?)?;
            w.set(&(w0 + times(&u, -lr)?)?)?;
            *mu = (times(g, w2)? + times(mu, b2)?)?;
        }
        Ok(())
    }
}
