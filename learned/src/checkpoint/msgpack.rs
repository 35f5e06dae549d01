//! learned_optimization's checkpoint format — the format of the published VeLO `params` file:
//! `flax.serialization.to_bytes(ParameterCheckpoint(params=theta, gen_id, step))`, a msgpack map
//! `{params, gen_id, step}`. Arrays are msgpack ext type 1 whose payload is itself msgpack
//! `[shape, dtype-name, raw little-endian C-order bytes]`. Namedtuples are maps of their fields
//! (flax ≥ 0.4) or, in older files, `{name, fields: {"0": field, …}, values: {"0": value, …}}`.

use crate::theta::{Tensor, Theta};
use anyhow::{bail, Context, Result};
use rmpv::Value;

/// Read a learned_optimization checkpoint (or a bare params tree) from bytes.
pub fn read(bytes: &[u8]) -> Result<Theta> {
    read_tree(bytes).map(|(theta, _)| theta)
}

/// Read a checkpoint, and whether it was wrapped in learned_optimization's
/// `ParameterCheckpoint` (`{params, gen_id, step}`) rather than a bare flax theta map (Celo's
/// `theta.state`).
pub fn read_tree(bytes: &[u8]) -> Result<(Theta, bool)> {
    let mut cursor = bytes;
    let root = rmpv::decode::read_value(&mut cursor).map_err(|e| {
        let at = bytes.len() - cursor.len();
        anyhow::anyhow!("not a msgpack checkpoint (truncated or corrupt): decoding stopped at byte {at} of {} ({e})", bytes.len())
    })?;
    if !cursor.is_empty() {
        bail!("{} trailing bytes after the msgpack checkpoint (from byte {})", cursor.len(), bytes.len() - cursor.len());
    }
    let (params, wrapped) = match map_get(&root, "params") {
        Some(p) => (p, true),
        None if matches!(root, Value::Map(_)) => (&root, false),
        None => bail!("checkpoint root is not a map"),
    };
    let mut theta = Theta::default();
    flatten(params, &mut Vec::new(), &mut theta)?;
    if theta.tensors.is_empty() {
        bail!("checkpoint holds no arrays");
    }
    Ok((theta, wrapped))
}

fn map_get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
        _ => None,
    }
}

fn key_string(k: &Value) -> String {
    match k {
        Value::String(s) => s.as_str().unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

fn flatten(v: &Value, path: &mut Vec<String>, out: &mut Theta) -> Result<()> {
    match v {
        Value::Ext(1, payload) => {
            let name = path.join("/");
            let t = decode_array(payload).with_context(|| format!("array `{name}`"))?;
            out.tensors.insert(name, t);
        }
        Value::Map(entries) => {
            // Legacy flax namedtuple encoding: {name, fields, values}.
            if let (Some(Value::Map(fields)), Some(values)) = (map_get(v, "fields"), map_get(v, "values")) {
                if map_get(v, "name").is_some() {
                    for (idx, field) in fields {
                        let idx = key_string(idx);
                        let value = map_get(values, &idx).with_context(|| format!("namedtuple `{}` lacks value {idx}", path.join("/")))?;
                        path.push(key_string(field));
                        flatten(value, path, out)?;
                        path.pop();
                    }
                    return Ok(());
                }
            }
            for (k, child) in entries {
                path.push(key_string(k));
                flatten(child, path, out)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(i.to_string());
                flatten(child, path, out)?;
                path.pop();
            }
        }
        // Scalars (gen_id strings, step counters) are not meta-parameters.
        _ => {}
    }
    Ok(())
}

fn decode_array(payload: &[u8]) -> Result<Tensor> {
    let mut cursor = payload;
    let v = rmpv::decode::read_value(&mut cursor).map_err(|e| anyhow::anyhow!("array payload is truncated or corrupt: {e}"))?;
    let Value::Array(parts) = v else { bail!("array payload is not [shape, dtype, bytes]") };
    let [shape, dtype, data] = parts.as_slice() else { bail!("array payload has {} parts, expected 3", parts.len()) };
    let shape: Vec<usize> = match shape {
        Value::Array(d) => d.iter().map(|x| x.as_u64().map(|n| n as usize).context("shape entry is not an integer")).collect::<Result<_>>()?,
        _ => bail!("array shape is not a list"),
    };
    let dtype = dtype.as_str().context("dtype is not a string")?;
    if dtype != "float32" {
        bail!("dtype `{dtype}`; only float32 is supported");
    }
    let Value::Binary(bytes) = data else { bail!("array data is not binary") };
    // Checked: declared sizes are untrusted, and their product may overflow.
    let n = shape.iter().try_fold(4usize, |acc, &d| acc.checked_mul(d));
    if n != Some(bytes.len()) {
        bail!("shape {shape:?} needs {} bytes, found {}", n.map_or("more than 2^64".into(), |n| n.to_string()), bytes.len());
    }
    let data = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Ok(Tensor { shape, data })
}

/// Encode `theta` in the same format (used by tests and `lopt convert`).
pub fn write(theta: &Theta) -> Vec<u8> {
    fn insert(tree: &mut Vec<(Value, Value)>, path: &[&str], leaf: Value) {
        let pos = tree.iter().position(|(k, _)| k.as_str() == Some(path[0]));
        if path.len() == 1 {
            tree.push((Value::from(path[0]), leaf));
            return;
        }
        let idx = pos.unwrap_or_else(|| {
            tree.push((Value::from(path[0]), Value::Map(vec![])));
            tree.len() - 1
        });
        if let Value::Map(children) = &mut tree[idx].1 {
            insert(children, &path[1..], leaf);
        }
    }
    let mut params = Vec::new();
    for (name, t) in &theta.tensors {
        let mut payload = Vec::new();
        let bytes: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let v = Value::Array(vec![Value::Array(t.shape.iter().map(|&d| Value::from(d as u64)).collect()), Value::from("float32"), Value::Binary(bytes)]);
        rmpv::encode::write_value(&mut payload, &v).expect("in-memory write");
        let parts: Vec<&str> = name.split('/').collect();
        insert(&mut params, &parts, Value::Ext(1, payload));
    }
    let root = Value::Map(vec![
        (Value::from("params"), Value::Map(params)),
        (Value::from("gen_id"), Value::from("beatmatch")),
        (Value::from("step"), Value::from(0u64)),
    ]);
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &root).expect("in-memory write");
    out
}
