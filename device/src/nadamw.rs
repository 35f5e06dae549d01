//! NAdamW with its cosine schedule as a fused device step (`kernels/rules.h`), rounding as
//! `beatmatch_baselines::nadamw` does (the schedule's learning rate is the host's).

use crate::fused::{Consts, FusedRule, Kernel};
use beatmatch_baselines::nadamw::NAdamWParams;
use beatmatch_core::StepContext;

/// NAdamW (one member).
pub struct NAdamW(pub NAdamWParams);

impl FusedRule for NAdamW {
    const KERNEL: Kernel = Kernel::NAdamW;
    const NAME: &'static str = "nadamw";
    fn consts(&self, steps: u64, ctx: &StepContext<'_>) -> Consts {
        let p = &self.0;
        let (b1, b2) = (p.b1 as f32, p.b2 as f32);
        let lr_t = p.step_size(steps, ctx.num_steps);
        Consts::of(&[p.l2_wd as f32, b1, 1.0 - b1, b2, 1.0 - b2, lr_t, p.eps as f32, lr_t * p.adamw_wd as f32, f32::from(u8::from(p.nesterov))])
    }
}
