//! Celo on device tensors: the per-parameter part (clipped gradients, accumulators, the 30
//! features, the MLP and the step) runs on the device through VeLO's fused kernel; the
//! scheduler (the loss buffer, the 64-wide LSTM on one row) runs on the host in
//! `crate::celo`'s own code. Per step one mean square per tensor comes down and the one MLP
//! (154 floats) goes up.

use crate::celo::scheduler::SchedulerState;
use crate::celo::CeloNet;
use crate::velo::device::{fused_step, velo_net};
use beatmatch_core::StepContext;
use beatmatch_device::lopt::{self, LoptKernel};
use beatmatch_device::{value, DeviceRule};
use candle_core::{Tensor, Var};

/// Celo bound to its theta (one member).
pub struct CeloOnDevice(pub CeloNet);

/// Accumulators per tensor (on the device, in the `velo` kernel's layout) and the scheduler's
/// state (on the host).
#[derive(Clone, Debug)]
pub struct State {
    /// One vector per parameter tensor.
    pub tensors: Vec<Tensor>,
    sched: SchedulerState,
}

impl DeviceRule for CeloOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::celo::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let tensors = params.iter().map(|p| lopt::zeros(LoptKernel::Velo, p)).collect::<candle_core::Result<_>>()?;
        Ok(State { tensors, sched: SchedulerState::default() })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        let schedule = self.0.scheduler().step(&mut s.sched, ctx.loss(0), ctx.num_steps);
        let grads: Vec<Tensor> = grads.iter().map(|g| g.clamp(-1000f32, 1000f32)).collect::<candle_core::Result<_>>()?;
        let olds: Vec<Tensor> = params.iter().map(value).collect();
        // Each tensor's mean square (VeLO's first statistic: the host's summation tree), down in
        // one transfer.
        let mean_sq: Vec<Tensor> = olds.iter().zip(&s.tensors).map(|(p, st)| lopt::velo_stats(p, st)?.narrow(0, 0, 1)).collect::<candle_core::Result<_>>()?;
        let mean_sq: Vec<f32> = Tensor::cat(&mean_sq, 0)?.to_vec1()?;
        let net = velo_net(&self.0.interpolate(&schedule.controls))?;
        for (i, (w, g)) in params.iter().zip(&grads).enumerate() {
            fused_step(&mut s.tensors[i], self.0.decays(), w, g, &net, self.0.rule(&schedule, mean_sq[i]))?;
        }
        Ok(())
    }
}
