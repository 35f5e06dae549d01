//! beatmatch's native checkpoint format: `NAME.safetensors` (every meta-parameter as an F32
//! tensor named by its `/`-joined path) and `NAME.yaml` beside it:
//!
//! ```yaml
//! architecture: velo          # velo | small_fc | mlp_lopt
//! hyperparameters: {}         # architecture hyperparameters that differ from the defaults
//! source: params (sha256 …)   # where the weights came from
//! ```

use crate::arch::Architecture;
use crate::theta::Theta;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The YAML sidecar.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// Architecture.
    pub architecture: Architecture,
    /// Hyperparameters differing from the architecture's defaults.
    #[serde(default)]
    pub hyperparameters: BTreeMap<String, f64>,
    /// Provenance.
    #[serde(default)]
    pub source: String,
    /// For a checkpoint written by meta-training: what made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_training: Option<MetaProvenance>,
}

/// What made a meta-trained checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaProvenance {
    /// The recipe's name.
    pub recipe: String,
    /// SHA-256 of the recipe file's bytes (hex).
    pub recipe_sha256: String,
    /// Outer steps taken when this theta was written.
    pub outer_step: u64,
    /// `beatmatch_core::code_version()` of the code that trained it.
    pub code_version: String,
    /// Validation score of this theta (mean normalised final train loss over the recipe's
    /// validation tasks; lower is better), when it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<f64>,
}

/// The sidecar path for a safetensors path.
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("yaml")
}

/// Read a native checkpoint (`bytes` = the safetensors file; the sidecar is read beside it).
pub fn read(path: &Path, bytes: &[u8]) -> Result<(Theta, Sidecar)> {
    let side = sidecar_path(path);
    let text =
        std::fs::read_to_string(&side).with_context(|| format!("{}: missing sidecar {} (architecture and hyperparameters)", path.display(), side.display()))?;
    parse(path, bytes, &text)
}

/// Parse a native checkpoint from its safetensors bytes and its sidecar's text (`path` names
/// the weights in errors).
pub fn parse(path: &Path, bytes: &[u8], text: &str) -> Result<(Theta, Sidecar)> {
    let side = sidecar_path(path);
    let sidecar: Sidecar = serde_yaml::from_str(text).map_err(|e| {
        let loc = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        anyhow::anyhow!("{}{loc}: {e}", side.display())
    })?;
    let (tensors, _) = super::decode_safetensors(path, bytes)?;
    Ok((Theta { tensors }, sidecar))
}

/// Write `theta` as a native checkpoint at `path` (and its sidecar).
pub fn write(path: &Path, theta: &Theta, sidecar: &Sidecar) -> Result<()> {
    let data = super::safetensors_bytes(&theta.tensors, None)?;
    // Sidecar first, each file whole or not at all: a crash leaves the old pair or a sidecar
    // beside the old weights, never a torn file.
    beatmatch_core::store::write_atomic(&sidecar_path(path), serde_yaml::to_string(sidecar)?.as_bytes())
        .with_context(|| format!("writing {}", sidecar_path(path).display()))?;
    beatmatch_core::store::write_atomic(path, &data).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
