//! Celo-Adam (same paper as Celo, arXiv 2501.12670; amoudgl/celo's
//! `celo/optimizers/celo_adam.py` at 66d9761): Celo's learned scheduler driving Adam. The
//! scheduler's multiplier times `step_mult` (0.001) is Adam's learning rate; Adam's moments
//! (β₁ 0.9, β₂ 0.999) are bias-corrected, `ε` 1e-8 sits outside `√(v̂ + 1e-10)`, and the
//! step is not scaled by the tensor's RMS (`param_scale_mult=False`).
//!
//! The descriptor ([`CELO_ADAM`]), the host rule ([`CeloAdamNet`]) and the device rule
//! ([`device`]).

pub mod device;

use crate::accum::{clip_decays, learned_decays, Momentum, SecondMoment};
use crate::arch::{Architecture, LearnedOptimizer};
use crate::celo::scheduler::{self, Schedule, Scheduler, SchedulerState};
use crate::theta::{Theta, ThetaError};
use crate::Hyperparameters;
use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;
use std::sync::Arc;

/// Architecture name.
pub const ARCH: &str = "celo_adam";

/// Celo-Adam.
pub const CELO_ADAM: Architecture = Architecture::new(&CeloAdam);

/// Celo-Adam's descriptor.
pub struct CeloAdam;

impl LearnedOptimizer for CeloAdam {
    fn name(&self) -> &'static str {
        ARCH
    }
    fn label(&self) -> &'static str {
        "Celo-Adam"
    }
    fn reference_kind(&self) -> &'static str {
        ARCH
    }
    /// The scheduler without a bank of MLPs (Celo's has `ff_mod_stack`).
    fn detect(&self, theta: &Theta) -> bool {
        scheduler::has_scheduler(theta) && !theta.tensors.keys().any(|k| k.starts_with("ff_mod_stack/"))
    }
    fn host(&self, theta: &Theta, _hyper: &Hyperparameters, members: usize, _threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, ThetaError> {
        Ok(Box::new(Bound::new(Arc::new(CeloAdamNet::bind(theta)?.with_members(members)), params)))
    }
    fn device(&self, theta: &Theta, _hyper: &Hyperparameters, params: &[ParamInfo], dev: &Device) -> anyhow::Result<Box<dyn Optimizer>> {
        Ok(beatmatch_device::on(device::CeloAdamOnDevice(CeloAdamNet::bind(theta)?), params, dev))
    }
    /// The scheduler reads the horizon.
    fn is_horizon_free(&self) -> bool {
        false
    }
    fn provenance(&self) -> Option<&'static str> {
        Some("Celo-Adam with its authors' published weights (Moudgil et al., TMLR 2025; amoudgl/celo @ 66d9761), meta-trained with PES on four small image-MLP tasks, none of them beatmatch's: every task here is held out from its meta-training")
    }
    fn published(&self) -> Option<&'static str> {
        Some("learned/checkpoints/published/celo_adam/theta.state")
    }
}

/// Adam's β₁ and β₂ (the published `celo_adam`'s `initial_momentum_decays`, `initial_rms_decays`).
pub const BETAS: [f64; 2] = [0.9, 0.999];
/// Adam's ε (`initial_epsilon`).
pub const EPS: f32 = 1e-8;
/// The scale of the scheduler's multiplier (`step_mult`).
pub const STEP_MULT: f32 = 0.001;

/// Celo-Adam's meta-parameters bound: the update rule, shared by every run.
pub struct CeloAdamNet {
    scheduler: Scheduler,
    mom: Vec<f32>,
    rms: Vec<f32>,
    members: usize,
    record_debug: bool,
}

/// One member's run state.
#[derive(Clone, Debug)]
pub struct CeloAdamMember {
    sched: SchedulerState,
    mom: Momentum,
    rms: SecondMoment,
    clipped: Vec<Vec<f32>>,
    /// The scheduler's output at the last step, when the rule records it.
    pub debug: Option<Schedule>,
}

