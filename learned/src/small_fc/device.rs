//! small_fc_lopt on device tensors: momenta, a second moment and Adafactor-style factored
//! statistics with learned decays, 28 features normalised over the tensor through the
//! per-parameter MLP, as `crate::small_fc` (and its `accum`, `features`) computes
//! them.

use crate::accum::factored_dims;
use crate::device_net::{fold, step, DeviceNet, EMBEDDING};
use crate::features::StepRule;
use crate::small_fc::SmallFcNet;
use beatmatch_core::StepContext;
use beatmatch_device::{value, DeviceRule};
use candle_core::{DType, Tensor, Var};

/// small_fc_lopt bound to its theta (one member).
pub struct SmallFcOnDevice(pub SmallFcNet);

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

/// Per tensor: momenta (3), second moment (1), factored statistics (3 decays); the network on
/// the device; the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// Momenta per tensor.
    pub m: Vec<Vec<Tensor>>,
    /// Second moment per tensor.
    pub v: Vec<Vec<Tensor>>,
    /// Factored statistics per tensor.
    pub fac: Vec<Factored>,
    net: Option<DeviceNet>,
    /// Steps taken.
    pub iteration: u32,
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

impl DeviceRule for SmallFcOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::small_fc::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let (mom, rms, fac) = self.0.decays();
        let zeros = |p: &Var, k: usize| (0..k).map(|_| p.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>();
        let mut st = State { m: Vec::new(), v: Vec::new(), fac: Vec::new(), net: None, iteration: 0 };
        for p in params {
            st.m.push(zeros(p, mom.len())?);
            st.v.push(zeros(p, rms.len())?);
            st.fac.push(Factored::zeros(p.as_tensor(), fac.len())?);
        }
        st.net = params.first().map(|p| DeviceNet::upload(self.0.net(), EMBEDDING, p.device())).transpose()?;
        Ok(st)
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let Some(net) = &s.net else { return Ok(()) };
        let (mom, rms, fac) = self.0.decays();
        let cfg = self.0.config();
        let b0 = net.first_bias(s.iteration)?;
        for (i, (w, g)) in params.iter().zip(grads).enumerate() {
            let (m, v) = (&mut s.m[i], &mut s.v[i]);
            fold(m, mom, g)?;
            let g2 = g.sqr()?;
            fold(v, rms, &g2)?;
            let sq = g2.affine(1.0, 1e-30)?;
            let p = value(w);
            let FactoredFeatures { fac_g, stats, stat_rsqrt, pre_m } = factored_features(&mut s.fac[i], fac, g, &sq, m, false)?;
            let rs = rsqrt_eps(&v[0], 1e-6)?;
            let mut features = vec![g.clone(), p];
            features.extend(m.iter().cloned());
            features.push(v[0].clone());
            for mj in m.iter() {
                features.push(mj.mul(&rs)?);
            }
            features.push(rs);
            features.extend(fac_g);
            features.extend(stats);
            features.extend(stat_rsqrt);
            features.extend(pre_m);
            debug_assert_eq!(features.len(), net.features());
            step(w, &features, net, Some(&b0), StepRule::Embedded { exp_mult: cfg.exp_mult, step_mult: cfg.step_mult })?;
        }
        s.iteration += 1;
        Ok(())
    }
}
