//! MLP-LOpt on device tensors: six momenta, and the gradient, the parameter and the momenta
//! normalised over the tensor through the per-parameter MLP (`crate::mlp_lopt`).

use crate::device_net::{fold, step, DeviceNet, EMBEDDING};
use crate::features::StepRule;
use crate::mlp_lopt::{decays, MlpLoptNet};
use beatmatch_core::StepContext;
use beatmatch_device::{value, DeviceRule};
use candle_core::{Tensor, Var};

/// MLP-LOpt bound to its theta (one member).
pub struct MlpLoptOnDevice(pub MlpLoptNet);

/// Momenta per tensor (six each), the network on the device, and the steps taken.
#[derive(Clone, Debug)]
pub struct State {
    /// `m[tensor][decay]`.
    pub m: Vec<Vec<Tensor>>,
    net: Option<DeviceNet>,
    /// Steps taken.
    pub iteration: u32,
}

impl DeviceRule for MlpLoptOnDevice {
    type State = State;
    fn name(&self) -> &'static str {
        crate::mlp_lopt::ARCH
    }
    fn init(&self, params: &[Var]) -> candle_core::Result<State> {
        let m = params.iter().map(|p| (0..decays().len()).map(|_| p.as_tensor().zeros_like()).collect()).collect::<candle_core::Result<_>>()?;
        let net = params.first().map(|p| DeviceNet::upload(self.0.net(), EMBEDDING, p.device())).transpose()?;
        Ok(State { m, net, iteration: 0 })
    }
    fn update(&self, s: &mut State, params: &[Var], grads: &[Tensor], _ctx: &StepContext<'_>) -> candle_core::Result<()> {
        let Some(net) = &s.net else { return Ok(()) };
        let cfg = self.0.config();
        let b0 = net.first_bias(s.iteration)?;
        for ((w, g), m) in params.iter().zip(grads).zip(s.m.iter_mut()) {
            fold(m, decays(), g)?;
            let mut features = vec![g.clone(), value(w)];
            features.extend(m.iter().cloned());
            step(w, &features, net, Some(&b0), StepRule::Embedded { exp_mult: cfg.exp_mult, step_mult: cfg.step_mult })?;
        }
        s.iteration += 1;
        Ok(())
    }
}
