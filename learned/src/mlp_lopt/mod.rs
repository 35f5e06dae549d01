//! MLP-LOpt: learned_optimization's `MLPLOpt` (Metz et al. 2019, "Understanding and correcting
//! pathologies in the training of learned optimizers"; also LOLv2): per parameter, the
//! gradient, the parameter and six momenta, each normalised by its second moment over the
//! tensor, plus an 11-wide training-step embedding, go through a 19 → 32 → 32 → 2 MLP; the step
//! is `direction · exp(magnitude · exp_mult) · step_mult`.

//! The descriptor ([`MLP_LOPT`]), the host rule ([`MlpLoptNet`]) and the device rule
//! ([`device`]).

// Lane loops index fixed-size `[f32; B]` rows by position on purpose: written so they compile
// to straight vector instructions (and give the same bits on every instruction set).
#![allow(clippy::needless_range_loop)]

pub mod device;

use crate::accum::rsqrt;
use crate::accum::{tanh_embedding, Momentum};
use crate::arch::{Architecture, LearnedOptimizer};
use crate::features::{self, Block, Mlp, B, MAX_WIDTH};
use crate::theta::{Theta, ThetaError};
use crate::{step_scales, Hyperparameters, STEP_SCALES};
use beatmatch_core::{Bound, Optimizer, ParamInfo, StepContext, UpdateRule};
use candle_core::Device;
use std::sync::Arc;

/// Architecture name.
pub const ARCH: &str = "mlp_lopt";

/// MLP-LOpt.
pub const MLP_LOPT: Architecture = Architecture::new(&MlpLopt);

/// MLP-LOpt's descriptor.
pub struct MlpLopt;

/// MLP-LOpt bound to `theta` with a checkpoint's hyperparameters (defaults where unset).
pub fn bind(theta: &Theta, hyper: &Hyperparameters) -> Result<MlpLoptNet, ThetaError> {
    let d = MlpLoptConfig::default();
    let (exp_mult, step_mult) = step_scales(hyper, d.exp_mult, d.step_mult);
    MlpLoptNet::bind(theta, MlpLoptConfig { exp_mult, step_mult })
}

impl LearnedOptimizer for MlpLopt {
    fn name(&self) -> &'static str {
        ARCH
    }
    fn label(&self) -> &'static str {
        "MLP-LOpt"
    }
    fn reference_kind(&self) -> &'static str {
        ARCH
    }
    fn detect(&self, theta: &Theta) -> bool {
        theta.tensors.contains_key("mlp/~/linear_0/w")
    }
    fn settable(&self) -> &'static [&'static str] {
        STEP_SCALES
    }
    /// One thread: MLP-LOpt's update does not split a tensor.
    fn host(&self, theta: &Theta, hyper: &Hyperparameters, members: usize, _threads: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, ThetaError> {
        Ok(Box::new(Bound::new(Arc::new(bind(theta, hyper)?.with_members(members)), params)))
    }
    fn device(&self, theta: &Theta, hyper: &Hyperparameters, params: &[ParamInfo], dev: &Device) -> anyhow::Result<Box<dyn Optimizer>> {
        Ok(beatmatch_device::on(device::MlpLoptOnDevice(bind(theta, hyper)?), params, dev))
    }
    /// The 19 → 32 → 32 → 2 MLP.
    fn reference_init(&self, seed: u64) -> Option<Theta> {
        let layers: Vec<_> = [(19, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2)]
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| (format!("mlp/~/linear_{i}/w"), format!("mlp/~/linear_{i}/b"), a, b))
            .collect();
        Some(crate::init::linear_layers(seed, &layers))
    }
    fn is_horizon_free(&self) -> bool {
        true
    }
}
const DECAYS: [f32; 6] = [0.1, 0.5, 0.9, 0.99, 0.999, 0.9999];
const HIDDEN: usize = 32;

/// Hyperparameters (the reference's constructor defaults).
#[derive(Clone, Copy, Debug)]
pub struct MlpLoptConfig {
    /// Scale inside the exponential.
    pub exp_mult: f32,
    /// Scale of the step.
    pub step_mult: f32,
}

impl Default for MlpLoptConfig {
    fn default() -> Self {
        Self { exp_mult: 0.001, step_mult: 0.001 }
    }
}

/// The meta-parameters MLP-LOpt needs, checked.
pub fn net(theta: &Theta) -> Result<Mlp, ThetaError> {
    let dims = [(19, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 2)];
    let mut layers = Vec::new();
    for (i, &(a, b)) in dims.iter().enumerate() {
        let w = theta.get(ARCH, &format!("mlp/~/linear_{i}/w"), &[a, b])?.to_vec();
        let bias = theta.get(ARCH, &format!("mlp/~/linear_{i}/b"), &[b])?.to_vec();
        layers.push((w, bias, a, b));
    }
    Ok(Mlp { layers })
}

