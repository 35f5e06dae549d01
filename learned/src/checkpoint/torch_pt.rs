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
///
/// The file is untrusted: before candle's reader sees it, every length its pickle declares
/// must fit in the pickle, and every tensor's declared extent in its storage entry — so
/// nothing is allocated that the file's own size does not justify (fuzzing found candle's
/// reader allocating a declared string length of 1.7 GB).
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let corrupt = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!("{}: not a readable PyTorch .pt file ({len} bytes: truncated or corrupt; a .pt is a zip whose directory ends the file): {e}", path.display())
    };
    let entries = check_archive(path).map_err(|e| corrupt(&format!("{e:#}")))?;
    let pth = candle_core::pickle::PthTensors::new(path, None).map_err(|e| corrupt(&e))?;
    let mut all = Vec::new();
    for (name, info) in pth.tensor_infos() {
        let bytes = info.layout.shape().dims().iter().try_fold(info.dtype.size_in_bytes(), |a, &d| a.checked_mul(d)).and_then(|b| b.checked_add(info.layout.start_offset()));
        let stored = entries.get(&info.path).copied().unwrap_or(0);
        if bytes.is_none_or(|b| b as u64 > stored) {
            bail!("{}: tensor `{name}` declares shape {:?} at offset {}, beyond its storage `{}` of {stored} bytes", path.display(), info.layout.dims(), info.layout.start_offset(), info.path);
        }
        let t = pth.get(name).map_err(|e| corrupt(&e))?.with_context(|| format!("{}: tensor `{name}`", path.display()))?;
        all.push((name.clone(), t));
    }
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

/// Open the archive, check its pickle (see [`check_pickle`]) and return each entry's size.
fn check_archive(path: &Path) -> Result<BTreeMap<String, u64>> {
    use std::io::Read;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(std::fs::File::open(path)?))?;
    let file_len = std::fs::metadata(path)?.len();
    let mut sizes = BTreeMap::new();
    for i in 0..zip.len() {
        let entry = zip.by_index(i)?;
        let name = entry.name()?.to_string();
        // PyTorch stores its entries uncompressed: none can be larger than the file.
        if entry.size() > file_len {
            bail!("`{name}` declares {} bytes in a file of {file_len}", entry.size());
        }
        sizes.insert(name, entry.size());
    }
    for (name, &size) in &sizes {
        if name.ends_with("data.pkl") {
            let mut pickle = Vec::with_capacity(size as usize);
            zip.by_name(name)?.take(size).read_to_end(&mut pickle)?;
            check_pickle(&pickle).with_context(|| format!("`{name}`"))?;
        }
    }
    Ok(sizes)
}

/// Walk the pickle's opcodes (those candle's reader knows) and check that every argument —
/// above all every declared string length — lies within the pickle.
fn check_pickle(p: &[u8]) -> Result<()> {
    let mut at = 0usize;
    let need = |at: usize, n: usize| -> Result<()> {
        if at.checked_add(n).is_none_or(|end| end > p.len()) {
            bail!("an argument of {n} bytes at byte {at} runs past the pickle's end ({} bytes)", p.len());
        }
        Ok(())
    };
    while at < p.len() {
        let op = p[at];
        at += 1;
        let arg = match op {
            0x80 | b'q' | b'K' | b'h' => 1,
            b'M' => 2,
            b'r' | b'J' | b'j' => 4,
            b'G' => 8,
            b'X' => {
                need(at, 4)?;
                4 + u32::from_le_bytes(p[at..at + 4].try_into().expect("4 bytes")) as usize
            }
            0x8a => {
                need(at, 1)?;
                1 + p[at] as usize
            }
            b'c' => {
                // Two newline-terminated names.
                let mut n = 0;
                for _ in 0..2 {
                    n += p[at + n..].iter().position(|&b| b == b'\n').with_context(|| format!("an unterminated GLOBAL name at byte {at}"))? + 1;
                }
                n
            }
            b')' | b'R' | b'(' | b't' | b'Q' | 0x85 | 0x86 | 0x87 | 0x88 | 0x89 | b'N' | b's' | b'u' | b'}' | b'd' | b'b' | 0x81 | b']' | b'a' | b'e' => 0,
            b'.' => return Ok(()),
            other => bail!("unsupported pickle opcode 0x{other:02x} at byte {}", at - 1),
        };
        need(at, arg)?;
        at += arg;
    }
    bail!("the pickle ends without its STOP opcode")
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

#[cfg(test)]
mod tests {
    use super::check_pickle;

    #[test]
    fn declared_lengths_must_fit_in_the_pickle() {
        // PROTO 2, BINUNICODE "ab", STOP.
        assert!(check_pickle(b"\x80\x02X\x02\x00\x00\x00ab.").is_ok());
        let e = check_pickle(b"\x80\x02X\x00\x00\x00\x40ab.").unwrap_err().to_string();
        assert!(e.contains("1073741828 bytes at byte 3") && e.contains("past the pickle's end"), "{e}");
        let e = check_pickle(b"\x80\x02\xff.").unwrap_err().to_string();
        assert!(e.contains("unsupported pickle opcode 0xff at byte 2"), "{e}");
        assert!(check_pickle(b"\x80\x02").unwrap_err().to_string().contains("without its STOP"));
        assert!(check_pickle(b"ctorch\nFloat").unwrap_err().to_string().contains("unterminated GLOBAL"));
    }
}
