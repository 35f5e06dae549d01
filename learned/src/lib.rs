//! Learned optimizers — VeLO, small_fc_lopt, MLP-LOpt — implemented from learned_optimization's
//! reference code, and their checkpoints (learned_optimization's msgpack format and beatmatch's
//! native one).
//!
//! Each architecture is a network bound from its meta-parameters (`VeloNet::bind(&theta, cfg)`,
//! …): an [`beatmatch_core::UpdateRule`] shared by every run, with the per-run state (momenta,
//! factored statistics, LSTM state) apart, so a perturbed theta is bound without re-reading a
//! checkpoint and a run's state can be snapshotted and restored. The whole update runs on host
//! buffers in one pass per tensor (features, per-parameter MLP and update fused; the per-tensor
//! normaliser takes a first pass): no `[N, 30]` temporaries.

pub mod accum;
pub mod checkpoint;
pub mod features;
pub mod init;
pub mod mlp_lopt;
pub mod small_fc;
pub mod theta;
pub mod velo;

use beatmatch_core::{Bound, Optimizer, ParamInfo};
use checkpoint::{Architecture, Checkpoint};
use std::sync::Arc;

/// Build the optimizer a checkpoint holds for tensors `params` (one member); a missing or
/// mis-shaped meta-parameter is an error naming the tensor and both shapes.
pub fn build(ckpt: &Checkpoint, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, theta::ThetaError> {
    build_configured(ckpt.arch, &ckpt.theta, &ckpt.hyperparameters, 1, 1, params)
}

/// Build architecture `arch` bound to `theta` over `members` members (each its own state).
pub fn build_members(arch: Architecture, theta: &theta::Theta, members: usize, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, theta::ThetaError> {
    build_threaded(arch, theta, members, 1, params)
}

/// [`build_members`] splitting each large tensor's update over `threads` threads where the
/// architecture supports it (VeLO, small_fc; MLP-LOpt runs on one): the same bits either way.
pub fn build_threaded(
    arch: Architecture,
    theta: &theta::Theta,
    members: usize,
    threads: usize,
    params: &[ParamInfo],
) -> Result<Box<dyn Optimizer>, theta::ThetaError> {
    build_configured(arch, theta, &Hyperparameters::default(), members, threads, params)
}

/// Hyperparameters a checkpoint sets (see [`checkpoint::Checkpoint::hyperparameters`]):
/// `step_mult` and `exp_mult` of small_fc and MLP-LOpt.
pub type Hyperparameters = std::collections::BTreeMap<String, f64>;

/// [`build_threaded`] with a checkpoint's hyperparameters (checked when it was loaded).
pub fn build_configured(
    arch: Architecture,
    theta: &theta::Theta,
    hyper: &Hyperparameters,
    members: usize,
    threads: usize,
    params: &[ParamInfo],
) -> Result<Box<dyn Optimizer>, theta::ThetaError> {
    Ok(match arch {
        Architecture::Velo => {
            Box::new(Bound::new(Arc::new(velo::VeloNet::bind(theta, velo::VeloConfig::default())?.with_members(members).with_threads(threads)), params))
        }
        Architecture::SmallFc => Box::new(Bound::new(Arc::new(bind_small_fc(theta, hyper)?.with_members(members).with_threads(threads)), params)),
        Architecture::MlpLopt => Box::new(Bound::new(Arc::new(bind_mlp_lopt(theta, hyper)?.with_members(members)), params)),
    })
}

fn hyper_or(hyper: &Hyperparameters, key: &str, default: f32) -> f32 {
    hyper.get(key).map_or(default, |&v| v as f32)
}

/// small_fc_lopt bound to `theta` with a checkpoint's hyperparameters (defaults where unset).
pub fn bind_small_fc(theta: &theta::Theta, hyper: &Hyperparameters) -> Result<small_fc::SmallFcNet, theta::ThetaError> {
    let d = small_fc::SmallFcConfig::default();
    small_fc::SmallFcNet::bind(
        theta,
        small_fc::SmallFcConfig { exp_mult: hyper_or(hyper, "exp_mult", d.exp_mult), step_mult: hyper_or(hyper, "step_mult", d.step_mult) },
    )
}

/// MLP-LOpt bound to `theta` with a checkpoint's hyperparameters (defaults where unset).
pub fn bind_mlp_lopt(theta: &theta::Theta, hyper: &Hyperparameters) -> Result<mlp_lopt::MlpLoptNet, theta::ThetaError> {
    let d = mlp_lopt::MlpLoptConfig::default();
    mlp_lopt::MlpLoptNet::bind(
        theta,
        mlp_lopt::MlpLoptConfig { exp_mult: hyper_or(hyper, "exp_mult", d.exp_mult), step_mult: hyper_or(hyper, "step_mult", d.step_mult) },
    )
}

/// Whether the architecture ignores the training horizon (so one run serves every budget).
/// VeLO reads it (fraction of training done, loss-buffer half-lives); the other two do not.
pub fn is_horizon_free(arch: Architecture) -> bool {
    arch != Architecture::Velo
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
