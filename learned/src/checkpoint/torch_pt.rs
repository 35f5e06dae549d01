//! PyTorch `.pt` state dicts — a zip of a pickle (`data.pkl`) and raw little-endian storages —
//! read natively by a small checked unpickler (no Python, no torch): PyLO's Celo2 weights
//! (`pylo/models/celo2_weights.pt`, its `Celo2MLP`). Names and `nn.Linear` layouts (`weight`
//! is `[out, in]`) are mapped onto the JAX reference's haiku tree, the exact inverse of PyLO's
//! `scripts/convert_celo2_checkpoint.py`: `first_layer_weights.i` `[H, g]` (or the dense
//! `first_layer.weight` `[H, 30]`, split into the 14 input groups) → `ff_mod_stack/~/w0__i`
//! `[g, H]`, `first_layer_bias` → `b0`, `hidden.weight`/`.bias` → `w1`/`b1`,
//! `output.weight`/`.bias` → `w2`/`b2`. Only names, shapes and transposes change.

use super::pylo::transpose;
use crate::theta::{Tensor, Theta};
use crate::velo::GROUPS;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Every float32 tensor of the `.pt` file at `path`, by its state-dict key.
///
/// The file is untrusted, so it is read by beatmatch's own small unpickler (fuzzing found
/// candle's reader allocating a declared string length of 1.7 GB from a 7 KB file, and
/// panicking on short argument tuples): only the opcodes a `torch.save`d state dict uses, every
/// declared length checked against the pickle, every tuple's arity checked, every tensor's
/// extent checked against its storage entry, which must fit in the file.
pub fn read_state_dict(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let corrupt =
        |e: anyhow::Error| anyhow::anyhow!("{}: not a readable PyTorch .pt file ({} bytes: truncated or corrupt): {e:#}", path.display(), bytes.len());
    let archive = Archive::open(&bytes).map_err(corrupt)?;
    let dict = unpickle(&archive.pickle).context("data.pkl").map_err(corrupt)?;
    let mut out = BTreeMap::new();
    for (name, value) in dict {
        let t = value.tensor(&archive).with_context(|| format!("tensor `{name}`")).map_err(corrupt)?;
        out.insert(name, t);
    }
    if out.is_empty() {
        bail!("{}: the .pt file holds no tensors", path.display());
    }
    Ok(out)
}

/// A `.pt` zip archive's pickle and storages (PyTorch stores its entries uncompressed).
struct Archive {
    pickle: Vec<u8>,
    /// Storage key (`data/<key>`) → its bytes.
    storages: BTreeMap<String, Vec<u8>>,
}

impl Archive {
    fn open(bytes: &[u8]) -> Result<Self> {
        use std::io::Read;
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| anyhow::anyhow!("a .pt is a zip whose directory ends the file: {e}"))?;
        let mut pickle = None;
        let mut storages = BTreeMap::new();
        for i in 0..zip.len() {
            let entry = zip.by_index(i)?;
            let name = entry.name()?.to_string();
            if entry.size() > bytes.len() as u64 {
                bail!("`{name}` declares {} bytes in a file of {}", entry.size(), bytes.len());
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            let size = entry.size();
            entry.take(size).read_to_end(&mut data).with_context(|| format!("`{name}`"))?;
            if name.ends_with("/data.pkl") || name == "data.pkl" {
                pickle = Some(data);
            } else if let Some((_, key)) = name.rsplit_once("/data/") {
                storages.insert(key.to_string(), data);
            }
        }
        Ok(Self { pickle: pickle.context("no data.pkl in the archive")?, storages })
    }
}

