//! Celo2 on device tensors, every step as the host rule computes it: the accumulators and
//! features (through small_fc's device code for the factored statistics), the per-matrix
//! normalisers, the MLP as matrix products, Newton–Schulz batched over each tensor's matrices,
//! and AdamW for the routed tensors. Nothing crosses to the host.

use crate::celo2::{Celo2Net, Route, FEATURES};
use crate::device_factored::{factored_features, Factored, FactoredFeatures};
use crate::device_net::fold;
use beatmatch_core::newton_schulz::NS_COEFFS;
use beatmatch_core::StepContext;
use beatmatch_device::{times, value, DeviceRule};
use candle_core::{DType, Device, Tensor, Var, D};

/// Celo2 bound to its weights (one member), with each tensor's route.
pub struct Celo2OnDevice(pub Celo2Net, pub Vec<Route>);

/// One tensor's state.
#[derive(Clone, Debug)]
pub enum TensorState {
    /// The learned rule's momenta, second moment and factored statistics.
    Learned {
        /// Momenta (3 decays).
        m: Vec<Tensor>,
        /// Second moment.
        v: Tensor,
        /// Factored statistics.
        fac: Factored,
    },
    /// AdamW's moments.
    AdamW {
        /// First moment.
        m: Tensor,
        /// Second moment.
        v: Tensor,
    },
}

/// Per tensor, its state; the steps taken; the MLP's weights on the device.
#[derive(Clone, Debug)]
pub struct State {
    /// Per tensor.
    pub tensors: Vec<TensorState>,
    /// Steps taken.
    pub count: u32,
    weights: Option<[Tensor; 6]>,
}

/// `x · rsqrt(1e-9 + mean(x²))` over the last two axes of each matrix in `x` (`[nb, block, F]`:
/// the mean runs over axis 1), the mean summed in f64.
fn normalise(x: &Tensor) -> candle_core::Result<Tensor> {
    let n = Tensor::new(x.dim(1)? as f64, x.device())?;
    let ms = x.to_dtype(DType::F64)?.sqr()?.sum_keepdim(1)?.broadcast_div(&n)?.to_dtype(DType::F32)?;
    x.broadcast_mul(&ms.affine(1.0, 1e-9)?.sqrt()?.recip()?)
}

/// Newton–Schulz on each `r × c` matrix of `x` (`[nb, r, c]`), as the host's.
fn newton_schulz(x: &Tensor, steps: usize, eps: f32) -> candle_core::Result<Tensor> {
    let (_, r, c) = x.dims3()?;
    let mut x = if r > c { x.transpose(1, 2)?.contiguous()? } else { x.clone() };
    let norm = x.to_dtype(DType::F64)?.sqr()?.sum_keepdim((1, 2))?.sqrt()?.to_dtype(DType::F32)?;
    x = x.broadcast_div(&(norm + f64::from(eps))?)?;
    let [ca, cb, cc] = NS_COEFFS;
    for _ in 0..steps {
        let a = x.matmul(&x.transpose(1, 2)?.contiguous()?)?;
        let b = (times(&a, cc)?.matmul(&a)? + times(&a, cb)?)?;
        x = (times(&x, ca)? + b.matmul(&x)?)?;
    }
    if r > c {
        x = x.transpose(1, 2)?.contiguous()?;
    }
    Ok(x)
}

impl Celo2OnDevice {
    fn upload(&self, dev: &Device) -> candle_core::Result<[Tensor; 6]> {
        let m = self.0.mlp();
        let h = m.hidden;
        Ok([
            Tensor::from_slice(&m.w0, (FEATURES, h), dev)?,
            Tensor::from_slice(&m.b0, h, dev)?,
            Tensor::from_slice(&m.w1, (h, h), dev)?,
            Tensor::from_slice(&m.b1, h, dev)?,
            Tensor::from_slice(&m.w2, (h, 3), dev)?,
            Tensor::from_slice(&m.b2, 3, dev)?,
        ])
    }

