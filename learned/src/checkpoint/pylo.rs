//! PyLO's checkpoints (Belilovsky-Lab/pylo, PyTorch): safetensors with PyTorch module names and
//! `nn.Linear` layouts (`weight` is `[out, in]`), mapped onto beatmatch's tensor names and
//! `[in, out]` layouts. Only names, shapes and transposes change: no value is altered.
//!
//! * **VeLO** is published as two files, the `VeLO_RNN` (per-tensor LSTM) and the `VeLO_MLP`
//!   (the 256 per-parameter MLPs); give the directory holding both (any `*.safetensors` in it are
//!   merged). `mix_layer1` → `rnn_params/linear`, `mix_layer2` → `rnn_params/linear_1`,
//!   `final_mix_layer` → `rnn_params/linear_2`, `lstm.linear` → `rnn_params/rnn/linear`,
//!   `rnn_to_controls`, `step_size`, `lstm_init_state.0/.1` → `lstm_init_state/hidden/cell`;
//!   `input_weights_ [256, 4, 30]` → the 14 `ff_mod_stack/~/w0__i` input groups,
//!   `hidden_weights_.0`, `output_weights_` and the biases → `w1`, `w2`, `b0..b2`.
//! * **μLO / small_fc** (`MetaMLP`): `network.input` → `nn/~/w0, b0`, `network.linear_0` →
//!   `w1, b1`, `network.output` → `w2, b2`; the hidden width (32 in μLO) is read off the weights.
//!   PyLO keeps the accumulator decay offsets and the step scale in the optimizer's code, not in
//!   the file: unless the file carries `momentum_decays`, `rms_decays`, `adafactor_decays`
//!   tensors and `step_mult`/`exp_mult` in its safetensors metadata, PyLO's μLO values are used
//!   (see [`MULO_DECAYS`]). μLO's μP scaling of the update per layer (its `mup_lrs`) has no
//!   counterpart in small_fc and is not applied: a μLO checkpoint runs here as the AdafacMLPLOpt
//!   it was derived from.

use crate::arch::Architecture;
use crate::theta::{Tensor, Theta};
use crate::velo::GROUPS;
use crate::Hyperparameters;
use crate::{small_fc::SMALL_FC, velo::VELO};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// PyLO μLO's decay offsets (momentum, rms, adafactor), as its optimizer code sets them.
pub const MULO_DECAYS: ([f32; 3], [f32; 1], [f32; 3]) =
    ([0.152_163_92, 0.142_452_12, 0.068_129_63], [0.010_797_06], [0.186_218_96, -0.108_646_15, -0.061_855_47]);
/// PyLO μLO's step scale and exponent scale.
pub const MULO_STEP_MULT: f64 = 0.01;
/// See [`MULO_STEP_MULT`].
pub const MULO_EXP_MULT: f64 = 0.001;

type Named = BTreeMap<String, Tensor>;

fn read_file(path: &Path, into: &mut Named, meta: &mut BTreeMap<String, String>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (tensors, m) = super::decode_safetensors(path, &bytes)?;
    meta.extend(m);
    for (name, t) in tensors {
        if into.insert(name.clone(), t).is_some() {
            bail!("{}: tensor `{name}` appears twice in the checkpoint's files", path.display());
        }
    }
    Ok(bytes)
}

/// `[out, in]` → `[in, out]`.
pub(super) fn transpose(t: &Tensor) -> Tensor {
    let (o, i) = (t.shape[0], t.shape[1]);
    let mut data = vec![0.0; o * i];
    for r in 0..o {
        for c in 0..i {
            data[c * o + r] = t.data[r * i + c];
        }
    }
    Tensor { shape: vec![i, o], data }
}

/// `[k, out, in]` → `[k, in, out]`.
fn transpose_stack(t: &Tensor) -> Tensor {
    let (k, o, i) = (t.shape[0], t.shape[1], t.shape[2]);
    let mut data = Vec::with_capacity(k * o * i);
    for kk in 0..k {
        let m = Tensor { shape: vec![o, i], data: t.data[kk * o * i..(kk + 1) * o * i].to_vec() };
        data.extend(transpose(&m).data);
    }
    Tensor { shape: vec![k, i, o], data }
}

fn take<'a>(n: &'a Named, name: &str, rank: usize, file: &Path) -> Result<&'a Tensor> {
    let t = n.get(name).with_context(|| format!("{}: PyLO checkpoint has no tensor `{name}`", file.display()))?;
    if t.shape.len() != rank {
        bail!("{}: `{name}` has shape {:?}; expected rank {rank}", file.display(), t.shape);
    }
    Ok(t)
}