/// The pickle values a state dict is made of.
#[derive(Clone, Debug)]
enum Value {
    Mark,
    None,
    Bool,
    Int(i64),
    Float,
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String, String),
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`.
    Tensor {
        key: String,
        offset: usize,
        size: Vec<usize>,
        stride: Vec<usize>,
    },
    /// `("storage", FloatStorage, key, location, numel)`.
    Storage(String),
}

impl Value {
    fn int(&self) -> Result<i64> {
        match self {
            Value::Int(i) => Ok(*i),
            other => bail!("expected an integer, found {other:?}"),
        }
    }

    fn dims(&self) -> Result<Vec<usize>> {
        let Value::Tuple(items) = self else { bail!("expected a tuple of dimensions, found {self:?}") };
        items.iter().map(|v| usize::try_from(v.int()?).context("a negative dimension")).collect()
    }

    /// The float32 tensor this value rebuilds, read from its storage.
    fn tensor(&self, archive: &Archive) -> Result<Tensor> {
        let Value::Tensor { key, offset, size, stride } = self else { bail!("not a tensor: {self:?}") };
        let numel = size.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).context("shape overflows")?;
        let contiguous: Vec<usize> = (0..size.len()).map(|i| size[i + 1..].iter().product()).collect();
        if numel > 0 && *stride != contiguous {
            bail!("stride {stride:?} of shape {size:?} is not contiguous");
        }
        let data = archive.storages.get(key).with_context(|| format!("no storage `data/{key}`"))?;
        let end = offset.checked_add(numel).and_then(|e| e.checked_mul(4)).context("extent overflows")?;
        if end > data.len() {
            bail!("shape {size:?} at offset {offset} needs {end} bytes of storage `data/{key}`, which has {}", data.len());
        }
        let data = data[offset * 4..end].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        Ok(Tensor { shape: size.clone(), data })
    }
}

/// Run the pickle `p` and return the state dict it builds (name → value).
fn unpickle(p: &[u8]) -> Result<Vec<(String, Value)>> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: BTreeMap<u32, Value> = BTreeMap::new();
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8]> {
        let end = at
            .checked_add(n)
            .filter(|&e| e <= p.len())
            .with_context(|| format!("an argument of {n} bytes at byte {at} runs past the pickle's end ({} bytes)", p.len()))?;
        let s = &p[*at..end];
        *at = end;
        Ok(s)
    };
    let pop = |stack: &mut Vec<Value>, at: usize| stack.pop().with_context(|| format!("stack underflow at byte {at}"));
    let pop_mark = |stack: &mut Vec<Value>, at: usize| -> Result<Vec<Value>> {
        let m = stack.iter().rposition(|v| matches!(v, Value::Mark)).with_context(|| format!("no MARK before byte {at}"))?;
        let items = stack.split_off(m + 1);
        stack.pop();
        Ok(items)
    };
    loop {
        let op_at = at;
        let op = *take(&mut at, 1)?.first().expect("one byte");
        match op {
            0x80 => {
                take(&mut at, 1)?;
            }
            b'c' => {
                let mut names = Vec::new();
                for _ in 0..2 {
                    let n = p[at..].iter().position(|&b| b == b'\n').with_context(|| format!("an unterminated GLOBAL name at byte {at}"))?;
                    names.push(String::from_utf8_lossy(take(&mut at, n + 1)?.split_last().expect("newline").1).into_owned());
                }
                stack.push(Value::Global(names[0].clone(), names[1].clone()));
            }
            b'q' => {
                let k = u32::from(take(&mut at, 1)?[0]);
                memo.insert(k, stack.last().with_context(|| format!("BINPUT on an empty stack at byte {op_at}"))?.clone());
            }
            b'r' => {
                let k = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"));
                memo.insert(k, stack.last().with_context(|| format!("LONG_BINPUT on an empty stack at byte {op_at}"))?.clone());
            }
            b'h' | b'j' => {
                let k = if op == b'h' { u32::from(take(&mut at, 1)?[0]) } else { u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes")) };
                stack.push(memo.get(&k).with_context(|| format!("memo {k} unset at byte {op_at}"))?.clone());
            }
            b'(' => stack.push(Value::Mark),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b']' => stack.push(Value::List(Vec::new())),
            b'}' => stack.push(Value::Dict(Vec::new())),
            b'N' => stack.push(Value::None),
            0x88 | 0x89 => stack.push(Value::Bool),
            b'K' => stack.push(Value::Int(i64::from(take(&mut at, 1)?[0]))),
            b'M' => stack.push(Value::Int(i64::from(u16::from_le_bytes(take(&mut at, 2)?.try_into().expect("2 bytes"))))),
            b'J' => stack.push(Value::Int(i64::from(i32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes"))))),
            0x8a => {
                let n = take(&mut at, 1)?[0] as usize;
                let b = take(&mut at, n)?;
                if n > 8 {
                    bail!("a LONG1 of {n} bytes at byte {op_at}");
                }
                let mut v = 0i64;
                for (i, &x) in b.iter().enumerate() {
                    v |= i64::from(x) << (8 * i);
                }
                stack.push(Value::Int(v));
            }
            b'G' => {
                take(&mut at, 8)?;
                stack.push(Value::Float);
            }
            b'X' => {
                let n = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes")) as usize;
                stack.push(Value::Str(String::from_utf8(take(&mut at, n)?.to_vec()).with_context(|| format!("a string at byte {op_at} is not UTF-8"))?));
            }
            b't' => {
                let items = pop_mark(&mut stack, op_at)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    bail!("TUPLE{n} with {} values on the stack at byte {op_at}", stack.len());
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'a' => {
                let v = pop(&mut stack, op_at)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(v),
                    _ => bail!("APPEND to a non-list at byte {op_at}"),
                }
            }
            b'e' => {
                let items = pop_mark(&mut stack, op_at)?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => bail!("APPENDS to a non-list at byte {op_at}"),
                }
            }
            b's' | b'u' | b'd' => {
                let items = if op == b's' {
                    if stack.len() < 2 {
                        bail!("SETITEM with {} values on the stack at byte {op_at}", stack.len());
                    }
                    stack.split_off(stack.len() - 2)
                } else {
                    pop_mark(&mut stack, op_at)?
                };
                if items.len() % 2 != 0 {
                    bail!("an odd number of dict items at byte {op_at}");
                }
                let pairs: Vec<(Value, Value)> = items.chunks_exact(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect();
                if op == b'd' {
                    stack.push(Value::Dict(pairs));
                } else {
                    match stack.last_mut() {
                        Some(Value::Dict(d)) => d.extend(pairs),
                        _ => bail!("SETITEM(S) on a non-dict at byte {op_at}"),
                    }
                }
            }
            b'Q' => {
                let pid = pop(&mut stack, op_at)?;
                let Value::Tuple(t) = &pid else { bail!("persistent id at byte {op_at} is not a tuple") };
                match t.as_slice() {
                    [Value::Str(kind), Value::Global(_, class), Value::Str(key), _, _] if kind == "storage" => {
                        if class != "FloatStorage" {
                            bail!("storage `{key}` is a {class}; expected float32 (FloatStorage)");
                        }
                        stack.push(Value::Storage(key.clone()));
                    }
                    _ => bail!("persistent id at byte {op_at} is not (\"storage\", FloatStorage, key, location, numel)"),
                }
            }
            b'R' => {
                let args = pop(&mut stack, op_at)?;
                let callable = pop(&mut stack, op_at)?;
                let Value::Tuple(args) = args else { bail!("REDUCE arguments at byte {op_at} are not a tuple") };
                let v = match &callable {
                    Value::Global(m, n) if m == "collections" && n == "OrderedDict" => Value::Dict(Vec::new()),
                    Value::Global(m, n) if m == "torch._utils" && n == "_rebuild_tensor_v2" => match args.as_slice() {
                        [Value::Storage(key), offset, size, stride, ..] => Value::Tensor {
                            key: key.clone(),
                            offset: usize::try_from(offset.int()?).context("a negative storage offset")?,
                            size: size.dims()?,
                            stride: stride.dims()?,
                        },
                        _ => bail!("_rebuild_tensor_v2 at byte {op_at} takes (storage, offset, size, stride, …)"),
                    },
                    other => bail!("REDUCE of {other:?} at byte {op_at}: only OrderedDict and _rebuild_tensor_v2 are read"),
                };
                stack.push(v);
            }
            b'b' => {
                // BUILD: state set on an object (OrderedDict metadata); the object is kept.
                pop(&mut stack, op_at)?;
                if stack.is_empty() {
                    bail!("BUILD without an object at byte {op_at}");
                }
            }
            b'.' => {
                let top = pop(&mut stack, op_at)?;
                let Value::Dict(pairs) = top else { bail!("the pickle's value is not a dict (a state dict)") };
                return pairs
                    .into_iter()
                    .map(|(k, v)| match k {
                        Value::Str(k) => Ok((k, v)),
                        other => bail!("a state-dict key is not a string: {other:?}"),
                    })
                    .collect();
            }
            other => bail!("unsupported pickle opcode 0x{other:02x} at byte {op_at}"),
        }
    }
}

fn take<'a>(sd: &'a BTreeMap<String, Tensor>, path: &Path, key: &str, rank: usize) -> Result<&'a Tensor> {
    let t = sd.get(key).with_context(|| format!("{}: no tensor `{key}` (keys: {})", path.display(), sd.keys().cloned().collect::<Vec<_>>().join(", ")))?;
    if t.shape.len() != rank {
        bail!("{}: tensor `{key}` has shape {:?}; expected rank {rank}", path.display(), t.shape);
    }
    Ok(t)
}

/// PyLO's `Celo2MLP` state dict (per-group or dense first layer) as the haiku theta.
pub fn celo2_theta(path: &Path, sd: &BTreeMap<String, Tensor>) -> Result<Theta> {
    let mut theta = Theta::default();
    let mut put = |name: &str, t: Tensor| theta.tensors.insert(format!("ff_mod_stack/~/{name}"), t);
    if sd.contains_key("first_layer.weight") {
        let w = transpose(take(sd, path, "first_layer.weight", 2)?);
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
            put(&format!("w0__{i}"), transpose(take(sd, path, &format!("first_layer_weights.{i}"), 2)?));
        }
        put("b0", take(sd, path, "first_layer_bias", 1)?.clone());
    }
    put("w1", transpose(take(sd, path, "hidden.weight", 2)?));
    put("b1", take(sd, path, "hidden.bias", 1)?.clone());
    put("w2", transpose(take(sd, path, "output.weight", 2)?));
    put("b2", take(sd, path, "output.bias", 1)?.clone());
    Ok(theta)
}

#[cfg(test)]
mod tests {
    use super::unpickle;

    #[test]
    fn the_unpickler_checks_lengths_arities_and_opcodes() {
        // PROTO 2, EMPTY_DICT, BINUNICODE "ab", NONE, SETITEM, STOP.
        let d = unpickle(b"\x80\x02}X\x02\x00\x00\x00abNs.").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "ab");
        let e = unpickle(b"\x80\x02X\x00\x00\x00\x40ab.").unwrap_err().to_string();
        assert!(e.contains("1073741824 bytes at byte 7") && e.contains("past the pickle's end"), "{e}");
        let e = unpickle(b"\x80\x02\xff.").unwrap_err().to_string();
        assert!(e.contains("unsupported pickle opcode 0xff at byte 2"), "{e}");
        assert!(unpickle(b"\x80\x02}").unwrap_err().to_string().contains("runs past"));
        assert!(unpickle(b"ctorch\nFloat").unwrap_err().to_string().contains("unterminated GLOBAL"));
        // _rebuild_tensor_v2 with too few arguments: an error, not a panic.
        let e = unpickle(b"ctorch._utils\n_rebuild_tensor_v2\n)R.").unwrap_err().to_string();
        assert!(e.contains("takes (storage, offset, size, stride"), "{e}");
        assert!(unpickle(b"\x86.").unwrap_err().to_string().contains("TUPLE2 with 0 values"));
    }
}
