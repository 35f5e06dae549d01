//! Readers (and writers) of learned-optimizer checkpoints; what an architecture is lives in
//! [`crate::arch`]. Three formats:
//! * learned_optimization's own msgpack (`.msgpack`, or the published VeLO file `params`), and
//!   the bare flax theta maps Celo publishes (`theta.state`), read natively — see [`msgpack`];
//! * beatmatch's native format — see [`native`]: safetensors plus a YAML sidecar naming the
//!   architecture and its hyperparameters;
//! * PyLO's safetensors (Belilovsky-Lab/pylo: VeLO's `VeLO_RNN` + `VeLO_MLP`, μLO's `MetaMLP`),
//!   PyTorch tensor names and layouts mapped onto beatmatch's — see [`pylo`].

pub mod msgpack;
pub mod native;
pub mod pylo;
pub mod torch_pt;

use crate::arch::Architecture;
use crate::theta::{Tensor, Theta};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Hyperparameters that differ from the architecture's defaults (`step_mult`, `exp_mult`).
    pub hyperparameters: crate::Hyperparameters,
    /// The format it was read in.
    pub format: Format,
}

/// A checkpoint's file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// learned_optimization's msgpack (`ParameterCheckpoint`).
    Msgpack,
    /// A bare flax msgpack theta map (Celo's published `theta.state`).
    FlaxTheta,
    /// beatmatch's safetensors + YAML sidecar.
    Native,
    /// PyLO's safetensors (PyTorch names and layouts).
    Pylo,
    /// A PyTorch `.pt` state dict (PyLO's Celo2 `celo2_weights.pt`).
    TorchPt,
}

impl Format {
    /// For messages: `learned_optimization msgpack`, `beatmatch native`, `PyLO safetensors`.
    pub fn describe(self) -> &'static str {
        match self {
            Format::Msgpack => "learned_optimization msgpack",
            Format::FlaxTheta => "flax msgpack theta (Celo's theta.state)",
            Format::Native => "beatmatch native (safetensors + YAML sidecar)",
            Format::Pylo => "PyLO safetensors (PyTorch names, mapped)",
            Format::TorchPt => "PyTorch .pt state dict (PyLO's Celo2 names, mapped)",
        }
    }
}

/// Every tensor of safetensors `bytes` (read from `path`, for messages), which must all be F32,
/// and the file's metadata.
pub(crate) fn decode_safetensors(path: &Path, bytes: &[u8]) -> Result<(BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    let corrupt = |e: safetensors::SafeTensorError| anyhow::anyhow!("{}: not a valid safetensors file (truncated or corrupt): {e}", path.display());
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(corrupt)?;
    let meta = header.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(corrupt)?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            bail!("{}: tensor `{name}` is {:?}; expected F32", path.display(), view.dtype());
        }
        let data = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        tensors.insert(name, Tensor { shape: view.shape().to_vec(), data });
    }
    Ok((tensors, meta))
}

/// `tensors` (and optional metadata) as the bytes of an F32 safetensors file.
pub fn safetensors_bytes(tensors: &BTreeMap<String, Tensor>, metadata: Option<std::collections::HashMap<String, String>>) -> Result<Vec<u8>> {
    let bytes: BTreeMap<&String, Vec<u8>> = tensors.iter().map(|(k, t)| (k, t.data.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(&String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(k, t)| Ok((k, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), &bytes[k])?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, metadata)?)
}

/// Hex SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Load a checkpoint in either format. `expected`, when given (from `--candidate velo:PATH`),
/// must match the file's architecture.
///
/// A `.safetensors` file with a `.yaml` sidecar is native; one without, or a directory of
/// `.safetensors` files (PyLO publishes VeLO as two), is PyLO's; anything else msgpack.
pub fn load(path: &Path, expected: Option<Architecture>) -> Result<Checkpoint> {
    if path.is_dir() || (path.extension().is_some_and(|e| e == "safetensors") && !native::sidecar_path(path).exists()) {
        let (theta, arch, hyperparameters, sha) = pylo::read(path)?;
        if let Some(e) = expected.filter(|&e| e != arch) {
            bail!("{}: expected a {} checkpoint, but the PyLO file holds {}", path.display(), e.as_str(), arch.as_str());
        }
        return Ok(Checkpoint { path: path.to_path_buf(), arch, theta, sha256: sha, hyperparameters, format: Format::Pylo });
    }
    if path.extension().is_some_and(|e| e == "pt") {
        let theta = torch_pt::celo2_theta(path, &torch_pt::read_state_dict(path)?)?;
        let arch = crate::celo2::CELO2;
        if let Some(e) = expected.filter(|&e| e != arch) {
            bail!("{}: expected a {} checkpoint, but the .pt file holds {}", path.display(), e.as_str(), arch.as_str());
        }
        let sha = sha256(&std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?);
        return Ok(Checkpoint { path: path.to_path_buf(), arch, theta, sha256: sha, hyperparameters: Default::default(), format: Format::TorchPt });
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
    let is_native = path.extension().is_some_and(|e| e == "safetensors");
    let mut hyperparameters = crate::Hyperparameters::default();
    let mut wrapped = true;
    let (theta, declared) = if is_native {
        let (theta, sidecar) = native::read(path, &bytes)?;
        sidecar.architecture.check_hyperparameters(&sidecar.hyperparameters).with_context(|| format!("{}", native::sidecar_path(path).display()))?;
        hyperparameters = sidecar.hyperparameters;
        (theta, Some(sidecar.architecture))
    } else {
        let (theta, w) = msgpack::read_tree(&bytes).with_context(|| format!("{}", path.display()))?;
        wrapped = w;
        (theta, None)
    };
    let detected = Architecture::detect(&theta);
    let arch = match (expected, declared.or(detected)) {
        (Some(e), Some(found)) if e != found => {
            bail!("{}: expected a {} checkpoint, but the file holds {}", path.display(), e.as_str(), found.as_str())
        }
        (Some(e), None) => e,
        (_, Some(found)) => found,
        (None, None) => bail!("{}: cannot tell the architecture (no tensors of {}); name it as `ARCH:PATH`", path.display(), Architecture::names()),
    };
    let format = match (is_native, wrapped) {
        (true, _) => Format::Native,
        (false, true) => Format::Msgpack,
        (false, false) => Format::FlaxTheta,
    };
    Ok(Checkpoint { path: path.to_path_buf(), arch, theta, sha256: sha256(&bytes), hyperparameters, format })
}
