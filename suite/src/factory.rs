//! The optimizer factory: the one place that turns an optimizer spec into an optimizer,
//! hand-designed or learned. Every front end (`run`, `validate`, `plan`'s calibration, meta
//! evaluation) builds through it.
//!
//! Learned optimizers are named on the command line as `velo:PATH`, `small_fc:PATH` or
//! `mlp_lopt:PATH`; their spec carries the checkpoint's SHA-256 and the file is loaded once.

use anyhow::{bail, Context, Result};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};
use beatmatch_learned::checkpoint::{self, Architecture, Checkpoint};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The default candidate of `suite run` and `suite ci`: small_fc_lopt meta-trained here by
/// `learned/recipes/small_fc_es_mnist1d.yaml` (see the README for how it scores).
pub const DEFAULT_CANDIDATE: &str = "small_fc:learned/checkpoints/small_fc_es_mnist1d.safetensors";

/// `path` as given when it exists, else relative to the workspace the binary was built from (so
/// the shipped checkpoints are found from any working directory).
pub fn resolve_shipped(path: &Path) -> std::path::PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shipped = root.join(path);
    if shipped.exists() {
        shipped
    } else {
        path.to_path_buf()
    }
}

/// Builds optimizers from specs; holds the learned checkpoints loaded so far, by SHA-256.
#[derive(Clone, Default)]
pub struct OptimizerFactory {
    by_sha: HashMap<String, Arc<Checkpoint>>,
    /// Threads a learned optimizer's update may use (1 unless the run has cores to itself).
    pub learned_threads: usize,
    /// Build for the device path (`crate::target::Target::device_path`): every optimizer as
    /// its device implementation (`beatmatch-device`).
    pub device_path: bool,
}

impl OptimizerFactory {
    /// Parse a candidate: `kind:key=value,...` for hand-designed optimizers, `ARCH:PATH` for
    /// learned ones (the checkpoint is loaded and checked now).
    pub fn parse_candidate(&mut self, text: &str) -> Result<OptimizerSpec> {
        if let Some((kind, path)) = text.split_once(':') {
            if let Some(arch) = Architecture::parse(kind) {
                let ckpt = checkpoint::load(&resolve_shipped(Path::new(path)), Some(arch))?;
                return Ok(self.add_checkpoint(ckpt));
            }
        }
        Ok(OptimizerSpec::parse(text)?)
    }

    /// Register a loaded checkpoint; returns the spec that names it.
    pub fn add_checkpoint(&mut self, ckpt: Checkpoint) -> OptimizerSpec {
        let spec = OptimizerSpec { checkpoint: Some(ckpt.sha256.clone()), ..OptimizerSpec::new(ckpt.arch.as_str()) };
        self.by_sha.insert(ckpt.sha256.clone(), Arc::new(ckpt));
        spec
    }

    /// Build the optimizer `spec` names for tensors `params` (one member).
    pub fn build(&self, spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
        self.build_members(std::slice::from_ref(spec), params)
    }

    /// Build one optimizer over several members, member `k` configured by `specs[k]`: specs of
    /// one hand-designed kind, or copies of one learned checkpoint.
    pub fn build_members(&self, specs: &[OptimizerSpec], params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
        let Some(first) = specs.first() else { bail!("an optimizer needs at least one member") };
        match &first.checkpoint {
            Some(sha) => {
                if let Some(other) = specs.iter().find(|s| s != &first) {
                    bail!("members of one learned optimizer share its checkpoint: `{other}` differs from `{first}`");
                }
                let ckpt = self.by_sha.get(sha).with_context(|| format!("checkpoint {sha} was not loaded"))?;
                if ckpt.arch.as_str() != first.kind {
                    bail!("checkpoint {sha} is {}, not {}", ckpt.arch.as_str(), first.kind);
                }
                if self.device_path {
                    return beatmatch_device::build_learned(ckpt.arch, &ckpt.theta, &ckpt.hyperparameters, specs.len(), params, &candle_core::Device::Cpu);
                }
                Ok(beatmatch_learned::build_configured(ckpt.arch, &ckpt.theta, &ckpt.hyperparameters, specs.len(), self.learned_threads.max(1), params)?)
            }
            None if self.device_path => beatmatch_device::build_members(specs, params),
            None => beatmatch_baselines::build_members(specs, params),
        }
    }

    /// Whether one run to the longest budget can be read off at shorter budgets.
    pub fn is_horizon_free(spec: &OptimizerSpec) -> bool {
        match Architecture::parse(&spec.kind) {
            Some(arch) if spec.checkpoint.is_some() => beatmatch_learned::is_horizon_free(arch),
            _ => beatmatch_baselines::is_horizon_free(spec),
        }
    }

    /// Legend label: learned optimizers are "hyperparameter-free (1 trial)".
    pub fn legend(spec: &OptimizerSpec) -> String {
        match (Architecture::parse(&spec.kind), spec.checkpoint.as_deref()) {
            (Some(arch), Some(sha)) => {
                let name = match arch {
                    Architecture::Velo => "VeLO",
                    Architecture::SmallFc => "small_fc_lopt",
                    Architecture::MlpLopt => "MLP-LOpt",
                };
                format!("{name} {}, hyperparameter-free (1 trial)", &sha[..8.min(sha.len())])
            }
            _ => format!("{spec} (1 trial)"),
        }
    }
}
