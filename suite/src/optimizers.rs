//! One place that turns an optimizer spec into an optimizer, hand-designed or learned.
//!
//! Learned optimizers are named on the command line as `velo:PATH`, `small_fc:PATH` or
//! `mlp_lopt:PATH`; their spec carries the checkpoint's SHA-256 and the file is loaded once.

use anyhow::{bail, Context, Result};
use beatmatch_core::{Optimizer, OptimizerSpec, ParamInfo};
use beatmatch_learned::checkpoint::{self, Architecture, Checkpoint};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Loaded checkpoints by SHA-256.
#[derive(Clone, Default)]
pub struct Checkpoints {
    by_sha: HashMap<String, Arc<Checkpoint>>,
}

impl Checkpoints {
    /// Parse a candidate: `kind:key=value,...` for hand-designed optimizers, `ARCH:PATH` for
    /// learned ones (the checkpoint is loaded and checked now).
    pub fn parse_candidate(&mut self, text: &str) -> Result<OptimizerSpec> {
        if let Some((kind, path)) = text.split_once(':') {
            if let Some(arch) = Architecture::parse(kind) {
                let ckpt = checkpoint::load(Path::new(path), Some(arch))?;
                let spec = OptimizerSpec { checkpoint: Some(ckpt.sha256.clone()), ..OptimizerSpec::new(arch.as_str()) };
                self.by_sha.insert(ckpt.sha256.clone(), Arc::new(ckpt));
                return Ok(spec);
            }
        }
        Ok(OptimizerSpec::parse(text)?)
    }

    /// Build the optimizer `spec` names for tensors `params`.
    pub fn build(&self, spec: &OptimizerSpec, params: &[ParamInfo]) -> Result<Box<dyn Optimizer>> {
        match &spec.checkpoint {
            Some(sha) => {
                let ckpt = self.by_sha.get(sha).with_context(|| format!("checkpoint {sha} was not loaded"))?;
                if ckpt.arch.as_str() != spec.kind {
                    bail!("checkpoint {sha} is {}, not {}", ckpt.arch.as_str(), spec.kind);
                }
                Ok(beatmatch_learned::build(ckpt, params)?)
            }
            None => beatmatch_baselines::build(spec, params),
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
        match Architecture::parse(&spec.kind) {
            Some(arch) if spec.checkpoint.is_some() => {
                let name = match arch {
                    Architecture::Velo => "VeLO",
                    Architecture::SmallFc => "small_fc_lopt",
                    Architecture::MlpLopt => "MLP-LOpt",
                };
                format!(
                    "{name} {}, hyperparameter-free (1 trial)",
                    &spec.checkpoint.as_deref().unwrap_or("")[..8.min(spec.checkpoint.as_deref().map_or(0, str::len))]
                )
            }
            _ => format!("{spec} (1 trial)"),
        }
    }
}
