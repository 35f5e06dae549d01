//! MLP-LOpt on device tensors: one fused step per tensor (`beatmatch_device::lopt`, PyLO's two
//! passes from one C source): six momenta, and the gradient, the parameter and the momenta
//! normalised over the tensor through the per-parameter MLP (`crate::mlp_lopt`). On the CPU
//! device the host rule's bits.

use crate::accum::tanh_embedding;
use crate::mlp_lopt::{decays, MlpLoptNet};
use beatmatch_core::StepContext;
use beatmatch_device::lopt::{self, LoptConsts, LoptKernel};
use beatmatch_device::DeviceRule;
use candle_core::{DType, Tensor, Var};

/// MLP-LOpt bound to its theta (one member).
pub struct MlpLoptOnDevice(pub MlpLoptNet);

/// Momenta per tensor (`[6, n]`, decay-major), and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// `m[tensor]`, `[decays, numel]`.
    pub m: Vec<Tensor>,
    /// Steps taken.
    pub iteration: u32,
}

impl MlpLoptOnDevice {
    /// The kernel's network array at step `iteration`: the embedding folded into the first
    /// bias as the host rule folds it, then every layer's weights and biases.
    fn net_at(&self, iteration: u32) -> Vec<f32> {
        let net = self.0.net().with_constant_tail(&tanh_embedding(iteration as f32));
        net.layers.iter().flat_map(|(w, b, _, _)| w.iter().chain(b)).copied().collect()
    }

    fn consts(&self) -> LoptConsts {
        let cfg = self.0.config();
        let mut k = LoptConsts { exp_mult: cfg.exp_mult, step_mult: cfg.step_mult, ..LoptConsts::default() };
        k.decays.copy_from_slice(decays());
        k
    }
}

impl DeviceRule for MlpLoptOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::mlp_lopt::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let slots = LoptKernel::MlpLopt.slots();
        let m = params.iter().map(|p| Tensor::zeros((slots, p.elem_count()), DType::F32, p.device())).collect::<candle_core::Result<_>>()?;
        Ok(State { m, iteration: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let (net, k) = (self.net_at(s.iteration), self.consts());
        for ((w, g), m) in params.iter().zip(grads).zip(s.m.iter_mut()) {
            *m = lopt::step(LoptKernel::MlpLopt, k, w, g, m, &net)?;
        }
        s.iteration += 1;
        Ok(())
    }
}