/// Read a PyLO checkpoint (a file, or a directory of files): theta in beatmatch's names, its
/// architecture, hyperparameters, and a SHA-256 over the files (names and bytes, sorted).
pub fn read(path: &Path) -> Result<(Theta, Architecture, Hyperparameters, String)> {
    let files: Vec<std::path::PathBuf> = if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        bail!("{}: no .safetensors files (PyLO's VeLO is a directory holding its VeLO_RNN and VeLO_MLP files)", path.display());
    }
    let (mut named, mut meta) = (Named::new(), BTreeMap::new());
    let mut hasher = Vec::new();
    for f in &files {
        let bytes = read_file(f, &mut named, &mut meta)?;
        hasher.extend(f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default().into_bytes());
        hasher.extend(super::sha256(&bytes).into_bytes());
    }
    let sha = super::sha256(&hasher);
    let mut theta = Theta::default();
    let mut hyper = Hyperparameters::new();
    let mut put = |name: &str, t: Tensor| theta.tensors.insert(name.to_string(), t);
    let arch = if named.contains_key("network.input.weight") {
        for (from, to) in [("network.input", "0"), ("network.linear_0", "1"), ("network.output", "2")] {
            put(&format!("nn/~/w{to}"), transpose(take(&named, &format!("{from}.weight"), 2, path)?));
            put(&format!("nn/~/b{to}"), take(&named, &format!("{from}.bias"), 1, path)?.clone());
        }
        let (m, r, a) = MULO_DECAYS;
        for (name, default) in [("momentum_decays", &m[..]), ("rms_decays", &r[..]), ("adafactor_decays", &a[..])] {
            let t = named.get(name).cloned().unwrap_or(Tensor { shape: vec![default.len()], data: default.to_vec() });
            put(name, t);
        }
        for (key, default) in [("step_mult", MULO_STEP_MULT), ("exp_mult", MULO_EXP_MULT)] {
            let v = match meta.get(key) {
                Some(s) => s.parse::<f64>().with_context(|| format!("{}: metadata {key} = `{s}` is not a number", path.display()))?,
                None => default,
            };
            let d = crate::small_fc::SmallFcConfig::default();
            if v as f32 != if key == "step_mult" { d.step_mult } else { d.exp_mult } {
                hyper.insert(key.to_string(), v);
            }
        }
        SMALL_FC
    } else if named.contains_key("lstm.linear.weight") || named.contains_key("input_weights_") {
        for (from, to) in [
            ("mix_layer1", "rnn_params/linear"),
            ("mix_layer2", "rnn_params/linear_1"),
            ("final_mix_layer", "rnn_params/linear_2"),
            ("lstm.linear", "rnn_params/rnn/linear"),
            ("rnn_to_controls", "rnn_params/rnn_to_controls"),
            ("step_size", "rnn_params/step_size"),
        ] {
            put(&format!("{to}/w"), transpose(take(&named, &format!("{from}.weight"), 2, path)?));
            put(&format!("{to}/b"), take(&named, &format!("{from}.bias"), 1, path)?.clone());
        }
        for (i, to) in ["hidden", "cell"].iter().enumerate() {
            let name = format!("lstm_init_state.{i}");
            let t = named.get(&name).with_context(|| format!("{}: PyLO checkpoint has no tensor `{name}`", path.display()))?;
            let h = t.data.len();
            put(&format!("lstm_init_state/{to}"), Tensor { shape: vec![1, h], data: t.data.clone() });
        }
        let w0 = transpose_stack(take(&named, "input_weights_", 3, path)?);
        let (k, inputs, outs) = (w0.shape[0], w0.shape[1], w0.shape[2]);
        if inputs != GROUPS.iter().sum::<usize>() {
            bail!("{}: input_weights_ has {inputs} inputs; VeLO's MLP takes {}", path.display(), GROUPS.iter().sum::<usize>());
        }
        let mut row = 0;
        for (gi, &width) in GROUPS.iter().enumerate() {
            let mut data = Vec::with_capacity(k * width * outs);
            for kk in 0..k {
                data.extend_from_slice(&w0.data[(kk * inputs + row) * outs..(kk * inputs + row + width) * outs]);
            }
            put(&format!("ff_mod_stack/~/w0__{gi}"), Tensor { shape: vec![k, width, outs], data });
            row += width;
        }
        put("ff_mod_stack/~/b0", take(&named, "input_bias_", 2, path)?.clone());
        put("ff_mod_stack/~/w1", transpose_stack(take(&named, "hidden_weights_.0", 3, path)?));
        put("ff_mod_stack/~/b1", take(&named, "hidden_bias_.0", 2, path)?.clone());
        put("ff_mod_stack/~/w2", transpose_stack(take(&named, "output_weights_", 3, path)?));
        put("ff_mod_stack/~/b2", take(&named, "output_bias_", 2, path)?.clone());
        VELO
    } else {
        bail!(
            "{}: not a PyLO checkpoint beatmatch knows (no `network.input.weight` of μLO's MetaMLP, no `lstm.linear.weight`/`input_weights_` of VeLO), and no sidecar {} that would make it a native one",
            path.display(),
            super::native::sidecar_path(path).display()
        );
    };
    Ok((theta, arch, hyper, sha))
}

