//! VeLO on device tensors. The per-parameter part — clipped gradients, accumulators, the 30
//! features, the normaliser, each tensor's MLP and the step — runs on the device; the
//! per-tensor part — the loss buffer, the mix layers and LSTM over the batch of tensors, and
//! interpolating each tensor's MLP from the bank of 256 — runs on the host, in
//! `crate::velo`'s own (reference-checked) code. Per step 8 statistics per tensor
//! come down (one transfer) and each tensor's interpolated MLP (178 floats) goes up; no
//! parameter crosses. The host takes the per-tensor part because its batch is the handful of
//! tensors: matrix–vector work over 10 MB of LSTM weights, which the host's tiled kernel
//! streams once per step, against a round trip of a few hundred floats.

use crate::device_factored::{factored_features, Factored, FactoredFeatures};
use crate::device_net::{fold, step, DeviceNet};
use crate::features::StepRule;
use crate::velo::{rnn_features_from, LossBuffer, TensorStats, VeloNet, RNN_INPUTS};
use beatmatch_core::StepContext;
use beatmatch_device::{value, DeviceRule};
use candle_core::{DType, Tensor, Var};

/// VeLO bound to its theta (one member).
pub struct VeloOnDevice(pub VeloNet);

/// Accumulators per tensor (on the device), the LSTM state and the loss buffer (on the
/// host), and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// Momenta per tensor.
    pub m: Vec<Vec<Tensor>>,
    /// Second moment per tensor.
    pub v: Vec<Vec<Tensor>>,
    /// Factored statistics per tensor.
    pub fac: Vec<Factored>,
    hidden: Vec<Vec<f32>>,
    cell: Vec<Vec<f32>>,
    loss_buffer: Option<LossBuffer>,
    /// Steps taken.
    pub iteration: u32,
}

/// Mean of `x` over the whole tensor, summed in f64, rounded to f32: a 0-d tensor.
pub(crate) fn mean_all_f64(x: &Tensor) -> candle_core::Result<Tensor> {
    let n = Tensor::new(x.elem_count() as f64, x.device())?;
    x.to_dtype(DType::F64)?.sum_all()?.broadcast_div(&n)?.to_dtype(DType::F32)
}

/// One tensor's `[mean p², mean rms·norm, var_m (3), var_rms (3)]` from its old parameters and
/// accumulators, as `crate::velo::rnn_features` reduces them on the host.
fn statistics(p: &Tensor, m: &[Tensor], rms: &Tensor) -> candle_core::Result<Tensor> {
    let mean_sq = mean_all_f64(&p.sqr()?)?;
    let norm = mean_sq.maximum(1e-9f32)?.sqrt()?.recip()?;
    let sm: Vec<Tensor> = m.iter().map(|x| x.broadcast_mul(&norm)).collect::<candle_core::Result<_>>()?;
    let sr = rms.broadcast_mul(&norm)?;
    let mu: Vec<Tensor> = sm.iter().map(mean_all_f64).collect::<candle_core::Result<_>>()?;
    let mut out = vec![mean_sq, mean_all_f64(&sr)?];
    for (s, u) in sm.iter().zip(&mu) {
        out.push(mean_all_f64(&s.broadcast_sub(u)?.sqr()?)?);
    }
    for u in &mu {
        out.push(mean_all_f64(&sr.broadcast_sub(u)?.sqr()?)?);
    }
    Tensor::stack(&out, 0)
}

