//! Adam and AdamW on device tensors, rounding as `beatmatch_baselines::adam` does.

use crate::{scalar, times, value, zeros_like, DeviceRule};
use beatmatch_baselines::adam::{AdamHp, MomentHp};
use beatmatch_baselines::adamw::AdamWHp;
use beatmatch_core::StepContext;
use candle_core::{Tensor, Var};

/// First and second moments per tensor, and the steps taken.
#[derive(Clone, Debug)]
pub struct Moments {
    /// First moments.
    pub m: Vec<Tensor>,
    /// Second moments.
    pub v: Vec<Tensor>,
    /// Steps taken.
    pub count: i32,
}

fn init(params: &[Var]) -> candle_core::Result<Moments> {
    Ok(Moments { m: zeros_like(params)?, v: zeros_like(params)?, count: 0 })
}

/// Advance the moments with `grads` and call `apply(i, w, direction)` per tensor, where the
/// direction is m̂ / (√v̂ + eps).
fn step(hp: &MomentHp, s: &mut Moments, params: &[Var], grads: &[Tensor], apply: impl Fn(&Var, &Tensor) -> candle_core::Result<()>) -> candle_core::Result<()> {
    s.count += 1;
    let Some(first) = params.first() else { return Ok(()) };
    let dev = first.device();
    let c1 = scalar(1.0 - hp.b1.powi(s.count), dev)?;
    let c2 = scalar(1.0 - hp.b2.powi(s.count), dev)?;
    for (((w, g), m), v) in params.iter().zip(grads).zip(&mut s.m).zip(&mut s.v) {
        *m = (times(g, hp.one_minus_b1)? + times(m, hp.b1)?)?;
        *v = (times(&g.sqr()?, hp.one_minus_b2)? + times(v, hp.b2)?)?;
        let denom = v.broadcast_div(&c2)?.sqrt()?.affine(1.0, f64::from(hp.eps))?;
        apply(w, &m.broadcast_div(&c1)?.div(&denom)?)?;
    }
    Ok(())
}

/// Adam (one member).
pub struct Adam {
    moments: MomentHp,
    lr: f32,
}

impl Adam {
    /// Adam with `hp`.
    pub fn new(hp: AdamHp) -> Self {
        Self { moments: MomentHp::new(hp.b1, hp.b2, hp.eps), lr: hp.lr as f32 }
    }
}

impl DeviceRule for Adam {
    type State = Moments;
    fn name(&self) -> &'static str {
        "adam"
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<Moments> {
        init(params)
    }
    fn update(&self, s: &mut Moments, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        step(&self.moments, s, params, grads, |w, u| w.set(&(value(w) + times(u, -self.lr)?)?))
    }
}

/// AdamW (one member): Adam's direction plus decoupled weight decay.
pub struct AdamW {
    moments: MomentHp,
    lr: f32,
    wd: f32,
}

impl AdamW {
    /// AdamW with `hp`.
    pub fn new(hp: AdamWHp) -> Self {
        Self { moments: MomentHp::new(hp.b1, hp.b2, hp.eps), lr: hp.lr as f32, wd: hp.wd as f32 }
    }
}

impl DeviceRule for AdamW {
    type State = Moments;
    fn name(&self) -> &'static str {
        "adamw"
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<Moments> {
        init(params)
    }
    fn update(&self, s: &mut Moments, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        step(&self.moments, s, params, grads, |w, u| {
            let w0 = value(w);
            w.set(&(&w0 + times(&(u + times(&w0, self.wd)?)?, -self.lr)?)?)
        })
    }
}
