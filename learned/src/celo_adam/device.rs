//! Celo-Adam on device tensors: Adam's moments and step on the device, element-wise as the
//! host rule computes them; the scheduler on the host (nothing per tensor comes down).

use crate::celo::scheduler::SchedulerState;
use crate::celo_adam::{AdamScalars, CeloAdamNet, EPS};
use crate::device_net::fold;
use beatmatch_core::StepContext;
use beatmatch_device::{value, DeviceRule};
use candle_core::{Tensor, Var};

/// Celo-Adam bound to its theta (one member).
pub struct CeloAdamOnDevice(pub CeloAdamNet);

/// Adam's moments per tensor (on the device) and the scheduler's state (on the host).
#[derive(Clone, Debug)]
pub struct State {
    /// First moment per tensor.
    pub m: Vec<Tensor>,
    /// Second moment per tensor.
    pub v: Vec<Tensor>,
    sched: SchedulerState,
}

impl DeviceRule for CeloAdamOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::celo_adam::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        Ok(State {
            m: params.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            v: params.iter().map(zeros).collect::<candle_core::Result<_>>()?,
            sched: SchedulerState::default(),
        })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let Some(first) = params.first() else { return Ok(()) };
        let dev = first.device().clone();
        let schedule = self.0.scheduler().step(&mut s.sched, ctx.loss(0), ctx.num_steps);
        let sc = AdamScalars::at(s.sched.iteration, schedule.lr_mult);
        let scalar = |x: f32| Tensor::new(x, &dev);
        let (c1, c2, lr) = (scalar(sc.c1)?, scalar(sc.c2)?, scalar(sc.lr * 1.0)?);
        let (mom, rms) = self.0.decays();
        for (i, (w, g)) in params.iter().zip(grads).enumerate() {
            let g = g.clamp(-1000f32, 1000f32)?;
            fold(std::slice::from_mut(&mut s.m[i]), mom, &g)?;
            fold(std::slice::from_mut(&mut s.v[i]), rms, &g.sqr()?)?;
            let m_hat = s.m[i].broadcast_div(&c1)?;
            let v_hat = s.v[i].broadcast_div(&c2)?;
            let denom = (v_hat + 1e-10)?.sqrt()?.affine(1.0, f64::from(EPS))?;
            let step = (m_hat * lr.broadcast_div(&denom)?)?;
            w.set(&(value(w) - step)?)?;
        }
        Ok(())
    }
}
