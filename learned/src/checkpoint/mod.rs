//! Learned-optimizer checkpoints in two formats:
//! * learned_optimization's own msgpack (`.msgpack`, or the published VeLO file `params`), read
//!   natively — see [`msgpack`];
//! * beatmatch's native format — see [`native`]: safetensors plus a YAML sidecar naming the
//!   architecture and its hyperparameters.

pub mod msgpack;
pub mod native;

use crate::theta::Theta;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The learned-optimizer architectures beatmatch implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// VeLO (HyperV2, LSTM 512, 256 MLPs).
    Velo,
    /// small_fc_lopt (AdafacMLPLOpt).
    SmallFc,
    /// MLP-LOpt (MLPLOpt).
    MlpLopt,
}

impl Architecture {
    /// Every architecture.
    pub const ALL: [Architecture; 3] = [Architecture::Velo, Architecture::SmallFc, Architecture::MlpLopt];

    /// Command-line name: `velo`, `small_fc`, `mlp_lopt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Velo => crate::velo::ARCH,
            Architecture::SmallFc => crate::small_fc::ARCH,
            Architecture::MlpLopt => crate::mlp_lopt::ARCH,
        }
    }

    /// Parse a command-line name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// Guess from the tensor names (learned_optimization files do not name their architecture).
    pub fn detect(theta: &Theta) -> Option<Self> {
        let has = |k: &str| theta.tensors.contains_key(k);
        if has("rnn_params/rnn/linear/w") {
            Some(Architecture::Velo)
        } else if has("nn/~/w0") {
            Some(Architecture::SmallFc)
        } else if has("mlp/~/linear_0/w") {
            Some(Architecture::MlpLopt)
        } else {
            None
        }
    }
}

/// A loaded checkpoint.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its architecture.
    pub arch: Architecture,
    /// Meta-parameters.
    pub theta: Theta,
    /// SHA-256 of the file's bytes (hex), which names the optimizer in run records.
    pub sha256: String,
}

/// Hex SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Load a checkpoint in either format. `expected`, when given (from `--candidate velo:PATH`),
/// must match the file's architecture.
pub fn load(path: &Path, expected: Option<Architecture>) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    let is_native = path.extension().is_some_and(|e| e == "safetensors");
    let (theta, declared) = if is_native {
        let (theta, sidecar) = native::read(path, &bytes)?;
        (theta, Some(sidecar.architecture))
    } else {
        (msgpack::read(&bytes).with_context(|| format!("{}", path.display()))?, None)
    };
    let detected = Architecture::detect(&theta);
    let arch = match (expected, declared.or(detected)) {
        (Some(e), Some(found)) if e != found => {
            bail!("{}: expected a {} checkpoint, but the file holds {}", path.display(), e.as_str(), found.as_str())
        }
        (Some(e), None) => e,
        (_, Some(found)) => found,
        (None, None) => bail!("{}: cannot tell the architecture (no VeLO, small_fc or mlp_lopt tensors); name it as `velo:PATH`", path.display()),
    };
    Ok(Checkpoint { path: path.to_path_buf(), arch, theta, sha256: sha256(&bytes) })
}
