//! The factored (Adafactor-style) second moments on device tensors, as the host's
//! `accum::Factored` keeps them and `features::fill` reads them: the candle-op path VeLO and
//! Celo2 take on the device (small_fc and MLP-LOpt are fused kernels, `beatmatch_device::lopt`).

use crate::accum::factored_dims;
use crate::device_net::fold;
use candle_core::{DType, Tensor};

/// One tensor's factored accumulator: per decay, the row statistic (mean over `d0`, that axis
/// kept at length 1) and the column statistic (over `d1`); or, for tensors of rank < 2, a
/// full second moment per decay.
#[derive(Clone, Debug)]
pub enum Factored {
    /// Rank ≥ 2.
    Factored {
        /// Largest axis.
        d0: usize,
        /// Second largest axis.
        d1: usize,
        /// Row statistics, one per decay.
        row: Vec<Tensor>,
        /// Column statistics, one per decay.
        col: Vec<Tensor>,
    },
    /// Rank < 2: one full accumulator per decay.
    Diag(Vec<Tensor>),
}

impl Factored {
    /// Zero statistics for parameter `p`, `k` decays: factored over its two largest axes when
    /// it has rank ≥ 2 (as the host's `accum::Factored::new`).
    pub fn zeros(p: &Tensor, k: usize) -> candle_core::Result<Self> {
        let traces = |t: Tensor| (0..k).map(|_| t.zeros_like()).collect::<candle_core::Result<Vec<_>>>();
        Ok(match factored_dims(p.dims()) {
            Some((d1, d0)) => Factored::Factored { d0, d1, row: traces(p.sum_keepdim(d0)?)?, col: traces(p.sum_keepdim(d1)?)? },
            None => Factored::Diag(traces(p.clone())?),
        })
    }
}

/// Mean of `x` over `axis` (kept), summed in f64, rounded to f32.
fn mean_f64(x: &Tensor, axis: usize) -> candle_core::Result<Tensor> {
    let n = Tensor::new(x.dim(axis)? as f64, x.device())?;
    x.to_dtype(DType::F64)?.sum_keepdim(axis)?.broadcast_div(&n)?.to_dtype(DType::F32)
}

/// `1 / √max(x, 1e-9)` (the accumulators' `safe_rsqrt`).
fn safe_rsqrt(x: &Tensor) -> candle_core::Result<Tensor> {
    x.maximum(1e-9f32)?.sqrt()?.recip()
}

/// `1 / √(x + eps)`.
fn rsqrt_eps(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.affine(1.0, eps)?.sqrt()?.recip()
}

/// The features the factored accumulator contributes, each shaped like the parameter.
pub struct FactoredFeatures {
    /// The factored-preconditioned gradient, per decay.
    pub fac_g: Vec<Tensor>,
    /// The row then the column statistics (the diagonal case: the full statistic twice).
    pub stats: Vec<Tensor>,
    /// `1 / √(statistic + 1e-8)` of each, in the same order.
    pub stat_rsqrt: Vec<Tensor>,
    /// The momenta preconditioned by the factors (the diagonal case: `m · (v + ε)^-½`).
    pub pre_m: Vec<Tensor>,
}

/// Fold this step's squared gradient `sq` (`g² + 1e-30`) into the factored accumulator `st`
/// (one trace per decay) and return its features, as the host's `accum::Factored` and
/// `features::fill` compute them. `velo` selects VeLO's diagonal `m · v^-½` (no epsilon)
/// over small_fc's `m · (v + 1e-6)^-½`.
pub fn factored_features(st: &mut Factored, decays: &[f32], g: &Tensor, sq: &Tensor, m: &[Tensor], velo: bool) -> candle_core::Result<FactoredFeatures> {
    let shape = g.shape().clone();
    let mut out = FactoredFeatures { fac_g: Vec::new(), stats: Vec::new(), stat_rsqrt: Vec::new(), pre_m: Vec::new() };
    match st {
        Factored::Diag(x) => {
            fold(x, decays, sq)?;
            for (xj, mj) in x.iter().zip(m) {
                out.fac_g.push(g.mul(&safe_rsqrt(&xj.affine(1.0, 1e-9)?)?)?);
                out.stats.push(xj.clone());
                out.stat_rsqrt.push(rsqrt_eps(xj, 1e-8)?);
                out.pre_m.push(if velo { mj.mul(&xj.sqrt()?.recip()?)? } else { mj.mul(&rsqrt_eps(xj, 1e-6)?)? });
            }
            // The diagonal case feeds each statistic (and its rsqrt) twice, in the row and the
            // column slots.
            out.stats.extend(out.stats.clone());
            out.stat_rsqrt.extend(out.stat_rsqrt.clone());
        }
        Factored::Factored { d0, d1, row, col } => {
            fold(row, decays, &mean_f64(sq, *d0)?)?;
            fold(col, decays, &mean_f64(sq, *d1)?)?;
            let (mut rv, mut cv, mut rr, mut cr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for ((rj, cj), mj) in row.iter().zip(col.iter()).zip(m) {
                let rf = safe_rsqrt(&rj.broadcast_div(&mean_f64(rj, *d1)?.affine(1.0, 1e-9)?)?)?;
                let cf = safe_rsqrt(cj)?;
                out.fac_g.push(g.broadcast_mul(&rf)?.broadcast_mul(&cf)?);
                out.pre_m.push(mj.broadcast_mul(&rf)?.broadcast_mul(&cf)?);
                rv.push(rj.broadcast_as(&shape)?);
                cv.push(cj.broadcast_as(&shape)?);
                rr.push(rsqrt_eps(rj, 1e-8)?.broadcast_as(&shape)?);
                cr.push(rsqrt_eps(cj, 1e-8)?.broadcast_as(&shape)?);
            }
            out.stats = [rv, cv].concat();
            out.stat_rsqrt = [rr, cr].concat();
        }
    }
    Ok(out)
}
