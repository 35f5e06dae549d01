//! PyTorch `.pt` state dicts — a zip of a pickle (`data.pkl`) and raw little-endian storages —
//! read natively through candle's pickle reader, no Python: PyLO's Celo2 weights
//! (`pylo/models/celo2_weights.pt`, its `Celo2MLP`). Names and `nn.Linear` layouts (`weight`
//! is `[out, in]`) are mapped onto the JAX reference's haiku tree, the exact inverse of PyLO's
//! `scripts/convert_celo2_checkpoint.py`: `first_layer_weights.i` `[H, g]` (or the dense
//! `first_layer.weight` `[H, 30]`, split into the 14 input groups) → `ff_mod_stack/~/w0__i`
//! `[g, H]`, `first_layer_bias` → `b0`, `hidden.weight`/`.bias` → `w1`/`b1`,
//! `output.weight`/`.bias` → `w2`/`b2`. Only names, shapes and transposes change.

use crate::theta::{Tensor, Theta};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The per-parameter MLP's 14 input groups (widths), in order: VeLO's and Celo2's.
const GROUPS: [usize; 14] = [1, 1, 1, 3, 1, 3, 1, 3, 1, 3, 3, 3, 3, 3];

/// Every float32 tensor of the `.pt` file at `path`, by its state-dict key.
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let all = candle_core::pickle::read_all(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a readable PyTorch .pt file ({len} bytes: truncated or corrupt; a .pt is a zip whose directory ends the file): {e}",
            path.display()
        )
    })?;
    let mut out = BTreeMap::new();
    for (name, t) in all {
        if t.dtype() != candle_core::DType::F32 {
            bail!("{}: tensor `{name}` is {:?}; expected float32", path.display(), t.dtype());
        }
        let data = t.flatten_all().and_then(|f| f.to_vec1::<f32>()).with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        out.insert(name, Tensor { shape: t.dims().to_vec(), data });
    }
    if out.is_empty() {
        bail!("{}: the .pt file holds no tensors", path.display());
    }
    Ok(out)
}

fn take<'a>(sd: &'a BTreeMap<String, Tensor>, path: &Path, key: &str, rank: usize) -> Result<&'a Tensor> {
    let t = sd.get(key).with_context(|| format!("{}: no tensor `{key}` (keys: {})", path.display(), sd.keys().cloned().collect::<Vec<_>>().join(", ")))?;
    if t.shape.len() != rank {
        bail!("{}: tensor `{key}` has shape {:?}; expected rank {rank}", path.display(), t.shape);
    }
    Ok(t)
}

/// `[out, in]` → `[in, out]`.
fn transposed(t: &Tensor) -> Tensor {
    let (o, i) = (t.shape[0], t.shape[1]);
    let mut data = vec![0.0; o * i];
    for r in 0..o {
        for c in 0..i {
            data[c * o + r] = t.data[r * i + c];
        }
    }
    Tensor { shape: vec![i, o], data }
}

/// PyLO's `Celo2MLP` state dict (per-group or dense first layer) as the haiku theta.
pub fn celo2_theta(path: &Path, sd: &BTreeMap<String, Tensor>) -> Result<Theta> {
    let mut theta = Theta::default();
    let mut put = |name: &str, t: Tensor| theta.tensors.insert(format!("ff_mod_stack/~/{name}"), t);
    if sd.contains_key("first_layer.weight") {
        let w = transposed(take(sd, path, "first_layer.weight", 2)?);
        if w.shape[0] != GROUPS.iter().sum::<usize>() {
            bail!("{}: tensor `first_layer.weight` has shape {:?}; expected [H, 30]", path.display(), [w.shape[1], w.shape[0]]);
        }
        let h = w.shape[1];
        let mut row = 0;
        for (i, &g) in GROUPS.iter().enumerate() {
            put(&format!("w0__{i}"), Tensor { shape: vec![g, h], data: w.data[row * h..(row + g) * h].to_vec() });
            row += g;
        }
        put("b0", take(sd, path, "first_layer.bias", 1)?.clone());
    } else {
        for i in 0..GROUPS.len() {
            put(&format!("w0__{i}"), transposed(take(sd, path, &format!("first_layer_weights.{i}"), 2)?));
        }
        put("b0", take(sd, path, "first_layer_bias", 1)?.clone());
    }
    put("w1", transposed(take(sd, path, "hidden.weight", 2)?));
    put("b1", take(sd, path, "hidden.bias", 1)?.clone());
    put("w2", transposed(take(sd, path, "output.weight", 2)?));
    put("b2", take(sd, path, "output.bias", 1)?.clone());
    Ok(theta)
}
