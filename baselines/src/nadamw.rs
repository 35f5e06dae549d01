//! NAdamW as learned_optimization's `NAdamW` (Metz et al. 2020, arXiv 2002.11887) with its
//! cosine schedule — the optimizer behind `OptList` (opt_list). Bias correction is folded into
//! the step size, `lr_t = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`, and epsilon is added outside the root:
//! `u = lr_t·m/(√v + ε)` (Nesterov: `m → β₁m + (1−β₁)g`) `+ lr_t·wd·p`; `p ← p − u`.
//! The host rule, the fused device step (`bm_nadamw`, the schedule's learning rate from the
//! host) and the kind's descriptor.

use crate::adam::zeros;
use crate::kind::{bound, Hparam, Kind, Values};
use crate::schedule::Cosine;
use anyhow::{bail, Result};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo, StepContext, UpdateRule};
use beatmatch_device::fused::{Consts, Fused, FusedRule, Kernel};
use candle_core::Device;

/// The kind's name.
pub const NAME: &str = "nadamw";

crate::hyperparameters! {
    /// One NAdamW member's hyperparameters as specs set them (defaults: learned_optimization's
    /// NAdamW; the schedule is constant unless set).
    pub struct NAdamWHp {
        /// Peak learning rate.
        lr: f64 = 1e-4, Positive;
        /// First-moment decay.
        b1: f64 = 0.9, Decay;
        /// Second-moment decay.
        b2: f64 = 0.999, Decay;
        /// Added outside the square root.
        eps: f64 = 1e-8, Epsilon;
        /// Decoupled (AdamW) weight decay, scaled by the step size.
        adamw_wd: f64 = 0.0, Off;
        /// L2 weight decay fed into the moments.
        l2_wd: f64 = 0.0, Off;
        /// Nesterov momentum (0 or 1).
        nesterov: bool = 1.0, Flag;
        /// Fraction of the horizon spent warming up.
        warmup_fraction: f64 = 0.0, Fraction;
        /// Fraction of the horizon at the peak before the cosine decay.
        constant_fraction: f64 = 1.0, Fraction;
        /// Final learning rate as a multiple of the peak.
        min_lr_mult: f64 = 0.0, Fraction;
    }
}

/// NAdamW's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NAdamWParams {
    /// Learning-rate schedule (peak `lr` inside).
    pub schedule: Cosine,
    /// First-moment decay.
    pub b1: f64,
    /// Second-moment decay.
    pub b2: f64,
    /// Added outside the root.
    pub eps: f64,
    /// Decoupled (AdamW) weight decay, scaled by `lr_t`.
    pub adamw_wd: f64,
    /// L2 weight decay fed into the moments (the reference subtracts `p·l2` from the gradient).
    pub l2_wd: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// NAdamW over one or more members.
pub struct NAdamW {
    members: Vec<NAdamWParams>,
}

/// NAdamW's run state.
#[derive(Clone, Debug)]
pub struct NAdamWState {
    /// First moments per tensor (`members × numel`).
    pub m: Vec<Vec<f32>>,
    /// Second moments per tensor.
    pub v: Vec<Vec<f32>>,
    /// Steps taken.
    pub iteration: u64,
}

impl From<NAdamWHp> for NAdamWParams {
    fn from(h: NAdamWHp) -> Self {
        Self {
            schedule: Cosine { lr: h.lr, min_lr_mult: h.min_lr_mult, constant_fraction: h.constant_fraction, warmup_fraction: h.warmup_fraction },
            b1: h.b1,
            b2: h.b2,
            eps: h.eps,
            adamw_wd: h.adamw_wd,
            l2_wd: h.l2_wd,
            nesterov: h.nesterov,
        }
    }
}

impl NAdamWParams {
    /// Whether the schedule is constant, so the rule ignores the horizon.
    pub fn is_constant(&self) -> bool {
        self.schedule.constant_fraction >= 1.0 && self.schedule.warmup_fraction <= 0.0
    }

    /// The schedule's learning rate at `iteration` for horizon `num_steps`.
    pub fn learning_rate(&self, iteration: u64, num_steps: u64) -> f32 {
        // A constant schedule (constant_fraction 1) would divide 0 by 0 in the cosine term.
        if self.is_constant() {
            return self.schedule.lr as f32;
        }
        self.schedule.at(iteration, num_steps)
    }

