//! beatmatch's native checkpoint format: `NAME.safetensors` (every meta-parameter as an F32
//! tensor named by its `/`-joined path) and `NAME.yaml` beside it:
//!
//! ```yaml
//! architecture: velo          # velo | small_fc | mlp_lopt
//! hyperparameters: {}         # architecture hyperparameters that differ from the defaults
//! source: params (sha256 …)   # where the weights came from
//! ```

use super::Architecture;
use crate::theta::{Tensor, Theta};
use anyhow::{bail, Context, Result};
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
}

/// The sidecar path for a safetensors path.
pub fn sidecar_path(path: &Path) -> PathBuf {
    path.with_extension("yaml")
}

/// Read a native checkpoint (`bytes` = the safetensors file).
pub fn read(path: &Path, bytes: &[u8]) -> Result<(Theta, Sidecar)> {
    let side = sidecar_path(path);
    let text =
        std::fs::read_to_string(&side).with_context(|| format!("{}: missing sidecar {} (architecture and hyperparameters)", path.display(), side.display()))?;
    let sidecar: Sidecar = serde_yaml::from_str(&text).map_err(|e| {
        let loc = e.location().map(|l| format!(":{}:{}", l.line(), l.column())).unwrap_or_default();
        anyhow::anyhow!("{}{loc}: {e}", side.display())
    })?;
    if !sidecar.hyperparameters.is_empty() {
        bail!("{}: non-default hyperparameters {:?} are not supported yet", side.display(), sidecar.hyperparameters.keys().collect::<Vec<_>>());
    }
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file (truncated or corrupt): {e}", path.display()))?;
    let mut theta = Theta::default();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            bail!("{}: tensor `{name}` is {:?}; expected F32", path.display(), view.dtype());
        }
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        theta.tensors.insert(name, Tensor { shape: view.shape().to_vec(), data });
    }
    Ok((theta, sidecar))
}

/// Write `theta` as a native checkpoint at `path` (and its sidecar).
pub fn write(path: &Path, theta: &Theta, sidecar: &Sidecar) -> Result<()> {
    let bytes: BTreeMap<&String, Vec<u8>> = theta.tensors.iter().map(|(k, t)| (k, t.data.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(&String, safetensors::tensor::TensorView<'_>)> = theta
        .tensors
        .iter()
        .map(|(k, t)| Ok((k, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), &bytes[k])?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let data = safetensors::serialize(views, None)?;
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(sidecar_path(path), serde_yaml::to_string(sidecar)?).with_context(|| format!("writing {}", sidecar_path(path).display()))?;
    Ok(())
}
