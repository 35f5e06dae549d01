//! Adafactor (Shazeer & Stern 2018) as optax's `adafactor` with its defaults: factored second
//! moments for tensors whose two largest dims are ≥ `min_dim_size_to_factor`, decay
//! `1 − (t+1)^−0.8`, update clipping by block RMS, scaling by the parameter's RMS (floor 1e-3).
//!
//! Factored dims come from a stable argsort of the shape (ties: lower axis first): `d0` is the
//! largest axis, `d1` the second largest. The row statistic averages over `d0`, the column
//! statistic over `d1`.
//!
//! The host rule is here, the device rule (a composition of candle ops: the factored
//! reductions are not one elementwise kernel) in [`device`], and the kind's descriptor.

pub mod device;

use crate::kind::{bound, Hparam, Kind, ReferenceArgs, Values};
use anyhow::Result;
use beatmatch_core::shape::{drop_axis, largest_two_axes, without};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;
use std::sync::Arc;

/// The kind's name.
pub const NAME: &str = "adafactor";

crate::hyperparameters! {
    /// Adafactor's hyperparameters (defaults: optax's).
    pub struct AdafactorParams {
        /// Learning rate.
        lr: f64 = 1e-2, Positive;
        /// Exponent of the second-moment decay schedule.
        decay_rate: f64 = 0.8, OpenFraction;
        /// Step offset of that schedule (steps).
        decay_offset: f64 = 0.0, Off;
        /// Factor only if the two largest dims are at least this large (elements).
        min_dim_size_to_factor: usize = 128.0, Count;
        /// Added to squared gradients.
        eps: f64 = 1e-30, Epsilon;
        /// Block-RMS clipping threshold (0 disables).
        clipping_threshold: f64 = 1.0, Off;
        /// Scale updates by the parameter's RMS (0 or 1).
        multiply_by_parameter_scale: bool = 1.0, Flag;
        /// Use factored second moments where possible (0 or 1).
        factored: bool = 1.0, Flag;
    }
}

/// Where each element's row and column statistic sits in a factored tensor: shapes are fixed,
/// so the index arithmetic is done once (and shared by every member and every snapshot).
#[derive(Debug)]
pub struct FactorLayout {
    d0: usize,
    d1: usize,
    shape: Vec<usize>,
    rows: Vec<u32>,
    cols: Vec<u32>,
    row_len: usize,
    col_len: usize,
}

/// One member's second-moment statistics of one tensor.
#[derive(Clone, Debug)]
pub enum Second {
    /// Row (mean over d0) and column (mean over d1) statistics.
    Factored {
        /// The tensor's index layout.
        layout: Arc<FactorLayout>,
        /// Row statistic.
        row: Vec<f32>,
        /// Column statistic.
        col: Vec<f32>,
    },
    /// The full second moment.
    Full(Vec<f32>),
}

/// Adafactor's run state: `tensors[i][k]` is member k's statistics of tensor i.
#[derive(Clone, Debug)]
pub struct AdafactorState {
    /// Per tensor, per member.
    pub tensors: Vec<Vec<Second>>,
    /// Steps taken.
    pub count: u64,
    scratch: Vec<f32>,
}

/// Adafactor over one or more members.
pub struct Adafactor {
    members: Vec<AdafactorParams>,
}

/// The axes Adafactor factors a tensor of `shape` over, `(second largest, largest)`, when the
/// second largest has at least `min` elements.
pub fn factored_dims(shape: &[usize], min: usize) -> Option<(usize, usize)> {
    largest_two_axes(shape).filter(|&(d1, _)| shape[d1] >= min)
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt() as f32
}

impl Adafactor {
    /// One member per entry of `members`.
    pub fn new(members: &[AdafactorParams]) -> Self {
        Self { members: members.to_vec() }
    }
}

impl UpdateRule for Adafactor {
    type State = AdafactorState;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> AdafactorState {
        let tensors = params
            .iter()
            .map(|info| {
                let mut layouts: Vec<((usize, usize), Arc<FactorLayout>)> = Vec::new();
                self.members
                    .iter()
                    .map(|p| match factored_dims(&info.shape, p.min_dim_size_to_factor).filter(|_| p.factored) {
                        Some((d1, d0)) => {
                            let layout = match layouts.iter().find(|(d, _)| *d == (d1, d0)) {
                                Some((_, l)) => l.clone(),
                                None => {
                                    let l = Arc::new(FactorLayout {
                                        d0,
                                        d1,
                                        shape: info.shape.clone(),
                                        rows: (0..info.numel()).map(|i| drop_axis(i, &info.shape, d0) as u32).collect(),
                                        cols: (0..info.numel()).map(|i| drop_axis(i, &info.shape, d1) as u32).collect(),
                                        row_len: without(&info.shape, d0).iter().product(),
                                        col_len: without(&info.shape, d1).iter().product(),
                                    });
                                    layouts.push(((d1, d0), l.clone()));
                                    l
                                }
                            };
                            Second::Factored { row: vec![0.0; layout.row_len], col: vec![0.0; layout.col_len], layout }
                        }
                        None => Second::Full(vec![0.0; info.numel()]),
                    })
                    .collect()
            })
            .collect();
        AdafactorState { tensors, count: 0, scratch: Vec::new() }
    }