    /// The learned step of one tensor (rank ≥ 2).
    fn learned_step(&self, w: &Var, g: &Tensor, st: &mut TensorState, weights: &[Tensor; 6]) -> candle_core::Result<Tensor> {
        let TensorState::Learned { m, v, fac } = st else { unreachable!("a learned tensor's state") };
        let (mom, rms, fac_decays) = self.0.decays();
        let cfg = self.0.config();
        let g = g.clamp(-1000f32, 1000f32)?;
        fold(m, mom, &g)?;
        let g2 = g.sqr()?;
        fold(std::slice::from_mut(v), rms, &g2)?;
        let FactoredFeatures { fac_g, stats, stat_rsqrt, pre_m } = factored_features(fac, fac_decays, &g, &g2.affine(1.0, 1e-30)?, m, true)?;
        let rs = v.affine(1.0, 1e-8)?.sqrt()?.recip()?;
        let mut f = vec![g.clone(), g.clamp(-0.1f32, 0.1f32)?, value(w)];
        f.extend(m.iter().cloned());
        f.push(v.clone());
        for mj in m.iter() {
            f.push(mj.mul(&rs)?);
        }
        f.push(rs.clone());
        f.extend(fac_g);
        f.push(g.mul(&rs)?);
        f.extend(stats);
        f.extend(stat_rsqrt);
        f.extend(pre_m);
        let dims = w.dims().to_vec();
        let (r, c) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let n = w.elem_count();
        let x = normalise(&Tensor::stack(&f, D::Minus1)?.reshape((n / (r * c), r * c, FEATURES))?)?.reshape((n, FEATURES))?;
        let [w0, b0, w1, b1, w2, b2] = weights;
        let h1 = x.matmul(w0)?.broadcast_add(b0)?.relu()?;
        let h2 = h1.matmul(w1)?.broadcast_add(b1)?.relu()?;
        let o = h2.matmul(w2)?.broadcast_add(b2)?;
        let raw = o.narrow(1, 0, 1)?.mul(&times(&o.narrow(1, 1, 1)?, cfg.exp_mult)?.exp()?)?;
        let step = newton_schulz(&raw.reshape((n / (r * c), r, c))?, cfg.ns.0, cfg.ns.1)?;
        let step = normalise(&step.reshape((n / (r * c), r * c, 1))?)?;
        times(&step, cfg.rmsmult)?.reshape(dims)
    }
}

impl DeviceRule for Celo2OnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::celo2::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let mut tensors = Vec::new();
        for (p, r) in params.iter().zip(&self.1) {
            let z = || p.as_tensor().zeros_like();
            tensors.push(match r {
                Route::Learned => TensorState::Learned { m: vec![z()?, z()?, z()?], v: z()?, fac: Factored::zeros(p.as_tensor(), 3)? },
                Route::AdamW => TensorState::AdamW { m: z()?, v: z()? },
            });
        }
        let weights = match params.first() {
            Some(p) => Some(self.upload(p.device())?),
            None => None,
        };
        Ok(State { tensors, count: 0, weights })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let Some(weights) = s.weights.clone() else { return Ok(()) };
        s.count += 1;
        let cfg = self.0.config();
        for ((w, g), st) in params.iter().zip(grads).zip(s.tensors.iter_mut()) {
            let new = match st {
                TensorState::Learned { .. } => {
                    let step = self.learned_step(w, g, st, &weights)?;
                    let old = value(w);
                    ((&old - times(&step, cfg.lr)?)? - times(&times(&old, cfg.wd)?, cfg.lr)?)?
                }
                TensorState::AdamW { m, v } => {
                    let (b1, b2) = cfg.adam_betas;
                    let (c1, c2) = (1.0 - b1.powf(s.count as f32), 1.0 - b2.powf(s.count as f32));
                    *m = (times(g, 1.0 - b1)? + times(m, b1)?)?;
                    *v = (times(&g.sqr()?, 1.0 - b2)? + times(v, b2)?)?;
                    let dev = g.device();
                    let m_hat = m.broadcast_div(&Tensor::new(c1, dev)?)?;
                    let v_hat = v.broadcast_div(&Tensor::new(c2, dev)?)?;
                    let old = value(w);
                    let u = ((m_hat / v_hat.sqrt()?.affine(1.0, f64::from(cfg.adam_eps))?)? + times(&old, cfg.wd)?)?;
                    (&old + times(&u, -cfg.lr)?)?
                }
            };
            w.set(&new)?;
        }
        Ok(())
    }
}
