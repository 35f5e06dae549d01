//! Adafactor on device tensors, as the host rule ([`super::Adafactor`]) computes it: factored
//! second moments over the two largest axes (means accumulated in f64), update clipping by
//! block RMS, scaling by the parameter's RMS. The factored statistics keep the tensor's rank
//! with the reduced axis of length 1, so they broadcast back without index tables.

use super::{factored_dims, AdafactorParams, NAME};
use beatmatch_core::StepContext;
use beatmatch_device::{scalar, times, value, DeviceRule};
use candle_core::{DType, Tensor, Var};

/// Adafactor (one member).
pub struct AdafactorOnDevice(pub AdafactorParams);

/// One tensor's second-moment statistics.
#[derive(Clone, Debug)]
pub enum Second {
    /// Factored: the row statistic (axis `d0` reduced) and the column statistic (axis `d1`).
    Factored {
        /// Largest axis.
        d0: usize,
        /// Second largest axis.
        d1: usize,
        /// Mean over `d0` (shape with `d0` of length 1).
        row: Tensor,
        /// Mean over `d1` (shape with `d1` of length 1).
        col: Tensor,
    },
    /// Unfactored.
    Full(Tensor),
}

/// Per-tensor statistics and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// One per parameter tensor.
    pub tensors: Vec<Second>,
    /// Steps taken.
    pub count: u64,
}

/// Mean of `x` over `axis` (kept, length 1), accumulated in f64 and rounded to f32.
fn mean_f64(x: &Tensor, axis: usize) -> candle_core::Result<Tensor> {
    let n = scalar_f64(x.dim(axis)? as f64, x)?;
    x.to_dtype(DType::F64)?.sum_keepdim(axis)?.broadcast_div(&n)?.to_dtype(DType::F32)
}

fn scalar_f64(v: f64, like: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::new(v, like.device())
}

/// √(mean x²) accumulated in f64, as a 0-d f32 tensor.
fn rms(x: &Tensor) -> candle_core::Result<Tensor> {
    let n = scalar_f64(x.elem_count() as f64, x)?;
    x.to_dtype(DType::F64)?.sqr()?.sum_all()?.broadcast_div(&n)?.sqrt()?.to_dtype(DType::F32)
}

impl DeviceRule for AdafactorOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        NAME
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let p = &self.0;
        let tensors = params
            .iter()
            .map(|w| {
                let w = w.as_tensor();
                match factored_dims(w.dims(), p.min_dim_size_to_factor).filter(|_| p.factored) {
                    Some((d1, d0)) => Ok(Second::Factored { d0, d1, row: w.sum_keepdim(d0)?.zeros_like()?, col: w.sum_keepdim(d1)?.zeros_like()? }),
                    None => Ok(Second::Full(w.zeros_like()?)),
                }
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(State { tensors, count: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let p = &self.0;
        let t = (s.count as f64 - p.decay_offset) as f32 + 1.0;
        let decay = 1.0 - t.powf(-(p.decay_rate as f32));
        let eps = f64::from(p.eps as f32);
        for ((w, g), st) in params.iter().zip(grads).zip(s.tensors.iter_mut()) {
            let sq = g.sqr()?.affine(1.0, eps)?;
            let u = match st {
                Second::Full(v) => {
                    *v = (times(v, decay)? + times(&sq, 1.0 - decay)?)?;
                    g.mul(&v.powf(-0.5)?)?
                }
                Second::Factored { d0, d1, row, col } => {
                    *row = (times(row, decay)? + times(&mean_f64(&sq, *d0)?, 1.0 - decay)?)?;
                    *col = (times(col, decay)? + times(&mean_f64(&sq, *d1)?, 1.0 - decay)?)?;
                    let row_factor = row.broadcast_div(&mean_f64(row, *d1)?)?.powf(-0.5)?;
                    let col_factor = col.powf(-0.5)?;
                    g.broadcast_mul(&row_factor)?.broadcast_mul(&col_factor)?
                }
            };
            let u = if p.clipping_threshold > 0.0 {
                let denom = rms(&u)?.broadcast_div(&scalar(p.clipping_threshold as f32, u.device())?)?.maximum(1f32)?;
                u.broadcast_div(&denom)?
            } else {
                u
            };
            let w0 = value(w);
            let step = times(&u, p.lr as f32)?;
            let step = if p.multiply_by_parameter_scale { step.broadcast_mul(&rms(&w0)?.maximum(1e-3f32)?)? } else { step };
            w.set(&(w0 - step)?)?;
        }
        s.count += 1;
        Ok(())
    }
}
