//! Celo (Moudgil, Knyazev, Lajoie, Belilovsky, "Celo: Training Versatile Learned Optimizers on a
//! Compute Diet", TMLR 2025, arXiv 2501.12670), from amoudgl/celo's `celo/optimizers/celo.py`
//! at 66d9761: VeLO's per-parameter MLP (30 → 4 → 4 → 3, the same features, accumulators and
//! step scaled by the tensor's RMS) driven by a learned scheduler (see [`scheduler`]) in place
//! of VeLO's per-tensor hypernetwork.
//!
//! Differences from VeLO, all from the reference: the LSTM reads only global inputs (18), so
//! every tensor gets the same state and the same multiplier; `lr_mult = 0.1 · exp(·)`; the
//! controls are softmaxed and the bank's MLPs averaged with no ×100 (the published Celo has a
//! bank of one, so its MLP is the bank's); the multiplier applies from `train_phase` 2 on (the
//! published Celo is phase 2; phase 1 meta-trains the MLP with the scheduler unused).
//!
//! The descriptor ([`CELO`]), the host rule ([`CeloNet`]) and the device rule ([`device`]).

pub mod device;
pub mod scheduler;

use crate::accum::{clip_decays, learned_decays, Factored, Momentum, SecondMoment};
use crate::arch::{Architecture, LearnedOptimizer};
use crate::features::{process_tensor_threads, sum_squares, Flavor, Mlp, StepRule, TensorInputs};
use crate::theta::{Theta, ThetaError};
use crate::velo::Bank;
use crate::Hyperparameters;
use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;
use scheduler::{Schedule, Scheduler, SchedulerState};
use std::sync::Arc;

/// Architecture name.
pub const ARCH: &str = "celo";

/// Celo.
pub const CELO: Architecture = Architecture::new(&Celo);

/// Celo's descriptor.
pub struct Celo;

/// The hyperparameter a checkpoint may set: the meta-training phase (1: the scheduler's
/// multiplier is not applied; 2, the published optimizer's: it is).
pub const TRAIN_PHASE: &str = "train_phase";

impl LearnedOptimizer for Celo {
    fn name(&self) -> &'static str {
        ARCH
    }
    fn label(&self) -> &'static str {
        "Celo"
    }
    fn reference_kind(&self) -> &'static str {
        ARCH
    }
    fn detect(&self, theta: &Theta) -> bool {
        scheduler::has_scheduler(theta) && theta.tensors.contains_key("ff_mod_stack/~/b0")
    }
    fn settable(&self) -> &'static [&'static str] {
        &[TRAIN_PHASE]
    }
    /// `Celo.init` (celo.py) in distribution, with the published file's shapes (a bank of one,
    /// LSTM width 64): the MLP's layers truncated-normal with σ = 1/√fan_in of the whole layer
    /// (30 for every first-layer group, 4 after), the scheduler's haiku `Linear`s likewise, every
    /// bias and the LSTM's initial state zero.
    fn reference_init(&self, seed: u64) -> Option<Theta> {
        Some(reference_theta(seed))
    }
    fn host(&self, theta: &Theta, hyper: &Hyperparameters, members: usize, threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, ThetaError> {
        Ok(Box::new(Bound::new(Arc::new(CeloNet::bind(theta, CeloConfig::from(hyper))?.with_members(members).with_threads(threads)), params)))
    }
    fn device(&self, theta: &Theta, hyper: &Hyperparameters, params: &[ParamInfo], dev: &Device) -> anyhow::Result<Box<dyn Optimizer>> {
        Ok(beatmatch_device::on(device::CeloOnDevice(CeloNet::bind(theta, CeloConfig::from(hyper))?), params, dev))
    }
    /// Celo reads the horizon: the fraction of training done, the loss buffer's half-lives.
    fn is_horizon_free(&self) -> bool {
        false
    }
    fn provenance(&self) -> Option<&'static str> {
        Some("Celo with its authors' published weights (Moudgil, Knyazev, Lajoie, Belilovsky, TMLR 2025; amoudgl/celo @ 66d9761), meta-trained with PES on four small image-MLP tasks, none of them beatmatch's: every task here is held out from its meta-training")
    }
    fn published(&self) -> Option<&'static str> {
        Some("learned/checkpoints/published/celo/theta.state")
    }
}