/// PyLO's tensors for `theta` of `arch` (the inverse of [`read`]): for VeLO the (RNN, MLP)
/// file contents, for small_fc one file's (the tests write PyLO-named files with it).
pub fn to_pylo(theta: &Theta, arch: Architecture) -> Result<Vec<Named>> {
    let get = |n: &str| theta.tensors.get(n).cloned().with_context(|| format!("theta has no `{n}`"));
    let linear = |out: &mut Named, from: &str, to: &str| -> Result<()> {
        out.insert(format!("{to}.weight"), transpose(&get(&format!("{from}/w"))?));
        out.insert(format!("{to}.bias"), get(&format!("{from}/b"))?);
        Ok(())
    };
    match arch {
        a if a == SMALL_FC => {
            let mut f = Named::new();
            for (i, to) in ["network.input", "network.linear_0", "network.output"].iter().enumerate() {
                f.insert(format!("{to}.weight"), transpose(&get(&format!("nn/~/w{i}"))?));
                f.insert(format!("{to}.bias"), get(&format!("nn/~/b{i}"))?);
            }
            for n in ["momentum_decays", "rms_decays", "adafactor_decays"] {
                f.insert(n.into(), get(n)?);
            }
            Ok(vec![f])
        }
        a if a == VELO => {
            let mut rnn = Named::new();
            for (from, to) in [
                ("rnn_params/linear", "mix_layer1"),
                ("rnn_params/linear_1", "mix_layer2"),
                ("rnn_params/linear_2", "final_mix_layer"),
                ("rnn_params/rnn/linear", "lstm.linear"),
                ("rnn_params/rnn_to_controls", "rnn_to_controls"),
                ("rnn_params/step_size", "step_size"),
            ] {
                linear(&mut rnn, from, to)?;
            }
            for (i, n) in ["hidden", "cell"].iter().enumerate() {
                let t = get(&format!("lstm_init_state/{n}"))?;
                rnn.insert(format!("lstm_init_state.{i}"), Tensor { shape: vec![t.data.len()], data: t.data });
            }
            let mut mlp = Named::new();
            let groups: Vec<Tensor> = (0..GROUPS.len()).map(|g| get(&format!("ff_mod_stack/~/w0__{g}"))).collect::<Result<_>>()?;
            let (k, outs) = (groups[0].shape[0], groups[0].shape[2]);
            let inputs: usize = GROUPS.iter().sum();
            let mut w0 = vec![0f32; k * inputs * outs];
            let mut row = 0;
            for (g, &width) in groups.iter().zip(&GROUPS) {
                for kk in 0..k {
                    w0[(kk * inputs + row) * outs..(kk * inputs + row + width) * outs].copy_from_slice(&g.data[kk * width * outs..(kk + 1) * width * outs]);
                }
                row += width;
            }
            mlp.insert("input_weights_".into(), transpose_stack(&Tensor { shape: vec![k, inputs, outs], data: w0 }));
            mlp.insert("input_bias_".into(), get("ff_mod_stack/~/b0")?);
            mlp.insert("hidden_weights_.0".into(), transpose_stack(&get("ff_mod_stack/~/w1")?));
            mlp.insert("hidden_bias_.0".into(), get("ff_mod_stack/~/b1")?);
            mlp.insert("output_weights_".into(), transpose_stack(&get("ff_mod_stack/~/w2")?));
            mlp.insert("output_bias_".into(), get("ff_mod_stack/~/b2")?);
            Ok(vec![rnn, mlp])
        }
        other => bail!("PyLO publishes no {} checkpoints", other.label()),
    }
}
