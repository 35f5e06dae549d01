//! Reference-fixture support for conformance tests.
//!
//! A fixture case is `<case>.json` (sidecar) + `<case>.safetensors` (tensors), produced by the
//! reference implementations (see `testdata/fixtures/README.md`). Tests read the folder named by
//! `BEATMATCH_FIXTURES`, else the project's copy in `testdata/fixtures`; a missing folder is a
//! failure naming the path, never a silent pass.

use beatmatch_core::{Optimizer, ParamInfo, StepContext};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The fixtures folder: `$BEATMATCH_FIXTURES`, else `<workspace>/testdata/fixtures`.
/// Panics (failing the test) when it does not exist.
///
/// The workspace is found from the `CARGO_MANIFEST_DIR` cargo sets when it runs a test (every
/// crate sits one level below the workspace root), not the one compiled in: a shared target
/// directory may hold a test binary compiled in another checkout.
pub fn fixtures_dir() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let dir = std::env::var_os("BEATMATCH_FIXTURES").map(PathBuf::from).unwrap_or_else(|| crate_dir.join("../testdata/fixtures"));
    assert!(dir.is_dir(), "fixture folder {} does not exist (set BEATMATCH_FIXTURES or restore testdata/fixtures)", dir.display());
    dir
}

/// One reference case.
pub struct Case {
    /// Case name (file stem).
    pub name: String,
    /// The sidecar.
    pub meta: Value,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// Every case in `dir` (each `*.json` with a sibling `.safetensors`), sorted by name.
pub fn cases(dir: &Path) -> Vec<Case> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.with_extension("safetensors").is_file())
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    names.into_iter().map(|n| Case::load(dir, &n)).collect()
}

impl Case {
    /// Load case `name` from `dir`.
    pub fn load(dir: &Path, name: &str) -> Case {
        let meta_path = dir.join(format!("{name}.json"));
        let meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap_or_else(|e| panic!("{}: {e}", meta_path.display())))
            .unwrap_or_else(|e| panic!("{}: {e}", meta_path.display()));
        let st_path = dir.join(format!("{name}.safetensors"));
        let bytes = std::fs::read(&st_path).unwrap_or_else(|e| panic!("{}: {e}", st_path.display()));
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", st_path.display()));
        let mut tensors = HashMap::new();
        for (k, view) in st.tensors() {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}: tensor {k} is not F32");
            let data: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            tensors.insert(k, (view.shape().to_vec(), data));
        }
        Case { name: name.to_string(), meta, tensors }
    }

    /// The sidecar's `optimizer` string.
    pub fn optimizer(&self) -> &str {
        self.meta["optimizer"].as_str().unwrap_or("")
    }

    /// Number of steps recorded (`T`).
    pub fn steps(&self) -> usize {
        self.meta["T"].as_u64().expect("sidecar has T") as usize
    }

    /// Training horizon given to the optimizer (`num_steps`), or `T` when absent.
    pub fn num_steps(&self) -> u64 {
        self.meta["num_steps"].as_u64().unwrap_or(self.steps() as u64)
    }

    /// Parameter tensors in the reference's leaf order.
    pub fn params(&self) -> Vec<ParamInfo> {
        self.meta["param_order"]
            .as_array()
            .expect("sidecar has param_order")
            .iter()
            .map(|n| {
                let name = n.as_str().unwrap().to_string();
                let shape = self.meta["param_shapes"][&name].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                ParamInfo::new(name, shape)
            })
            .collect()
    }

    /// A tensor's values by key; panics naming the key when absent.
    pub fn tensor(&self, key: &str) -> &[f32] {
        &self.tensors.get(key).unwrap_or_else(|| panic!("{}: no tensor `{key}`", self.name)).1
    }

    /// A tensor's shape and values, if present.
    pub fn get(&self, key: &str) -> Option<(&[usize], &[f32])> {
        self.tensors.get(key).map(|(s, v)| (s.as_slice(), v.as_slice()))
    }

    /// The meta-parameters stored in the safetensors file (`theta/<path>`), keyed by the
    /// `/`-joined path of the sidecar's `theta_tensors`.
    pub fn theta_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.meta["theta_tensors"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        let path: Vec<&str> = t["path"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
                        let name = path.join("/");
                        let (shape, data) = self.get(&format!("theta/{name}")).unwrap_or_else(|| panic!("{}: no theta/{name}", self.name));
                        (name, shape.to_vec(), data.to_vec())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The file holding a learned case's meta-parameters, in the fixtures folder: the sidecar's
    /// `theta_file` (e.g. a PyTorch `.pt`), else `<case>.theta.msgpack`.
    pub fn theta_file(&self) -> String {
        self.meta["theta_file"]["file"].as_str().map_or_else(|| format!("{}.theta.msgpack", self.name), str::to_string)
    }

    /// The SHA-256 the sidecar gives the theta file (`theta_file` or `theta_msgpack`).
    pub fn theta_sha256(&self) -> Option<&str> {
        self.meta["theta_file"]["sha256"].as_str().or_else(|| self.meta["theta_msgpack"]["sha256"].as_str())
    }

    /// Loss fed at step `t` (learned optimizers), else 0.
    pub fn loss(&self, t: usize) -> f32 {
        self.get("loss").map_or(0.0, |(_, v)| v[t])
    }
}

/// The worst deviations found by [`run`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Deviation {
    /// Largest |ours − ref| / max(|ref|, floor / rtol) over parameters after each step, where
    /// floor = (t + 1) float32 ulps of the tensor's largest |value| + REFERENCE_UPDATE_SPREAD ×
    /// the element's summed |reference update| so far.
    pub params_rel: f64,
    /// Largest |our update − ref update| / max |ref update| of that tensor and step.
    pub update_norm: f64,
    /// Where the largest `params_rel` occurred: (step, tensor, element).
    pub worst: (usize, usize, usize),
    /// Our value and the reference value there.
    pub worst_values: (f32, f32),
}