/// [`Celo::reference_init`]'s theta.
fn reference_theta(seed: u64) -> Theta {
    use crate::init::{zeros, Draws};
    use crate::velo::{FF_INPUTS, GROUPS};
    const HIDDEN: usize = 64;
    let mut d = Draws::new(seed);
    let mut theta = Theta::default();
    let mut put = |name: &str, t| theta.tensors.insert(name.to_string(), t);
    for (gi, &width) in GROUPS.iter().enumerate() {
        put(&format!("ff_mod_stack/~/w0__{gi}"), d.truncated(vec![1, width, 4], 1.0 / (FF_INPUTS as f64).sqrt()));
    }
    put("ff_mod_stack/~/w1", d.truncated(vec![1, 4, 4], 0.5));
    put("ff_mod_stack/~/w2", d.truncated(vec![1, 4, 3], 0.5));
    for (b, n) in [("b0", 4), ("b1", 4), ("b2", 3)] {
        put(&format!("ff_mod_stack/~/{b}"), zeros(vec![1, n]));
    }
    put("lstm_init_state/hidden", zeros(vec![1, HIDDEN]));
    put("lstm_init_state/cell", zeros(vec![1, HIDDEN]));
    let layers = [
        ("linear", scheduler::INPUTS, HIDDEN),
        ("linear_1", scheduler::INPUTS, HIDDEN),
        ("linear_2", scheduler::INPUTS, HIDDEN),
        ("rnn/linear", 2 * HIDDEN, 4 * HIDDEN),
        ("rnn_to_controls", HIDDEN, 1),
        ("step_size", HIDDEN, 1),
    ];
    for (name, fan_in, fan_out) in layers {
        d.linear(&mut theta, &format!("rnn_params/{name}/w"), &format!("rnn_params/{name}/b"), fan_in, fan_out);
    }
    theta
}

const MOM: [f64; 3] = [0.9, 0.99, 0.999];
const RMS: [f64; 1] = [0.999];
const FAC: [f64; 3] = [0.9, 0.99, 0.999];

/// Hyperparameters of Celo (the published optimizer's: `factory.py`'s `celo`).
#[derive(Clone, Copy, Debug)]
pub struct CeloConfig {
    /// Scale inside the exponential.
    pub exp_mult: f32,
    /// Scale of the step.
    pub step_mult: f32,
    /// Meta-training phase: 1 leaves the scheduler's multiplier out, 2 applies it.
    pub train_phase: u8,
}

impl Default for CeloConfig {
    fn default() -> Self {
        Self { exp_mult: 0.001, step_mult: 0.001, train_phase: 2 }
    }
}

impl From<&Hyperparameters> for CeloConfig {
    fn from(h: &Hyperparameters) -> Self {
        let mut c = Self::default();
        if let Some(&p) = h.get(TRAIN_PHASE) {
            c.train_phase = if p < 1.5 { 1 } else { 2 };
        }
        c
    }
}

/// Intermediates of the last step, for conformance tests against the reference's debug tensors.
#[derive(Clone, Debug)]
pub struct CeloDebug {
    /// The scheduler's output (every tensor's: the reference's rows are identical).
    pub schedule: Schedule,
}

/// Celo's meta-parameters bound: the update rule, shared by every run.
pub struct CeloNet {
    cfg: CeloConfig,
    scheduler: Scheduler,
    bank: Bank,
    mom: Vec<f32>,
    rms: Vec<f32>,
    fac: Vec<f32>,
    members: usize,
    threads: usize,
    record_debug: bool,
}

/// One member's run state.
#[derive(Clone, Debug)]
pub struct CeloMember {
    sched: SchedulerState,
    mom: Momentum,
    rms: SecondMoment,
    fac: Factored,
    fac_g: Vec<Vec<f32>>,
    scratch: Vec<f32>,
    clipped: Vec<Vec<f32>>,
    /// Intermediates of the last step, when the rule records them ([`CeloNet::with_debug`]).
    pub debug: Option<CeloDebug>,
}

