//! Learned optimizers — VeLO, small_fc_lopt, MLP-LOpt — implemented from learned_optimization's
//! reference code, and the readers of their checkpoints (learned_optimization's msgpack,
//! beatmatch's native format, PyLO's safetensors).
//!
//! Each architecture is one module (`velo/`, `small_fc/`, `mlp_lopt/`) holding its descriptor
//! (a [`LearnedOptimizer`]: name, label, detection, settable hyperparameters, host and device
//! binding, reference initialisation, horizon), its host rule and its device rule; [`ARCHS`]
//! lists them. The host rule is a network bound from the meta-parameters
//! (`VeloNet::bind(&theta, cfg)`, …): a [`beatmatch_core::UpdateRule`] shared by every run,
//! with the per-run state (momenta, factored statistics, LSTM state) apart, so a perturbed
//! theta is bound without re-reading a checkpoint and a run's state can be snapshotted and
//! restored. The whole update runs on host buffers in one pass per tensor (features,
//! per-parameter MLP and update fused; the per-tensor normaliser takes a first pass): no
//! `[N, 30]` temporaries.

pub mod accum;
pub mod arch;
pub mod celo;
pub mod celo2;
pub mod celo_adam;
pub mod checkpoint;
mod dense;
pub mod device_factored;
pub mod device_net;
pub mod features;
pub mod init;
mod lstm;
pub mod mlp_lopt;
pub mod small_fc;
pub mod theta;
pub mod velo;

use anyhow::{bail, Result};
use beatmatch_core::{Optimizer, ParamInfo};
use candle_core::Device;
use checkpoint::Checkpoint;
use std::sync::RwLock;

pub use arch::{Architecture, LearnedOptimizer};

/// The learned architectures this crate implements: the one list. A new architecture is its
/// module plus one line here.
pub static ARCHS: &[Architecture] = &[velo::VELO, celo::CELO, celo_adam::CELO_ADAM, celo2::CELO2, small_fc::SMALL_FC, mlp_lopt::MLP_LOPT];

/// Architectures added at run time by [`register`], after [`ARCHS`].
static REGISTERED: RwLock<Vec<Architecture>> = RwLock::new(Vec::new());

/// Add an architecture defined outside this crate, so checkpoints, the factory and
/// meta-training know it. Its name must be new.
pub fn register(arch: &'static dyn LearnedOptimizer) -> Result<()> {
    let name = arch.name();
    let mut registered = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if ARCHS.iter().chain(registered.iter()).any(|a| a.as_str() == name) {
        bail!("cannot register architecture `{name}`: one of that name exists");
    }
    registered.push(Architecture::new(arch));
    Ok(())
}

/// Every architecture: [`ARCHS`], then those [`register`]ed.
pub(crate) fn archs() -> Vec<Architecture> {
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    ARCHS.iter().copied().chain(registered.iter().copied()).collect()
}

/// Build the optimizer a checkpoint holds for tensors `params` (one member); a missing or
/// mis-shaped meta-parameter is an error naming the tensor and both shapes.
pub fn build(ckpt: &Checkpoint, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, theta::ThetaError> {
    ckpt.arch.host(&ckpt.theta, &ckpt.hyperparameters, 1, 1, params)
}

/// Build architecture `arch` bound to `theta` over `members` members (each its own state).
pub fn build_members(arch: Architecture, theta: &theta::Theta, members: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, theta::ThetaError> {
    arch.host(theta, &Hyperparameters::default(), members, 1, params)
}

/// The device implementation of `arch` bound to `theta` with a checkpoint's hyperparameters,
/// `members` of them (only one: populations are the CPU engine's), uploading host slices
/// (when handed those) to `device`.
pub fn build_on(
    arch: Architecture,
    theta: &theta::Theta,
    hyper: &Hyperparameters,
    members: usize,
    params: &[ParamInfo],
    device: &Device,
) -> Result<Box<dyn Optimizer>> {
    beatmatch_device::one_member(members, arch.as_str())?;
    arch.device(theta, hyper, params, device)
}

/// Hyperparameters a checkpoint sets (see [`checkpoint::Checkpoint::hyperparameters`]):
/// `step_mult` and `exp_mult` of small_fc and MLP-LOpt.
pub type Hyperparameters = std::collections::BTreeMap<String, f64>;

/// The step scales small_fc and MLP-LOpt checkpoints may set (their `settable` hyperparameters).
pub(crate) const STEP_SCALES: &[&str] = &["exp_mult", "step_mult"];

/// A checkpoint's `(exp_mult, step_mult)`, each the architecture's default where unset.
pub(crate) fn step_scales(hyper: &Hyperparameters, exp_mult: f32, step_mult: f32) -> (f32, f32) {
    let get = |key: &str, default: f32| hyper.get(key).map_or(default, |&v| v as f32);
    (get(STEP_SCALES[0], exp_mult), get(STEP_SCALES[1], step_mult))
}

/// `grads` clipped to ±1000 (the learned optimizers' gradient clip) into `clipped`, one buffer
/// per tensor, reused across steps.
pub(crate) fn clip_gradients<'g>(clipped: &mut Vec<Vec<f32>>, grads: impl ExactSizeIterator<Item = &'g [f32]>) {
    clipped.resize_with(grads.len(), Vec::new);
    for (c, g) in clipped.iter_mut().zip(grads) {
        c.clear();
        c.extend(g.iter().map(|x| x.clamp(-1000.0, 1000.0)));
    }
}

/// Run `f(k, state_k, params_k, grads_k)` for every member `k`, where `params_k` and `grads_k`
/// are member k's parts of the member-major buffers. One member gets the buffers as they are.
pub(crate) fn for_each_member<S>(
    states: &mut [S],
    params: &mut [&mut [f32]],
    grads: &[&[f32]],
    mut f: impl FnMut(usize, &mut S, &mut [&mut [f32]], &[&[f32]]),
) {
    let members = states.len();
    if members == 1 {
        return f(0, &mut states[0], params, grads);
    }
    let mut split: Vec<std::slice::ChunksExactMut<'_, f32>> = params
        .iter_mut()
        .map(|p| {
            let n = (p.len() / members).max(1);
            p.chunks_exact_mut(n)
        })
        .collect();
    for (k, st) in states.iter_mut().enumerate() {
        let mut p: Vec<&mut [f32]> = split.iter_mut().map(|c| c.next().unwrap_or_default()).collect();
        let g: Vec<&[f32]> = grads.iter().map(|g| beatmatch_core::optimizer::member(g, members, k)).collect();
        f(k, st, &mut p, &g);
    }
}
