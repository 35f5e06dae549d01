//! small_fc_lopt: learned_optimization's `AdafacMLPLOpt` — a 39 → h → h → 2 per-parameter MLP
//! (h = 4 in learned_optimization's small_fc_lopt, 32 in PyLO's μLO; read off the weights)
//! over momenta, second moments and Adafactor-style factored statistics (28 features,
//! normalised over the tensor) plus an 11-wide training-step embedding; the accumulator decays
//! are themselves meta-learned.
//!
//! The descriptor ([`SMALL_FC`]), the host rule ([`SmallFcNet`]) and the device rule
//! ([`device`]).

pub mod device;

use crate::accum::{clip_decays, learned_decays, tanh_embedding, Factored, Momentum, SecondMoment};
use crate::arch::{Architecture, LearnedOptimizer};
use crate::features::{process_tensor_threads, Flavor, Mlp, StepRule, TensorInputs};
use crate::theta::{Theta, ThetaError};
use crate::{step_scales, Hyperparameters, STEP_SCALES};
use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;
use std::sync::Arc;

/// Architecture name.
pub const ARCH: &str = "small_fc";

/// small_fc_lopt.
pub const SMALL_FC: Architecture = Architecture::new(&SmallFc);

/// small_fc_lopt's descriptor.
pub struct SmallFc;

/// small_fc_lopt bound to `theta` with a checkpoint's hyperparameters (defaults where unset).
pub fn bind(theta: &Theta, hyper: &Hyperparameters) -> Result<SmallFcNet, ThetaError> {
    let d = SmallFcConfig::default();
    let (exp_mult, step_mult) = step_scales(hyper, d.exp_mult, d.step_mult);
    SmallFcNet::bind(theta, SmallFcConfig { exp_mult, step_mult })
}

impl LearnedOptimizer for SmallFc {
    fn name(&self) -> &'static str {
        ARCH
    }
    fn label(&self) -> &'static str {
        "small_fc_lopt"
    }
    fn reference_kind(&self) -> &'static str {
        "adafac_mlp_lopt"
    }
    fn detect(&self, theta: &Theta) -> bool {
        theta.tensors.contains_key("nn/~/w0")
    }
    fn settable(&self) -> &'static [&'static str] {
        STEP_SCALES
    }
    fn host(&self, theta: &Theta, hyper: &Hyperparameters, members: usize, threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, ThetaError> {
        Ok(Box::new(Bound::new(Arc::new(bind(theta, hyper)?.with_members(members).with_threads(threads)), params)))
    }
    fn device(&self, theta: &Theta, hyper: &Hyperparameters, params: &[ParamInfo], dev: &Device) -> anyhow::Result<Box<dyn Optimizer>> {
        Ok(beatmatch_device::on(device::SmallFcOnDevice(bind(theta, hyper)?), params, dev))
    }
    /// The 39 → 4 → 4 → 2 MLP, and the learned decay offsets at zero (the reference constants).
    fn reference_init(&self, seed: u64) -> Option<Theta> {
        let layers: Vec<_> = [(39, 4), (4, 4), (4, 2)].iter().enumerate().map(|(i, &(a, b))| (format!("nn/~/w{i}"), format!("nn/~/b{i}"), a, b)).collect();
        let mut theta = crate::init::linear_layers(seed, &layers);
        for (name, n) in [("momentum_decays", 3), ("rms_decays", 1), ("adafactor_decays", 3)] {
            theta.tensors.insert(name.into(), crate::theta::Tensor { shape: vec![n], data: vec![0.0; n] });
        }
        Some(theta)
    }
    fn is_horizon_free(&self) -> bool {
        true
    }
}
const MOM: [f64; 3] = [0.9, 0.99, 0.999];
const RMS: [f64; 1] = [0.999];
const FAC: [f64; 3] = [0.9, 0.99, 0.999];

/// Hyperparameters (the reference's constructor defaults: hidden 4, 2 layers).
#[derive(Clone, Copy, Debug)]
pub struct SmallFcConfig {
    /// Scale inside the exponential.
    pub exp_mult: f32,
    /// Scale of the step.
    pub step_mult: f32,
}

impl Default for SmallFcConfig {
    fn default() -> Self {
        Self { exp_mult: 0.001, step_mult: 0.001 }
    }
}

/// small_fc_lopt's meta-parameters bound into its network and decays: the update rule.
pub struct SmallFcNet {
    cfg: SmallFcConfig,
    net: Mlp,
    mom: Vec<f32>,
    rms: Vec<f32>,
    fac: Vec<f32>,
    members: usize,
    threads: usize,
}

