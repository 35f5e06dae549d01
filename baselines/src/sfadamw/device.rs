//! Schedule-Free AdamW on device tensors: the host rule's elementwise steps as candle
//! operations rounding where the host rule rounds; the step's scalars (the weight `c_t`, the
//! base step's learning rate, the bias correction) on the host.

use super::{Member, NAME};
use beatmatch_core::StepContext;
use beatmatch_device::{scalar, times, value, DeviceRule};
use candle_core::{Tensor, Var};

/// Schedule-Free AdamW (one member).
pub struct SfAdamwOnDevice(pub(crate) Member);

/// `z` and `ν` per tensor on the device; the running peak learning rate and weight sum.
#[derive(Clone, Debug)]
pub struct State {
    /// The base iterate per tensor.
    pub z: Vec<Tensor>,
    /// Second moment per tensor.
    pub nu: Vec<Tensor>,
    max_lr: f32,
    weight_sum: f32,
    /// Steps taken.
    pub steps: u64,
}

impl SfAdamwOnDevice {
    /// `x = (y − (1 − β₁)·z)/β₁`.
    fn eval(&self, y: &Tensor, z: &Tensor) -> candle_core::Result<Tensor> {
        let c = &self.0;
        (y - times(z, 1.0 - c.b1)?)?.broadcast_div(&scalar(c.b1, y.device())?)
    }
}

impl DeviceRule for SfAdamwOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        NAME
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        // z starts at the parameters: a copy, since the parameters are updated in place.
        let z = params.iter().map(|p| p.as_tensor().copy()).collect::<candle_core::Result<_>>()?;
        let nu = params.iter().map(|p| p.as_tensor().zeros_like()).collect::<candle_core::Result<_>>()?;
        Ok(State { z, nu, max_lr: 0.0, weight_sum: 0.0, steps: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let c = &self.0;
        let (ck, neg_lr, c2) = c.scalars(s.steps, &mut s.max_lr, &mut s.weight_sum);
        for (((w, g), z), nu) in params.iter().zip(grads).zip(s.z.iter_mut()).zip(s.nu.iter_mut()) {
            let dev = w.device();
            let y = value(w);
            *nu = (times(&g.sqr()?, c.one_minus_b2)? + times(nu, c.b2)?)?;
            let scaling = nu.broadcast_div(&scalar(c2, dev)?)?.sqrt()?.affine(1.0, f64::from(c.eps))?.recip()?;
            let u = times(&(scaling.mul(g)? + times(&y, c.wd)?)?, neg_lr)?;
            let z_new = (&*z + u)?;
            let prev_x = (&y - times(z, c.one_minus_b1)?)?.broadcast_div(&scalar(c.b1, dev)?)?;
            let x = (times(&prev_x, 1.0 - ck)? + times(&z_new, ck)?)?;
            let y_new = (times(&x, c.b1)? + times(&z_new, c.one_minus_b1)?)?;
            w.set(&(&y + (y_new - &y)?)?)?;
            *z = z_new;
        }
        s.steps += 1;
        Ok(())
    }
    fn evaluates_elsewhere(&self) -> bool {
        true
    }
    fn eval_params(&self, s: &State, params: &[Var]) -> candle_core::Result<Option<Vec<Tensor>>> {
        if s.steps == 0 {
            return Ok(None);
        }
        params.iter().zip(&s.z).map(|(w, z)| self.eval(&value(w), z)).collect::<candle_core::Result<Vec<_>>>().map(Some)
    }
}