/// MLP-LOpt's meta-parameters bound into its network: the update rule.
pub struct MlpLoptNet {
    cfg: MlpLoptConfig,
    net: Mlp,
    members: usize,
}

/// One member's run state.
#[derive(Clone, Debug)]
pub struct MlpLoptMember {
    mom: Momentum,
    iteration: u32,
}

impl MlpLoptNet {
    /// Bind `theta`, checking every meta-parameter; one member.
    pub fn bind(theta: &Theta, cfg: MlpLoptConfig) -> Result<Self, ThetaError> {
        Ok(Self { cfg, net: net(theta)?, members: 1 })
    }

    /// The same rule over `members` members (each its own state, all with this theta).
    pub fn with_members(mut self, members: usize) -> Self {
        self.members = members.max(1);
        self
    }

    /// The per-parameter network (inputs: the gradient, the parameter, six momenta, then the
    /// 11-wide step embedding).
    pub fn net(&self) -> &Mlp {
        &self.net
    }

    /// The step's scales.
    pub fn config(&self) -> MlpLoptConfig {
        self.cfg
    }
}

/// The momentum decays, in feature order.
pub fn decays() -> &'static [f32] {
    &DECAYS
}

struct Kernel<'a> {
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a [f32],
    /// The network with this step's embedding folded into its first layer.
    net: &'a Mlp,
    cfg: MlpLoptConfig,
}

impl features::Kernel for Kernel<'_> {
    #[inline(always)]
    fn run(&mut self) {
        let n = self.p.len();
        let mut x: Block = [[0.0; B]; MAX_WIDTH];
        let sums: [f64; FEATURES] = std::array::from_fn(|j| features::sum_squares(feature(self.g, self.p, self.m, j)));
        let norm = sums.map(|s| rsqrt(1e-5 + (s / n as f64) as f32));
        let mut scratch = features::scratch();
        for start in (0..n).step_by(B) {
            let len = B.min(n - start);
            fill(&mut x, self.g, self.p, self.m, &norm, start, len);
            let o = self.net.eval_block(&x, &mut scratch);
            let mut ex = [0f32; B];
            for (v, &mag) in ex.iter_mut().zip(&o[1]) {
                *v = features::exp(mag * self.cfg.exp_mult);
            }
            for e in 0..len {
                self.p[start + e] -= o[0][e] * ex[e] * self.cfg.step_mult;
            }
        }
    }
}

/// Per-parameter features: the gradient, the parameter and six momenta.
const FEATURES: usize = 2 + DECAYS.len();

/// Feature `j` over the whole tensor: the gradient, the parameter, then momentum `j − 2`.
#[inline(always)]
fn feature<'a>(g: &'a [f32], p: &'a [f32], m: &'a [f32], j: usize) -> &'a [f32] {
    let n = p.len();
    match j {
        0 => g,
        1 => p,
        _ => &m[(j - 2) * n..(j - 1) * n],
    }
}

/// The block's gradient, parameter and six momenta times their normalisers `norm`,
/// feature-major; lanes past `len` are zero. A full block reads straight runs (a closure or
/// per-lane index arithmetic here ran as scalar code).
#[inline(always)]
fn fill(x: &mut Block, g: &[f32], p: &[f32], m: &[f32], norm: &[f32; FEATURES], start: usize, len: usize) {
    for (j, &s) in norm.iter().enumerate() {
        let src = feature(g, p, m, j);
        if len == B {
            let v: &[f32; B] = src[start..start + B].try_into().unwrap();
            for e in 0..B {
                x[j][e] = v[e] * s;
            }
        } else {
            for e in 0..B {
                x[j][e] = if e < len { src[start + e] * s } else { 0.0 };
            }
        }
    }
}

impl UpdateRule for MlpLoptNet {
    type State = Vec<MlpLoptMember>;
    fn name(&self) -> &'static str {
        ARCH
    }
    fn members(&self) -> usize {
        self.members
    }
    fn init(&self, params: &[ParamInfo]) -> Self::State {
        vec![MlpLoptMember { mom: Momentum::new(DECAYS.len(), params), iteration: 0 }; self.members]
    }
    fn update(&self, state: &mut Self::State, params: &mut [&mut [f32]], grads: &[&[f32]], _ctx: &StepContext<'_>) {
        crate::for_each_member(state, params, grads, |_, st, params, grads| {
            st.mom.update(&DECAYS, grads);
            let net = self.net.with_constant_tail(&tanh_embedding(st.iteration as f32));
            for ((p, g), m) in params.iter_mut().zip(grads).zip(&st.mom.m) {
                features::simd_dispatch(&mut Kernel { p, g, m, net: &net, cfg: self.cfg });
            }
            st.iteration += 1;
        });
    }
}
