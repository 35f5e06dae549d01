//! VeLO on device tensors. The per-parameter part — clipped gradients, accumulators, the 30
//! features, the normaliser, each tensor's MLP and the step — runs on the device, one fused
//! step per tensor (`beatmatch_device::lopt`'s `velo` kernel: pass 0 for the factored
//! statistics, then PyLO's two passes; on the CPU device the host rule's operations); the
//! per-tensor part — the loss buffer, the mix layers and LSTM over the batch of tensors, and
//! interpolating each tensor's MLP from the bank of 256 — runs on the host, in
//! `crate::velo`'s own (reference-checked) code. Per step 8 statistics per tensor come down
//! (one transfer) and each tensor's interpolated MLP (154 floats: its unread third output cut)
//! goes up; no parameter crosses. The host takes the per-tensor part because its batch is the handful of
//! tensors: matrix–vector work over 10 MB of LSTM weights, which the host's tiled kernel
//! streams once per step, against a round trip of a few hundred floats.

use crate::device_net::fused_net;
use crate::features::{Mlp, StepRule};
use crate::velo::{rnn_features_from, LossBuffer, TensorStats, VeloNet, RNN_INPUTS};
use beatmatch_core::StepContext;
use beatmatch_device::lopt::{self, LoptConsts, LoptKernel, Net};
use beatmatch_device::{value, DeviceRule};
use candle_core::{Tensor, Var};

/// VeLO bound to its theta (one member).
pub struct VeloOnDevice(pub VeloNet);

/// Accumulators per tensor (on the device, as `kernels/lopt.h` lays them out: momenta, second
/// moment, then the diagonal or the factored statistics), the LSTM state and the loss buffer
/// (on the host), and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// One vector per parameter tensor.
    pub tensors: Vec<Tensor>,
    hidden: Vec<Vec<f32>>,
    cell: Vec<Vec<f32>>,
    loss_buffer: Option<LossBuffer>,
    /// Steps taken.
    pub iteration: u32,
}

/// VeLO's per-parameter step for one tensor (Celo's too), fused: fold the clipped gradient `g`
/// into the kernel state `st` (momentum, second-moment and factored `decays`, in that order),
/// take the 30 features and write `w − step` through `net` (the 30 → h → h → 3 network as
/// [`velo_net`] gives it to the kernel) and `rule` (`StepRule::Velo`).
pub(crate) fn fused_step(st: &mut Tensor, decays: (&[f32], &[f32], &[f32]), w: &Var, g: &Tensor, net: &Net, rule: StepRule) -> candle_core::Result<()> {
    let StepRule::Velo { exp_mult, step_mult, param_scale, lr_mult } = rule else {
        candle_core::bail!("VeLO's fused step takes VeLO's step rule, not {rule:?}")
    };
    let (mom, rms, fac) = decays;
    let k = LoptConsts::new(exp_mult, step_mult, &[mom, rms, fac].concat()).with_velo_step(param_scale, lr_mult);
    *st = lopt::step(k, w, g, st, net)?;
    Ok(())
}

/// A VeLO or Celo network (30 → h → h → 3) as the `velo` kernel reads it: no step embedding,
/// the third output (never read) cut.
pub(crate) fn velo_net(net: &Mlp) -> candle_core::Result<Net> {
    fused_net(LoptKernel::Velo, net, None)
}

impl DeviceRule for VeloOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::velo::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let (h0, c0) = self.0.initial_state();
        let tensors = params.iter().map(|p| lopt::zeros(LoptKernel::Velo, p)).collect::<candle_core::Result<_>>()?;
        Ok(State { tensors, hidden: vec![h0.to_vec(); params.len()], cell: vec![c0.to_vec(); params.len()], loss_buffer: None, iteration: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        let cfg = self.0.config();
        let num_steps = ctx.num_steps.max(1);
        let buffer = s.loss_buffer.get_or_insert_with(|| LossBuffer::new(num_steps));
        buffer.update(ctx.loss(0));
        let loss_features = buffer.features();
        let fraction_trained = s.iteration as f32 / num_steps as f32;
        let grads: Vec<Tensor> = grads.iter().map(|g| g.clamp(-1000f32, 1000f32)).collect::<candle_core::Result<_>>()?;
        let olds: Vec<Tensor> = params.iter().map(value).collect();

        // The old state's per-tensor statistics, down in one transfer; the LSTM on the host.
        let per_tensor: Vec<Tensor> = olds.iter().zip(&s.tensors).map(|(p, st)| lopt::velo_stats(p, st)).collect::<candle_core::Result<_>>()?;
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
            let param_scale = (per_tensor[i][0] + 1e-9).sqrt();
            let rule = StepRule::Velo { exp_mult: cfg.exp_mult, step_mult: cfg.step_mult, param_scale, lr_mult: lr_mult[i] };
            fused_step(&mut s.tensors[i], self.0.decays(), w, g, &velo_net(&self.0.interpolate(&controls[i]))?, rule)?;
        }
        s.iteration += 1;
        Ok(())
    }
}