    /// The bias-corrected step size lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ) at `iteration` (t = iteration +
    /// 1) for horizon `num_steps`, in f32 as every implementation (host, device) takes it.
    pub fn step_size(&self, iteration: u64, num_steps: u64) -> f32 {
        let t = iteration as f32 + 1.0;
        let (b1, b2) = (self.b1 as f32, self.b2 as f32);
        self.learning_rate(iteration, num_steps) * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t))
    }
}

impl NAdamW {
    /// One member per entry of `members`.
    pub fn new(members: &[NAdamWParams]) -> Self {
        Self { members: members.to_vec() }
    }
}

impl UpdateRule for NAdamW {
    type State = NAdamWState;
    fn name(&self) -> &'static str {
        NAME
    }
    fn members(&self) -> usize {
        self.members.len()
    }
    fn init(&self, params: &[ParamInfo]) -> NAdamWState {
        NAdamWState { m: zeros(params, self.members()), v: zeros(params, self.members()), iteration: 0 }
    }
    fn update(&self, state: &mut NAdamWState, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut state.m).zip(&mut state.v) {
            let n = g.len() / self.members.len();
            if n == 0 {
                continue;
            }
            let members = w.chunks_exact_mut(n).zip(g.chunks_exact(n)).zip(m.chunks_exact_mut(n)).zip(v.chunks_exact_mut(n));
            for (k, (((w, g), m), v)) in members.enumerate() {
                let p = &self.members[k];
                let (b1, b2, eps) = (p.b1 as f32, p.b2 as f32, p.eps as f32);
                let (awd, l2) = (p.adamw_wd as f32, p.l2_wd as f32);
                let lr_t = p.step_size(state.iteration, ctx.num_steps);
                let nesterov = p.nesterov;
                for (((w, &g), m), v) in w.iter_mut().zip(g.iter()).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = g - *w * l2;
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * (g * g);
                    let num = if nesterov { b1 * *m + (1.0 - b1) * g } else { *m };
                    let step = lr_t * num / (v.sqrt() + eps) + lr_t * awd * *w;
                    *w += -step;
                }
            }
        }
        state.iteration += 1;
    }
}

/// NAdamW as a fused device step (one member).
pub struct NAdamWStep(pub NAdamWParams);

impl FusedRule for NAdamWStep {
    const KERNEL: Kernel = Kernel::Nadamw;
    const NAME: &'static str = NAME;
    fn consts(&self, steps: u64, ctx: &StepContext<'_>) -> Consts {
        let p = &self.0;
        let (b1, b2) = (p.b1 as f32, p.b2 as f32);
        let lr_t = p.step_size(steps, ctx.num_steps);
        Consts::of(&[p.l2_wd as f32, b1, 1.0 - b1, b2, 1.0 - b2, lr_t, p.eps as f32, lr_t * p.adamw_wd as f32, f32::from(u8::from(p.nesterov))])
    }
}

/// The kind.
pub struct NAdamWKind;

fn params(member: &Values) -> NAdamWParams {
    NAdamWHp::from_values(member).into()
}

impl Kind for NAdamWKind {
    fn name(&self) -> &'static str {
        NAME
    }
    fn about(&self) -> &'static str {
        "NAdamW with a warm-up + cosine schedule as learned_optimization's OptList entries"
    }
    fn hparams(&self) -> &'static [Hparam] {
        NAdamWHp::HPARAMS
    }
    fn host(&self, members: &[Values], params_: &[ParamInfo]) -> Box<dyn Optimizer> {
        bound(NAdamW::new(&members.iter().map(params).collect::<Vec<_>>()), params_)
    }
    fn device_members(&self, members: &[Values], params_: &[ParamInfo], device: &Device) -> Option<Box<dyn Optimizer>> {
        Some(beatmatch_device::on(Fused(members.iter().map(|member| NAdamWStep(params(member))).collect()), params_, device))
    }
    fn is_horizon_free(&self, member: &Values) -> bool {
        params(member).is_constant()
    }
    fn reference_spec(&self, name: &str, meta: &serde_json::Value) -> Option<Result<OptimizerSpec>> {
        (meta["kind"] == "nadamw_optlist").then(|| {
            if meta["nadamw_fixed"]["use_bias_correction"] != serde_json::Value::Bool(true) {
                bail!("{name}: only bias-corrected NAdamW is implemented");
            }
            crate::opt_list::entry_to_spec(&meta["opt_list_entry_json"])
        })
    }
}
