//! SOAP on device tensors: the moments, the factors and the eigenbases stay on the device,
//! and every projection and outer product is a candle matrix product there, rounding where
//! the host rule rounds. The eigendecompositions (at the first step) and the QR refreshes
//! (every `precondition_frequency` steps) copy the factor and basis to the host for
//! [`super::basis`]'s `faer` calls and upload the result: candle has no `eigh` or QR, and
//! those run once per refresh, not per step.

use super::basis::{self, Factors};
use super::{Member, NAME};
use beatmatch_core::StepContext;
use beatmatch_device::{times, value, DeviceRule};
use candle_core::{Device, Tensor, Var};

/// SOAP (one member): its constants and how it preconditions each tensor.
pub struct SoapOnDevice {
    pub(crate) member: Member,
    pub(crate) factors: Vec<Factors>,
}

/// One tensor's state on the device.
#[derive(Clone, Debug)]
pub struct TensorState {
    /// First moment, in the eigenbasis, flat.
    pub m: Tensor,
    /// Second moment, in the eigenbasis, flat.
    pub v: Tensor,
    /// Factors per axis, `d × d`.
    pub gg: Vec<Option<Tensor>>,
    /// Eigenbases per axis, `d × d`.
    pub q: Vec<Option<Tensor>>,
}

/// Every tensor's state and the calls so far.
#[derive(Clone, Debug)]
pub struct State {
    /// Per tensor.
    pub tensors: Vec<TensorState>,
    /// Calls so far (the first builds the preconditioner only).
    pub calls: u32,
}

/// [`basis::project`] on the device: `x` flat, laid out as `f.dims`.
fn project(x: &Tensor, f: &Factors, q: &[Option<Tensor>], back: bool) -> candle_core::Result<Tensor> {
    let n = f.numel();
    let mut x = x.clone();
    for (&d, q) in f.dims.iter().zip(q) {
        let xt = x.reshape((d, n / d.max(1)))?.t()?;
        x = match q {
            Some(q) => xt.matmul(&if back { q.t()? } else { q.clone() })?,
            None => xt.contiguous()?,
        };
    }
    x.flatten_all()
}

/// [`basis::accumulate`] on the device.
fn accumulate(g: &Tensor, f: &Factors, gg: &mut [Option<Tensor>], w: f32) -> candle_core::Result<()> {
    let n = f.numel();
    let mut before = 1;
    for (&d, gg) in f.dims.iter().zip(gg.iter_mut()) {
        if let Some(a) = gg {
            let rows = g.reshape((before, n / before))?.t()?.contiguous()?.reshape((d, n / d))?;
            let outer = rows.matmul(&rows.t()?)?;
            *a = if w.abs() < 0.5 { (&*a + times(&(&outer - &*a)?, w)?)? } else { (&outer - times(&(&outer - &*a)?, 1.0 - w)?)? };
        }
        before *= d;
    }
    Ok(())
}

fn host(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1()
}

fn upload(v: Vec<f32>, d: usize, dev: &Device) -> candle_core::Result<Tensor> {
    Tensor::from_vec(v, (d, d), dev)
}

impl SoapOnDevice {
    fn start(&self, st: &mut TensorState, f: &Factors, g: &Tensor) -> candle_core::Result<()> {
        accumulate(g, f, &mut st.gg, self.member.lerp_weight())?;
        st.q = st
            .gg
            .iter()
            .zip(&f.dims)
            .map(|(gg, &d)| gg.as_ref().map(|gg| upload(basis::eigenbasis(&host(gg)?, d), d, gg.device())).transpose())
            .collect::<candle_core::Result<_>>()?;
        Ok(())
    }

    fn update_one(&self, st: &mut TensorState, f: &Factors, t: u32, w: &Var, g: &Tensor) -> candle_core::Result<()> {
        let c = &self.member;
        let g = g.flatten_all()?;
        let gp = project(&g, f, &st.q, false)?;
        st.m = (times(&st.m, c.b1 as f32)? + times(&gp, (1.0 - c.b1) as f32)?)?;
        st.v = (times(&st.v, c.b2 as f32)? + times(&gp.sqr()?, (1.0 - c.b2) as f32)?)?;
        let direction = st.m.div(&st.v.sqrt()?.affine(1.0, f64::from(c.eps))?)?;
        let mut u = project(&direction, f, &st.q, true)?;
        if c.normalize {
            let n = f.numel().max(1) as f64;
            let mean_sq = u.to_dtype(candle_core::DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()? / n;
            u = u.broadcast_div(&Tensor::new((1e-30 + mean_sq.sqrt()) as f32, u.device())?)?;
        }
        let p = value(w).flatten_all()?;
        let mut p = (&p + times(&u, -c.step_size(t))?)?;
        if c.wd > 0.0 {
            p = (&p + times(&p, (-c.lr * c.wd) as f32)?)?;
        }
        w.set(&p.reshape(w.shape())?)?;
        // The preconditioner, as the host rule's `precondition`.
        accumulate(&g, f, &mut st.gg, c.lerp_weight())?;
        if c.refreshes(t) {
            st.m = project(&st.m, f, &st.q, true)?;
            let dev = g.device();
            let mut v = host(&st.v)?;
            let mut s = basis::Scratch::default();
            for axis in 0..f.dims.len() {
                if let (Some(gg), Some(o)) = (&st.gg[axis], &st.q[axis]) {
                    let q = basis::refresh(&host(gg)?, &host(o)?, f, axis, &mut v, &mut s);
                    st.q[axis] = Some(upload(q, f.dims[axis], dev)?);
                }
            }
            st.v = Tensor::from_vec(v, f.numel(), dev)?;
            st.m = project(&st.m, f, &st.q, false)?;
        }
        Ok(())
    }
}

impl DeviceRule for SoapOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        NAME
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let tensors = params
            .iter()
            .zip(&self.factors)
            .map(|(p, f)| {
                let (dev, n) = (p.device(), f.numel());
                let gg = f
                    .dims
                    .iter()
                    .zip(&f.preconditioned)
                    .map(|(&d, &on)| on.then(|| Tensor::zeros((d, d), candle_core::DType::F32, dev)).transpose())
                    .collect::<candle_core::Result<_>>()?;
                Ok(TensorState { m: Tensor::zeros(n, candle_core::DType::F32, dev)?, v: Tensor::zeros(n, candle_core::DType::F32, dev)?, gg, q: Vec::new() })
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(State { tensors, calls: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let t = s.calls;
        s.calls += 1;
        for (((w, g), st), f) in params.iter().zip(grads).zip(&mut s.tensors).zip(&self.factors) {
            if f.numel() == 0 {
                continue;
            }
            if t == 0 {
                self.start(st, f, &g.flatten_all()?)?;
            } else {
                self.update_one(st, f, t, w, g)?;
            }
        }
        Ok(())
    }
}