/// Tolerances of the fixtures README: (a) parameters after every step within rtol 1e-5;
/// (b) each step's update, divided by that tensor's largest |reference update|, within atol 1e-3.
pub const PARAMS_RTOL: f64 = 1e-5;
/// See [`PARAMS_RTOL`].
pub const UPDATE_ATOL: f64 = 1e-3;
/// Float32 ulps of a tensor's largest |value| within which a step's largest reference update is
/// rounding, not signal: check (b) skips such steps (check (a) still holds them).
pub const ROUNDING_ULPS: f64 = 4.0;
/// The reference's own per-update spread between jit and eager runs (fixtures README: "up to
/// ~3e-4 relative in per-step updates"), used in the near-zero floor of check (a).
pub const REFERENCE_UPDATE_SPREAD: f64 = 3e-4;

/// Feed the case's gradients (and losses) to `opt` for all `T` steps, free-running from the
/// initial parameters, and measure both deviations. `on_step(t, opt, ours)` may inspect the
/// optimizer and parameters after each step.
pub fn run<O: Optimizer + ?Sized>(case: &Case, opt: &mut O, mut on_step: impl FnMut(usize, &O, &[Vec<f32>])) -> Deviation {
    let every = vec![true; case.params().len()];
    run_checking(case, opt, &every, |t, o: &mut O, p: &[Vec<f32>]| on_step(t, o, p))
}

