//! MLP-LOpt on device tensors: one fused step per tensor (`beatmatch_device::lopt`, PyLO's two
//! passes from one C source): six momenta, and the gradient, the parameter and the momenta
//! normalised over the tensor through the per-parameter MLP (`crate::mlp_lopt`). On the CPU
//! device the host rule's bits.

use crate::device_net::fused_net;
use crate::mlp_lopt::{decays, MlpLoptNet};
use beatmatch_core::StepContext;
use beatmatch_device::lopt::{self, LoptConsts, LoptKernel};
use beatmatch_device::DeviceRule;
use candle_core::{Tensor, Var};

/// MLP-LOpt bound to its theta (one member).
pub struct MlpLoptOnDevice(pub MlpLoptNet);

/// Momenta per tensor (6 · n values, decay-major), and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// `m[tensor]`, `[decays · numel]`.
    pub m: Vec<Tensor>,
    /// Steps taken.
    pub iteration: u32,
}

impl MlpLoptOnDevice {
    fn consts(&self) -> LoptConsts {
        let cfg = self.0.config();
        LoptConsts::new(cfg.exp_mult, cfg.step_mult, decays())
    }
}

impl DeviceRule for MlpLoptOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::mlp_lopt::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let m = params.iter().map(|p| lopt::zeros(LoptKernel::MlpLopt, p)).collect::<candle_core::Result<_>>()?;
        Ok(State { m, iteration: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let (net, k) = (fused_net(LoptKernel::MlpLopt, self.0.net(), Some(s.iteration))?, self.consts());
        for ((w, g), m) in params.iter().zip(grads).zip(s.m.iter_mut()) {
            *m = lopt::step(k, w, g, m, &net)?;
        }
        s.iteration += 1;
        Ok(())
    }
}
