//! SGD with heavy-ball or Nesterov momentum as a fused device step (`kernels/rules.h`),
//! rounding as `beatmatch_baselines::sgd` does.

use crate::fused::{Consts, FusedRule, Kernel};
use beatmatch_baselines::sgd::SgdParams;
use beatmatch_core::StepContext;

/// SGD with momentum (one member).
pub struct Sgd(pub SgdParams);

impl FusedRule for Sgd {
    const KERNEL: Kernel = Kernel::Sgd;
    const NAME: &'static str = "sgdm";
    fn consts(&self, _steps: u64, _ctx: &StepContext<'_>) -> Consts {
        Consts::of(&[self.0.momentum as f32, self.0.lr as f32, f32::from(u8::from(self.0.nesterov))])
    }
}
