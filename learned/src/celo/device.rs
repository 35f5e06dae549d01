//! Celo on device tensors: the per-parameter part (clipped gradients, accumulators, the 30
//! features, the MLP and the step) runs on the device through VeLO's device code; the
//! scheduler (the loss buffer, the 64-wide LSTM on one row) runs on the host in
//! `crate::celo`'s own code. Per step one mean square per tensor comes down and the one MLP
//! (178 floats) goes up.

use crate::celo::scheduler::SchedulerState;
use crate::celo::CeloNet;
use crate::device_factored::Factored;
use crate::device_net::DeviceNet;
use crate::velo::device::{mean_all_f64, per_parameter_step, Accumulators};
use beatmatch_core::StepContext;
use beatmatch_device::{value, DeviceRule};
use candle_core::{Tensor, Var};

/// Celo bound to its theta (one member).
pub struct CeloOnDevice(pub CeloNet);

/// Accumulators per tensor (on the device) and the scheduler's state (on the host).
#[derive(Clone, Debug)]
pub struct State {
    /// Momenta per tensor.
    pub m: Vec<Vec<Tensor>>,
    /// Second moment per tensor.
    pub v: Vec<Vec<Tensor>>,
    /// Factored statistics per tensor.
    pub fac: Vec<Factored>,
    sched: SchedulerState,
}

impl DeviceRule for CeloOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::celo::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let (mom, rms, fac) = self.0.decays();
        let zeros = |p: &Var, k: usize| (0..k).map(|_| p.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>();
        let mut st = State { m: Vec::new(), v: Vec::new(), fac: Vec::new(), sched: SchedulerState::default() };
        for p in params {
            st.m.push(zeros(p, mom.len())?);
            st.v.push(zeros(p, rms.len())?);
            st.fac.push(Factored::zeros(p.as_tensor(), fac.len())?);
        }
        Ok(st)
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let Some(first) = params.first() else { return Ok(()) };
        let dev = first.device().clone();
        let schedule = self.0.scheduler().step(&mut s.sched, ctx.loss(0), ctx.num_steps);
        let grads: Vec<Tensor> = grads.iter().map(|g| g.clamp(-1000f32, 1000f32)).collect::<candle_core::Result<_>>()?;
        let olds: Vec<Tensor> = params.iter().map(value).collect();
        // Each tensor's mean square (an f64 sum, as the host's), down in one transfer.
        let mean_sq: Vec<Tensor> = olds.iter().map(|p| mean_all_f64(&p.sqr()?)).collect::<candle_core::Result<_>>()?;
        let mean_sq: Vec<f32> = Tensor::stack(&mean_sq, 0)?.to_vec1()?;
        let net = DeviceNet::upload(&self.0.interpolate(&schedule.controls), 0, &dev)?;
        for (i, (w, g)) in params.iter().zip(&grads).enumerate() {
            let acc = Accumulators { m: &mut s.m[i], v: &mut s.v[i], fac: &mut s.fac[i] };
            per_parameter_step(acc, self.0.decays(), w, g, &olds[i], &net, self.0.rule(&schedule, mean_sq[i]))?;
        }
        Ok(())
    }
}