impl CeloNet {
    /// Bind `theta`, checking every meta-parameter's presence and shape; one member. The bank's
    /// size (`param_inits`) is read off `ff_mod_stack/~/b0` (`[k, 4]`; the published Celo's is 1).
    pub fn bind(theta: &Theta, cfg: CeloConfig) -> Result<Self, ThetaError> {
        let k = match theta.tensors.get("ff_mod_stack/~/b0") {
            Some(t) if t.shape.len() == 2 && t.shape[0] >= 1 => t.shape[0],
            Some(t) => return Err(ThetaError::Shape { arch: ARCH, name: "ff_mod_stack/~/b0".into(), expected: vec![1, 4], actual: t.shape.clone() }),
            None => return Err(ThetaError::Missing { arch: ARCH, name: "ff_mod_stack/~/b0".into(), expected: vec![1, 4] }),
        };
        Ok(Self {
            cfg,
            scheduler: Scheduler::bind(theta, ARCH, Some(k))?,
            bank: Bank::load(theta, ARCH, k)?,
            mom: learned_decays(&MOM, None),
            rms: clip_decays(learned_decays(&RMS, None)),
            fac: clip_decays(learned_decays(&FAC, None)),
            members: 1,
            threads: 1,
            record_debug: false,
        })
    }

    /// The same rule over `members` members (each its own state, all with this theta).
    pub fn with_members(mut self, members: usize) -> Self {
        self.members = members.max(1);
        self
    }

    /// Split each large tensor's update over `threads` threads (the same bits for any count).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Record each step's intermediates in the state (for conformance tests).
    pub fn with_debug(mut self, on: bool) -> Self {
        self.record_debug = on;
        self
    }

    /// The hyperparameters.
    pub fn config(&self) -> CeloConfig {
        self.cfg
    }

    /// The momentum, second-moment and factored decays.
    pub fn decays(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.mom, &self.rms, &self.fac)
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// The per-parameter MLP the softmaxed `controls` pick: `mean_k(control_k · bank_k)`.
    pub fn interpolate(&self, controls: &[f32]) -> Mlp {
        self.bank.interpolate(controls, 1.0)
    }

    /// The step rule of a tensor whose parameters have mean square `mean_sq`.
    pub fn rule(&self, schedule: &Schedule, mean_sq: f32) -> StepRule {
        let lr_mult = if self.cfg.train_phase > 1 { schedule.lr_mult } else { 1.0 };
        StepRule::Velo { exp_mult: self.cfg.exp_mult, step_mult: self.cfg.step_mult, param_scale: (mean_sq + 1e-9).sqrt(), lr_mult }
    }

    fn update_member(&self, st: &mut CeloMember, params: &mut [&mut [f32]], grads: &[&[f32]], loss: f32, num_steps: u64) {
        let schedule = self.scheduler.step(&mut st.sched, loss, num_steps);
        let mut clipped = std::mem::take(&mut st.clipped);
        crate::clip_gradients(&mut clipped, grads.iter().copied());
        let grads: Vec<&[f32]> = clipped.iter().map(Vec::as_slice).collect();
        let mean_sq: Vec<f32> = params.iter().map(|p| (sum_squares(p) / p.len() as f64) as f32).collect();
        crate::features::simd_dispatch(&mut crate::accum::Accumulators {
            mom: (&mut st.mom, &self.mom),
            rms: (&mut st.rms, &self.rms),
            fac: (&mut st.fac, &self.fac),
            grads: &grads,
            fac_g: &mut st.fac_g,
        });
        let net = self.interpolate(&schedule.controls);
        for (i, p) in params.iter_mut().enumerate() {
            let new = &mut st.scratch;
            new.resize(p.len(), 0.0);
            let t = TensorInputs { g: grads[i], p, m: &st.mom.m[i], rms: &st.rms.v[i], fac_g: &st.fac_g[i], fac: &st.fac.state[i] };
            process_tensor_threads(Flavor::Velo, &t, &net, self.rule(&schedule, mean_sq[i]), new, self.threads);
            p.copy_from_slice(new);
        }
        drop(grads);
        st.clipped = clipped;
        if self.record_debug {
            st.debug = Some(CeloDebug { schedule });
        }
    }
}

impl UpdateRule for CeloNet {
    type State = Vec<CeloMember>;
    fn name(&self) -> &'static str {
        ARCH
    }
    fn members(&self) -> usize {
        self.members
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        let one = CeloMember {
            sched: SchedulerState::default(),
            mom: Momentum::new(MOM.len(), params),
            rms: SecondMoment::new(RMS.len(), params),
            fac: Factored::new(FAC.len(), params),
            fac_g: Vec::new(),
            scratch: Vec::new(),
            clipped: Vec::new(),
            debug: None,
        };
        vec![one; self.members]
    }
    fn update(&self, state: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], ctx: &StepContext<'_>) {
        crate::for_each_member(state, params, grads, |k, st, p, g| self.update_member(st, p, g, ctx.loss(k), ctx.num_steps));
    }
}