    fn update(&self, state: &mut AdafactorState, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        let AdafactorState { tensors, count, scratch } = state;
        for ((w, g), members) in params.iter_mut().zip(grads).zip(tensors.iter_mut()) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            for (k, ((w, g), st)) in w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(members.iter_mut()).enumerate() {
                update_member(&self.members[k], *count, w, g, st, scratch);
            }
        }
        *count += 1;
    }
}

fn update_member(p: &AdafactorParams, count: u64, w: &mut [f32], g: &[f32], st: &mut Second, u: &mut Vec<f32>) {
    let t = (count as f64 - p.decay_offset) as f32 + 1.0;
    let decay = 1.0 - t.powf(-(p.decay_rate as f32));
    let eps = p.eps as f32;
    u.clear();
    match st {
        Second::Full(v) => {
            for (&g, v) in g.iter().zip(v.iter_mut()) {
                *v = decay * *v + (1.0 - decay) * (g * g + eps);
                u.push(g * v.powf(-0.5));
            }
        }
        Second::Factored { layout, row, col } => {
            let FactorLayout { d0, d1, shape, rows, cols, .. } = &**layout;
            let (d0, d1) = (*d0, *d1);
            // Means of g² + eps over d0 (rows) and d1 (columns), accumulated in f64.
            let mut row_sum = vec![0f64; row.len()];
            let mut col_sum = vec![0f64; col.len()];
            for (i, &g) in g.iter().enumerate() {
                let sq = f64::from(g * g + eps);
                row_sum[rows[i] as usize] += sq;
                col_sum[cols[i] as usize] += sq;
            }
            for (r, s) in row.iter_mut().zip(&row_sum) {
                *r = decay * *r + (1.0 - decay) * (*s / shape[d0] as f64) as f32;
            }
            for (c, s) in col.iter_mut().zip(&col_sum) {
                *c = decay * *c + (1.0 - decay) * (*s / shape[d1] as f64) as f32;
            }
            // Mean of the row statistic over the (reduced) d1 axis, kept per remaining index.
            let row_shape = without(shape, d0);
            let reduced_d1 = if d1 > d0 { d1 - 1 } else { d1 };
            let mut rcm = vec![0f64; row.len() / row_shape[reduced_d1]];
            for (j, &r) in row.iter().enumerate() {
                rcm[drop_axis(j, &row_shape, reduced_d1)] += f64::from(r);
            }
            let rcm: Vec<f32> = rcm.iter().map(|s| (s / row_shape[reduced_d1] as f64) as f32).collect();
            let row_factor: Vec<f32> = row.iter().enumerate().map(|(j, &r)| (r / rcm[drop_axis(j, &row_shape, reduced_d1)]).powf(-0.5)).collect();
            let col_factor: Vec<f32> = col.iter().map(|&c| c.powf(-0.5)).collect();
            for (i, &g) in g.iter().enumerate() {
                u.push(g * row_factor[rows[i] as usize] * col_factor[cols[i] as usize]);
            }
        }
    }
    if p.clipping_threshold > 0.0 {
        let denom = (rms(u) / p.clipping_threshold as f32).max(1.0);
        u.iter_mut().for_each(|x| *x /= denom);
    }
    let scale = if p.multiply_by_parameter_scale { rms(w).max(1e-3) } else { 1.0 };
    let lr = p.lr as f32;
    for (w, &u) in w.iter_mut().zip(u.iter()) {
        *w += -(u * lr * scale);
    }
}

/// The kind.
pub struct AdafactorKind;

impl Kind for AdafactorKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "Adafactor (Shazeer & Stern 2018) as optax.adafactor"
    }
    fn hparams(&self) -> &'static [Hparam] {
        AdafactorParams::HPARAMS
    }
    fn host(&self, members: &[Values], params: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(Adafactor::new(&members.iter().map(AdafactorParams::from_values).collect::<Vec<_>>()), params)
    }
    fn device(&self, member: &Values, params: &[ParamInfo], dev: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(device::AdafactorOnDevice(AdafactorParams::from_values(member)), params, dev))
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["optimizer"] == "optax.adafactor").then(|| {
            let r = ReferenceArgs::of(name, meta);
            r.require_null("momentum")?;
            r.require_null("weight_decay_rate")?;
            Ok(OptimizerSpec::new(NAME)
                .with("lr", r.num("learning_rate")?)
                .with("decay_rate", r.num("decay_rate")?)
                .with("decay_offset", r.num("decay_offset")?)
                .with("min_dim_size_to_factor", r.num("min_dim_size_to_factor")?)
                .with("eps", r.num("eps")?)
                .with("clipping_threshold", r.num_or("clipping_threshold", 0.0))
                .with("multiply_by_parameter_scale", r.flag("multiply_by_parameter_scale"))
                .with("factored", r.flag("factored")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factored_dims_use_a_stable_argsort() {
        assert_eq!(factored_dims(&[128, 136], 128), Some((0, 1)));
        assert_eq!(factored_dims(&[136, 128], 128), Some((1, 0)));
        assert_eq!(factored_dims(&[200, 200], 128), Some((0, 1)));
        assert_eq!(factored_dims(&[4, 200, 300], 128), Some((1, 2)));
        assert_eq!(factored_dims(&[100, 300], 128), None);
        assert_eq!(factored_dims(&[300], 128), None);
    }
}