/// One member's run state.
#[derive(Clone, Debug)]
pub struct SmallFcMember {
    mom: Momentum,
    rms: SecondMoment,
    fac: Factored,
    iteration: u32,
    /// Reused per-step buffers (not state proper; cloned with it for simplicity).
    fac_g: Vec<Vec<f32>>,
    scratch: Vec<f32>,
}

impl SmallFcNet {
    /// Bind `theta`, checking every meta-parameter's presence and shape; one member.
    pub fn bind(theta: &Theta, cfg: SmallFcConfig) -> Result<Self, ThetaError> {
        let width = Flavor::SmallFc.width() + 11;
        // The hidden width is whatever the first layer's weights say (4 or μLO's 32).
        let h = theta.tensors.get("nn/~/w0").and_then(|t| t.shape.get(1).copied()).filter(|&h| (1..=crate::features::MAX_WIDTH).contains(&h)).unwrap_or(4);
        let dims = [(width, h), (h, h), (h, 2)];
        let mut layers = Vec::new();
        for (i, &(a, b)) in dims.iter().enumerate() {
            layers.push((theta.get(ARCH, &format!("nn/~/w{i}"), &[a, b])?.to_vec(), theta.get(ARCH, &format!("nn/~/b{i}"), &[b])?.to_vec(), a, b));
        }
        Ok(Self {
            cfg,
            net: Mlp { layers },
            mom: learned_decays(&MOM, Some(theta.get(ARCH, "momentum_decays", &[3])?)),
            rms: clip_decays(learned_decays(&RMS, Some(theta.get(ARCH, "rms_decays", &[1])?))),
            fac: clip_decays(learned_decays(&FAC, Some(theta.get(ARCH, "adafactor_decays", &[3])?))),
            members: 1,
            threads: 1,
        })
    }

    /// The same rule over `members` members (each its own state, all with this theta).
    pub fn with_members(mut self, members: usize) -> Self {
        self.members = members.max(1);
        self
    }

    /// The per-parameter network (inputs: the 28 features, then the 11-wide step embedding).
    pub fn net(&self) -> &Mlp {
        &self.net
    }

    /// The accumulators' decays, as bound: momenta (3), second moment (1), factored (3).
    pub fn decays(&self) -> (&[f32], &[f32], &[f32]) {
        (&self.mom, &self.rms, &self.fac)
    }

    /// The step's scales.
    pub fn config(&self) -> SmallFcConfig {
        self.cfg
    }

    /// Split each large tensor's update over `threads` threads (for a run that has the
    /// machine to itself; a sweep keeps one single-threaded run per core). The same bits for
    /// any count.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    fn update_member(&self, st: &mut SmallFcMember, params: &mut [&mut [f32]], grads: &[&[f32]]) {
        crate::features::simd_dispatch(&mut crate::accum::Accumulators {
            mom: (&mut st.mom, &self.mom),
            rms: (&mut st.rms, &self.rms),
            fac: (&mut st.fac, &self.fac),
            grads,
            fac_g: &mut st.fac_g,
        });
        let rule = StepRule::Embedded { exp_mult: self.cfg.exp_mult, step_mult: self.cfg.step_mult };
        let net = self.net.with_constant_tail(&tanh_embedding(st.iteration as f32));
        for (i, p) in params.iter_mut().enumerate() {
            let new = &mut st.scratch;
            new.resize(p.len(), 0.0);
            let t = TensorInputs { g: grads[i], p, m: &st.mom.m[i], rms: &st.rms.v[i], fac_g: &st.fac_g[i], fac: &st.fac.state[i] };
            process_tensor_threads(Flavor::SmallFc, &t, &net, rule, new, self.threads);
            p.copy_from_slice(new);
        }
        st.iteration += 1;
    }
}

impl UpdateRule for SmallFcNet {
    type State = Vec<SmallFcMember>;
    fn name(&self) -> &'static str {
        ARCH
    }
    fn members(&self) -> usize {
        self.members
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        let one = SmallFcMember {
            mom: Momentum::new(MOM.len(), params),
            rms: SecondMoment::new(RMS.len(), params),
            fac: Factored::new(FAC.len(), params),
            iteration: 0,
            fac_g: Vec::new(),
            scratch: Vec::new(),
        };
        vec![one; self.members]
    }
    fn update(&self, state: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        crate::for_each_member(state, params, grads, |_, st, p, g| self.update_member(st, p, g));
    }
}