impl DeviceRule for VeloOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::velo::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let (mom, rms, fac) = self.0.decays();
        let zeros = |p: &Var, k: usize| (0..k).map(|_| p.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>();
        let (h0, c0) = self.0.initial_state();
        let mut st = State { m: Vec::new(), v: Vec::new(), fac: Vec::new(), hidden: Vec::new(), cell: Vec::new(), loss_buffer: None, iteration: 0 };
        for p in params {
            st.m.push(zeros(p, mom.len())?);
            st.v.push(zeros(p, rms.len())?);
            st.fac.push(Factored::zeros(p.as_tensor(), fac.len())?);
            st.hidden.push(h0.to_vec());
            st.cell.push(c0.to_vec());
        }
        Ok(st)
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let Some(first) = params.first() else { return Ok(()) };
        let dev = first.device().clone();
        let (mom, rms, fac) = self.0.decays();
        let cfg = self.0.config();
        let num_steps = ctx.num_steps.max(1);
        let buffer = s.loss_buffer.get_or_insert_with(|| LossBuffer::new(num_steps));
        buffer.update(ctx.loss(0));
        let loss_features = buffer.features();
        let fraction_trained = s.iteration as f32 / num_steps as f32;
        let grads: Vec<Tensor> = grads.iter().map(|g| g.clamp(-1000f32, 1000f32)).collect::<candle_core::Result<_>>()?;
        let olds: Vec<Tensor> = params.iter().map(value).collect();

        // The old state's per-tensor statistics, down in one transfer; the LSTM on the host.
        let per_tensor: Vec<Tensor> = olds.iter().zip(&s.m).zip(&s.v).map(|((p, m), v)| statistics(p, m, &v[0])).collect::<candle_core::Result<_>>()?;
        let per_tensor: Vec<Vec<f32>> = Tensor::stack(&per_tensor, 0)?.to_vec2()?;
        let inputs: Vec<[f32; RNN_INPUTS]> = per_tensor
            .iter()
            .zip(params)
            .map(|(t, p)| {
                rnn_features_from(
                    &TensorStats { mean_rms: t[1], var_m: [t[2], t[3], t[4]], var_rms: [t[5], t[6], t[7]] },
                    p.dims(),
                    fraction_trained,
                    &loss_features,
                )
            })
            .collect();
        let (controls, lr_mult) = self.0.lstm(&mut s.hidden, &mut s.cell, &inputs);

        for (i, (w, g)) in params.iter().zip(&grads).enumerate() {
            let net = DeviceNet::upload(&self.0.interpolate(&controls[i]), 0, &dev)?;
            let param_scale = (per_tensor[i][0] + 1e-9).sqrt();
            let rule = StepRule::Velo { exp_mult: cfg.exp_mult, step_mult: cfg.step_mult, param_scale, lr_mult: lr_mult[i] };
            let acc = Accumulators { m: &mut s.m[i], v: &mut s.v[i], fac: &mut s.fac[i] };
            per_parameter_step(acc, (mom, rms, fac), w, g, &olds[i], &net, rule)?;
        }
        s.iteration += 1;
        Ok(())
    }
}

/// One tensor's accumulators on the device: momenta, second moment, factored statistics.
pub(crate) struct Accumulators<'a> {
    pub(crate) m: &'a mut Vec<Tensor>,
    pub(crate) v: &'a mut Vec<Tensor>,
    pub(crate) fac: &'a mut Factored,
}

/// VeLO's per-parameter part for one tensor (Celo's too): fold the clipped gradient `g` into
/// the accumulators (momentum, second-moment and factored `decays`), build the 30 features
/// from them and the old parameters `old`, and write `w − step` through `net` and `rule`.
pub(crate) fn per_parameter_step(
    acc: Accumulators<'_>,
    decays: (&[f32], &[f32], &[f32]),
    w: &Var,
    g: &Tensor,
    old: &Tensor,
    net: &DeviceNet,
    rule: StepRule,
) -> candle_core::Result<()> {
    let (mom, rms, fac) = decays;
    let (m, v) = (acc.m, acc.v);
    fold(m, mom, g)?;
    let g2 = g.sqr()?;
    fold(v, rms, &g2)?;
    let FactoredFeatures { fac_g, stats, stat_rsqrt, pre_m } = factored_features(acc.fac, fac, g, &g2.affine(1.0, 1e-30)?, m, true)?;
    let rs = v[0].affine(1.0, 1e-6)?.sqrt()?.recip()?;
    let mut features = vec![g.clone(), g.clamp(-0.1f32, 0.1f32)?, old.clone()];
    features.extend(m.iter().cloned());
    features.push(v[0].clone());
    for mj in m.iter() {
        features.push(mj.mul(&rs)?);
    }
    features.push(rs.clone());
    features.extend(fac_g);
    features.push(g.mul(&rs)?);
    features.extend(stats);
    features.extend(stat_rsqrt);
    features.extend(pre_m);
    step(w, &features, net, None, rule)
}
