//! RMSProp (no momentum, not centred) as a fused device step (`kernels/rules.h`), rounding
//! as `beatmatch_baselines::rmsprop` does.

use crate::fused::{Consts, FusedRule, Kernel};
use beatmatch_core::StepContext;

/// RMSProp (one member).
pub struct RmsProp {
    lr: f32,
    decay: f32,
    one_minus_decay: f32,
    eps: f32,
}

impl RmsProp {
    /// RMSProp with (lr, decay, eps).
    pub fn new((lr, decay, eps): (f64, f64, f64)) -> Self {
        Self { lr: lr as f32, decay: decay as f32, one_minus_decay: (1.0 - decay) as f32, eps: eps as f32 }
    }
}

impl FusedRule for RmsProp {
    const KERNEL: Kernel = Kernel::RmsProp;
    const NAME: &'static str = "rmsprop";
    fn consts(&self, _steps: u64, _ctx: &StepContext<'_>) -> Consts {
        Consts::of(&[self.one_minus_decay, self.decay, self.eps, -self.lr])
    }
}
