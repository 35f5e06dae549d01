//! Learned optimizers — VeLO, small_fc_lopt, MLP-LOpt — implemented from learned_optimization's
//! reference code, behind the same [`beatmatch_core::Optimizer`] interface as the baselines,
//! and their checkpoints (learned_optimization's msgpack format and beatmatch's native one).
//!
//! The whole update runs on host buffers in one pass per tensor (features, per-parameter MLP
//! and update fused; the per-tensor normaliser takes a first pass): no `[N, 30]` temporaries.

pub mod accum;
pub mod checkpoint;
pub mod features;
pub mod mlp_lopt;
pub mod small_fc;
pub mod theta;
pub mod velo;

use beatmatch_core::{Optimizer, ParamInfo};
use checkpoint::{Architecture, Checkpoint};

/// Build the optimizer a checkpoint holds for tensors `params`; a missing or mis-shaped
/// meta-parameter is an error naming the tensor and both shapes.
pub fn build(ckpt: &Checkpoint, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>, theta::ThetaError> {
    Ok(match ckpt.arch {
        Architecture::Velo => Box::new(velo::Velo::new(&ckpt.theta, velo::VeloConfig::default(), params)?),
        Architecture::SmallFc => Box::new(small_fc::SmallFc::new(&ckpt.theta, small_fc::SmallFcConfig::default(), params)?),
        Architecture::MlpLopt => Box::new(mlp_lopt::MlpLopt::new(&ckpt.theta, mlp_lopt::MlpLoptConfig::default(), params)?),
    })
}

/// Whether the architecture ignores the training horizon (so one run serves every budget).
/// VeLO reads it (fraction of training done, loss-buffer half-lives); the other two do not.
pub fn is_horizon_free(arch: Architecture) -> bool {
    arch != Architecture::Velo
}