/// [`run`], scoring only the tensors `checked` marks (the others are still updated, so an
/// optimizer that couples tensors sees them all), with `on_step` free to change the optimizer
/// (restore a state) after each step.
pub fn run_checking<O: Optimizer + ?Sized>(case: &Case, opt: &mut O, checked: &[bool], mut on_step: impl FnMut(usize, &mut O, &[Vec<f32>])) -> Deviation {
    let infos = case.params();
    assert_eq!(checked.len(), infos.len(), "{}: one `checked` flag per tensor", case.name);
    let mut ours: Vec<Vec<f32>> = infos.iter().map(|p| case.tensor(&format!("params/init/{}", p.name)).to_vec()).collect();
    let mut reference_before = ours.clone();
    let mut dev = Deviation::default();
    // Per element, the sum of |reference update| so far (see the floor below).
    let mut travelled: Vec<Vec<f64>> = ours.iter().map(|v| vec![0.0; v.len()]).collect();
    for t in 0..case.steps() {
        let before = ours.clone();
        let grads: Vec<&[f32]> = infos.iter().map(|p| case.tensor(&format!("grads/{t}/{}", p.name))).collect();
        {
            let mut slices: Vec<&mut [f32]> = ours.iter_mut().map(|v| v.as_mut_slice()).collect();
            opt.step(&mut slices, &grads, &StepContext { step: t as u64, num_steps: case.num_steps(), losses: &[case.loss(t)] });
        }
        on_step(t, opt, &ours);
        for (i, p) in infos.iter().enumerate() {
            let reference = case.tensor(&format!("params/after/{t}/{}", p.name));
            if !checked[i] {
                reference_before[i] = reference.to_vec();
                continue;
            }
            let scale = reference.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
            let max_ref_update = reference.iter().zip(&reference_before[i]).map(|(a, b)| f64::from((a - b).abs())).fold(0.0, f64::max);
            for k in 0..reference.len() {
                let (o, r) = (f64::from(ours[i][k]), f64::from(reference[k]));
                // Relative error, except near zero, where a parameter is the difference of larger
                // numbers and carries their rounding, not its own. The floor has two parts:
                // each free-running step may round one float32 ulp of the tensor's scale
                // differently from XLA, and each step's update may differ by the reference's
                // own jit-vs-eager spread (REFERENCE_UPDATE_SPREAD of that update, fixtures
                // README). A zero-initialised tensor is nothing but the sum of its updates, so
                // it is held to exactly that.
                travelled[i][k] += (r - f64::from(reference_before[i][k])).abs();
                let floor = (t + 1) as f64 * f64::from(f32::EPSILON) * scale + REFERENCE_UPDATE_SPREAD * travelled[i][k];
                let rel = (o - r).abs() / r.abs().max(floor / PARAMS_RTOL).max(1e-30);
                // A NaN anywhere is an infinite deviation, never a silent pass.
                let rel = if rel.is_nan() { f64::INFINITY } else { rel };
                if rel > dev.params_rel {
                    dev.params_rel = rel;
                    dev.worst = (t, i, k);
                    dev.worst_values = (ours[i][k], reference[k]);
                }
                // An update no larger than a few float32 ulps of the tensor's values is the
                // rounding of the step, not its signal (Schedule-Free's first step, whose learning
                // rate is 0 under warm-up, moves y by its own rounding only): check (a) bounds it.
                if max_ref_update > ROUNDING_ULPS * f64::from(f32::EPSILON) * scale {
                    let ou = o - f64::from(before[i][k]);
                    let ru = r - f64::from(reference_before[i][k]);
                    let e = (ou - ru).abs() / max_ref_update;
                    if std::env::var_os("BEATMATCH_DEBUG_FIXTURE").is_some() && e > 1e-4 {
                        eprintln!(
                            "  step {t} {}[{k}]: our update {ou:e}, reference {ru:e}, grad {:e}, max update {max_ref_update:e}",
                            p.name,
                            case.tensor(&format!("grads/{t}/{}", p.name))[k]
                        );
                    }
                    dev.update_norm = dev.update_norm.max(if e.is_nan() { f64::INFINITY } else { e });
                }
            }
            reference_before[i] = reference.to_vec();
        }
    }
    dev
}

impl Deviation {
    /// Both checks pass.
    pub fn passes(&self) -> bool {
        self.params_rel <= PARAMS_RTOL && self.update_norm <= UPDATE_ATOL
    }
}

/// Deterministic starting parameters for `infos` (values in ±0.1), where
/// [`synthetic_trajectory`] starts.
pub fn synthetic_params(infos: &[ParamInfo]) -> Vec<Vec<f32>> {
    infos.iter().enumerate().map(|(t, p)| (0..p.numel()).map(|i| (((i * 31 + t * 7) % 997) as f32 / 997.0 - 0.5) * 0.2).collect()).collect()
}

/// Three steps of `opt` from [`synthetic_params`] on deterministic synthetic gradients and
/// losses; the parameters after them. For equivalence tests that compare two ways of computing
/// the same update bit for bit (thread counts, instruction sets).
pub fn synthetic_trajectory(opt: &mut dyn Optimizer, infos: &[ParamInfo]) -> Vec<Vec<f32>> {
    let mut params = synthetic_params(infos);
    for step in 0..3u64 {
        let grads: Vec<Vec<f32>> = infos
            .iter()
            .enumerate()
            .map(|(t, p)| (0..p.numel()).map(|i| (((i * 131 + t + step as usize * 17) % 1009) as f32 / 1009.0 - 0.5) * 0.01).collect())
            .collect();
        let mut p: Vec<&mut [f32]> = params.iter_mut().map(|v| v.as_mut_slice()).collect();
        let g: Vec<&[f32]> = grads.iter().map(|v| v.as_slice()).collect();
        opt.step(&mut p, &g, &StepContext { step, num_steps: 100, losses: &[2.0 - 0.1 * step as f32] });
    }
    params
}
