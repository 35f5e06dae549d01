//! Adam and AdamW as fused device steps (`kernels/rules.h`), rounding as
//! `beatmatch_baselines::adam` does.

use crate::fused::{Consts, FusedRule, Kernel};
use beatmatch_baselines::adam::{AdamHp, MomentHp};
use beatmatch_baselines::adamw::AdamWHp;
use beatmatch_core::StepContext;

/// The constants Adam and AdamW share for step `steps + 1`: `{1-b1, b1, 1-b2, b2, 1-b1^t,
/// 1-b2^t, eps, -lr}` (the bias corrections in f32 as the host takes them).
fn moments(hp: &MomentHp, lr: f32, steps: u64) -> [f32; 8] {
    let (c1, c2) = hp.bias_corrections((steps + 1) as i32);
    [hp.one_minus_b1, hp.b1, hp.one_minus_b2, hp.b2, c1, c2, hp.eps, -lr]
}

/// Adam (one member).
pub struct Adam {
    moments: MomentHp,
    lr: f32,
}

impl Adam {
    /// Adam with `hp`.
    pub fn new(hp: AdamHp) -> Self {
        Self { moments: MomentHp::new(hp.b1, hp.b2, hp.eps), lr: hp.lr as f32 }
    }
}

impl FusedRule for Adam {
    const KERNEL: Kernel = Kernel::Adam;
    const NAME: &'static str = "adam";
    fn consts(&self, steps: u64, _ctx: &StepContext<'_>) -> Consts {
        Consts::of(&moments(&self.moments, self.lr, steps))
    }
}

/// AdamW (one member): Adam's direction plus decoupled weight decay.
pub struct AdamW {
    moments: MomentHp,
    lr: f32,
    wd: f32,
}

impl AdamW {
    /// AdamW with `hp`.
    pub fn new(hp: AdamWHp) -> Self {
        Self { moments: MomentHp::new(hp.b1, hp.b2, hp.eps), lr: hp.lr as f32, wd: hp.wd as f32 }
    }
}

impl FusedRule for AdamW {
    const KERNEL: Kernel = Kernel::AdamW;
    const NAME: &'static str = "adamw";
    fn consts(&self, steps: u64, _ctx: &StepContext<'_>) -> Consts {
        let mut c = Consts::of(&moments(&self.moments, self.lr, steps));
        c.0[8] = self.wd;
        c
    }
}