/// Adam's scalars at one step: `1 − β₁ᵗ`, `1 − β₂ᵗ` and the learning rate.
#[derive(Clone, Copy, Debug)]
pub struct AdamScalars {
    /// `1 − β₁ᵗ`.
    pub c1: f32,
    /// `1 − β₂ᵗ`.
    pub c2: f32,
    /// `lr_mult · step_mult`.
    pub lr: f32,
}

impl AdamScalars {
    /// At step `t` (1-based) with the scheduler's multiplier `lr_mult`.
    pub fn at(t: u32, lr_mult: f32) -> Self {
        let t = t as f32;
        Self { c1: 1.0 - (BETAS[0] as f32).powf(t), c2: 1.0 - (BETAS[1] as f32).powf(t), lr: lr_mult * STEP_MULT }
    }

    /// The new parameter from the old `p` and the updated moments `m`, `v`.
    #[inline]
    pub fn apply(&self, p: f32, m: f32, v: f32) -> f32 {
        let (m, v) = (m / self.c1, v / self.c2);
        p - m * (self.lr * 1.0 / (EPS + (v + 1e-10).sqrt()))
    }
}

impl CeloAdamNet {
    /// Bind `theta`, checking every meta-parameter's presence and shape; one member.
    pub fn bind(theta: &Theta) -> Result<Self, ThetaError> {
        Ok(Self {
            scheduler: Scheduler::bind(theta, ARCH, None)?,
            mom: learned_decays(&BETAS[..1], None),
            rms: clip_decays(learned_decays(&BETAS[1..], None)),
            members: 1,
            record_debug: false,
        })
    }

    /// The same rule over `members` members (each its own state, all with this theta).
    pub fn with_members(mut self, members: usize) -> Self {
        self.members = members.max(1);
        self
    }

    /// Record each step's scheduler output in the state (for conformance tests).
    pub fn with_debug(mut self, on: bool) -> Self {
        self.record_debug = on;
        self
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The momentum and second-moment decays.
    pub fn decays(&self) -> (&[f32], &[f32]) {
        (&self.mom, &self.rms)
    }

    fn update_member(&self, st: &mut CeloAdamMember, params: &mut [&mut [f32]], grads: &[&[f32]], loss: f32, num_steps: u64) {
        let schedule = self.scheduler.step(&mut st.sched, loss, num_steps);
        let mut clipped = std::mem::take(&mut st.clipped);
        crate::clip_gradients(&mut clipped, grads.iter().copied());
        let grads: Vec<&[f32]> = clipped.iter().map(Vec::as_slice).collect();
        st.mom.update(&self.mom, &grads);
        st.rms.update(&self.rms, &grads);
        let s = AdamScalars::at(st.sched.iteration, schedule.lr_mult);
        for (i, p) in params.iter_mut().enumerate() {
            for ((x, &m), &v) in p.iter_mut().zip(&st.mom.m[i]).zip(&st.rms.v[i]) {
                *x = s.apply(*x, m, v);
            }
        }
        drop(grads);
        st.clipped = clipped;
        if self.record_debug {
            st.debug = Some(schedule);
        }
    }
}

impl UpdateRule for CeloAdamNet {
    type State = Vec<CeloAdamMember>;
    fn name(&self) -> &'static str {
        ARCH
    }
    fn members(&self) -> usize {
        self.members
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        let one = CeloAdamMember {
            sched: SchedulerState::default(),
            mom: Momentum::new(1, params),
            rms: SecondMoment::new(1, params),
            clipped: Vec::new(),
            debug: None,
        };
        vec![one; self.members]
    }
    fn update(&self, state: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        crate::for_each_member(state, params, grads, |k, st, p, g| self.update_member(st, p, g, ctx.loss(k), ctx.num_steps));
    }
}
