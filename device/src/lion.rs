//! Lion as a fused device step (`kernels/rules.h`), rounding as `beatmatch_baselines::lion`
//! does.

use crate::fused::{Consts, FusedRule, Kernel};
use beatmatch_baselines::lion::LionHp;
use beatmatch_core::StepContext;

/// Lion (one member).
pub struct Lion(pub LionHp);

impl FusedRule for Lion {
    const KERNEL: Kernel = Kernel::Lion;
    const NAME: &'static str = "lion";
    fn consts(&self, _steps: u64, _ctx: &StepContext<'_>) -> Consts {
        let h = self.0;
        Consts::of(&[(1.0 - h.b1) as f32, h.b1 as f32, h.wd as f32, -(h.lr as f32), (1.0 - h.b2) as f32, h.b2 as f32])
    }
}
