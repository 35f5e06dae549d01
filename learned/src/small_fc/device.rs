//! small_fc_lopt on device tensors: one fused step per tensor (`beatmatch_device::lopt`, PyLO's
//! passes from one C source): pass 0 folds the gradient's squares into the factored row and
//! column statistics and takes their factors; pass 1 folds the momenta, the second moment and
//! (rank < 2) the diagonal statistics and sums the 28 features' squares; pass 2 normalises them
//! through the per-parameter MLP (`crate::small_fc`) to the step. On the CPU device the host
//! rule's bits.

use crate::device_net::fused_net;
use crate::small_fc::SmallFcNet;
use beatmatch_core::StepContext;
use beatmatch_device::lopt::{self, LoptConsts, LoptKernel};
use beatmatch_device::DeviceRule;
use candle_core::{Tensor, Var};

/// small_fc_lopt bound to its theta (one member).
pub struct SmallFcOnDevice(pub SmallFcNet);

/// Per tensor its state as `kernels/lopt.h` lays it out for small_fc (momenta, second moment,
/// then the diagonal or the factored statistics), and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// One vector per parameter tensor.
    pub tensors: Vec<Tensor>,
    /// Steps taken.
    pub iteration: u32,
}

impl SmallFcOnDevice {
    /// The step's scalars: the decays in the kernel's order (momenta, second moment, factored).
    fn consts(&self) -> LoptConsts {
        let cfg = self.0.config();
        let (mom, rms, fac) = self.0.decays();
        LoptConsts::new(cfg.exp_mult, cfg.step_mult, &[mom, rms, fac].concat())
    }
}

impl DeviceRule for SmallFcOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::small_fc::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let tensors = params.iter().map(|p| lopt::zeros(LoptKernel::SmallFc, p)).collect::<candle_core::Result<_>>()?;
        Ok(State { tensors, iteration: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let (net, k) = (fused_net(LoptKernel::SmallFc, self.0.net(), Some(s.iteration))?, self.consts());
        for ((w, g), st) in params.iter().zip(grads).zip(s.tensors.iter_mut()) {
            *st = lopt::step(k, w, g, st, &net)?;
        }
        s.iteration += 1;
        Ok(())
    }
}
