//! NAdamW with its cosine schedule on device tensors, rounding as
//! `beatmatch_baselines::nadamw` does (the schedule's learning rate is the host's).

use crate::{times, value, zeros_like, DeviceRule};
use beatmatch_baselines::nadamw::NAdamWParams;
use beatmatch_core::StepContext;
use candle_core::{Tensor, Var};

/// NAdamW (one member).
pub struct NAdamW(pub NAdamWParams);

/// Moments per tensor and the iteration.
#[derive(Clone, Debug)]
pub struct State {
    /// First moments.
    pub m: Vec<Tensor>,
    /// Second moments.
    pub v: Vec<Tensor>,
    /// Steps taken.
    pub iteration: u64,
}

impl DeviceRule for NAdamW {
    type State = State;
    fn name(&self) -> &'static str {
        "nadamw"
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        Ok(State { m: zeros_like(params)?, v: zeros_like(params)?, iteration: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let p = &self.0;
        let t = s.iteration as f32 + 1.0;
        let lr = p.learning_rate(s.iteration, ctx.num_steps);
        let (b1, b2, eps) = (p.b1 as f32, p.b2 as f32, p.eps as f32);
        let (awd, l2) = (p.adamw_wd as f32, p.l2_wd as f32);
        let lr_t = lr * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
        for (((w, g), m), v) in params.iter().zip(grads).zip(&mut s.m).zip(&mut s.v) {
            let w0 = value(w);
            let g = (g - times(&w0, l2)?)?;
            *m = (times(m, b1)? + times(&g, 1.0 - b1)?)?;
            *v = (times(v, b2)? + times(&g.sqr()?, 1.0 - b2)?)?;
            let num = if p.nesterov { (times(m, b1)? + times(&g, 1.0 - b1)?)? } else { m.clone() };
            let step = (times(&num, lr_t)?.div(&v.sqrt()?.affine(1.0, f64::from(eps))?)? + times(&w0, lr_t * awd)?)?;
            w.set(&(w0 - step)?)?;
        }
        s.iteration += 1;
        Ok(())
    }
}
