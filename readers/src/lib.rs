//! Every reader of untrusted input, by name, behind one function: [`feed`]. The fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, run with `cargo +nightly fuzz run NAME`) call it, and so do the
//! regression tests (`tests/corpus.rs`), over the committed seed corpus and the inputs that
//! once found bugs (`fuzz/corpus/NAME/`, `fuzz/regressions/NAME/`).
//!
//! A reader may reject its input with an error; it must never panic, hang or allocate more
//! than the input's own size justifies.

use std::path::Path;
use std::sync::OnceLock;

/// A reader under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A task-registry YAML file (`tasks/registry/*.yaml`).
    Registry,
    /// A baseline tuning protocol YAML file.
    Protocol,
    /// A meta-training recipe YAML file (resolved against the built-in registry).
    Recipe,
    /// A native checkpoint: the sidecar's length (2 bytes, little-endian), the YAML sidecar,
    /// then the safetensors bytes.
    NativeCheckpoint,
    /// learned_optimization's msgpack checkpoint.
    Msgpack,
    /// A msgpack theta (learned_optimization's, or a bare flax map as Celo publishes) read,
    /// its architecture detected, bound into that architecture's host rule and stepped once:
    /// the path from a published file's bytes to a training step.
    LearnedTheta,
    /// A PyTorch `.pt` state dict (PyLO's Celo2 weights) through `checkpoint::load`: candle's
    /// zip and pickle readers, then the mapping onto Celo2's theta.
    TorchPt,
    /// An IDX u8 file (MNIST, Fashion-MNIST).
    Idx,
    /// A CIFAR-10 binary batch.
    Cifar,
    /// The digits CSV.
    DigitsCsv,
    /// A run record (`runs/<hash>.json`).
    Record,
    /// A study manifest (`study.json`).
    Study,
    /// What a step-protocol worker writes to the suite: a ready frame, then done or error
    /// frames (`beatmatch_core::step_protocol`).
    StepFrames,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 13] = [
        Target::Registry,
        Target::Protocol,
        Target::Recipe,
        Target::NativeCheckpoint,
        Target::Msgpack,
        Target::LearnedTheta,
        Target::TorchPt,
        Target::Idx,
        Target::Cifar,
        Target::DigitsCsv,
        Target::Record,
        Target::Study,
        Target::StepFrames,
    ];

    /// The fuzz target's name (its file `fuzz/fuzz_targets/<name>.rs` and corpus folder).
    pub fn name(self) -> &'static str {
        match self {
            Target::Registry => "registry_yaml",
            Target::Protocol => "protocol_yaml",
            Target::Recipe => "recipe_yaml",
            Target::NativeCheckpoint => "native_checkpoint",
            Target::Msgpack => "msgpack_checkpoint",
            Target::LearnedTheta => "learned_theta",
            Target::TorchPt => "torch_pt",
            Target::Idx => "idx",
            Target::Cifar => "cifar",
            Target::DigitsCsv => "digits_csv",
            Target::Record => "record_json",
            Target::Study => "study_json",
            Target::StepFrames => "step_frames",
        }
    }

    /// The target named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Whether the reader accepted the input.
pub type Accepted = bool;

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Feed `bytes` to `target`'s reader; true when it accepted them. Panics only if the reader does.
pub fn feed(target: Target, bytes: &[u8]) -> Accepted {
    match target {
        Target::Registry => text(bytes).is_some_and(|t| beatmatch_tasks::registry::parse("fuzz.yaml", t).is_ok()),
        Target::Protocol => text(bytes).is_some_and(|t| beatmatch_baselines::Protocol::parse("fuzz.yaml", t).is_ok()),
        Target::Recipe => {
            static REGISTRY: OnceLock<Vec<beatmatch_tasks::Task>> = OnceLock::new();
            let registry = REGISTRY.get_or_init(|| beatmatch_tasks::registry::embedded().expect("the built-in registry parses"));
            text(bytes).is_some_and(|t| beatmatch_meta::recipe::parse("fuzz.yaml", t, registry).is_ok())
        }
        Target::NativeCheckpoint => {
            let n = bytes.get(..2).map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
            let rest = bytes.get(2..).unwrap_or_default();
            let (sidecar, weights) = rest.split_at(n.min(rest.len()));
            text(sidecar).is_some_and(|s| beatmatch_learned::checkpoint::native::parse(Path::new("fuzz.safetensors"), weights, s).is_ok())
        }
        Target::Msgpack => beatmatch_learned::checkpoint::msgpack::read(bytes).is_ok(),
        Target::LearnedTheta => learned_theta(bytes),
        Target::TorchPt => torch_pt(bytes),
        Target::Idx => beatmatch_tasks::datasets::idx::parse_u8(bytes).is_ok(),
        Target::Cifar => beatmatch_tasks::datasets::cifar10::parse("fuzz.bin", bytes).is_ok(),
        Target::DigitsCsv => text(bytes).is_some_and(|t| beatmatch_tasks::datasets::digits::parse(t).is_ok()),
        Target::Record => {
            beatmatch_core::store::parse_versioned::<beatmatch_core::RunRecord>(Path::new("fuzz.json"), bytes, beatmatch_core::RECORD_SCHEMA_VERSION).is_ok()
        }
        Target::Study => {
            beatmatch_core::store::parse_versioned::<beatmatch_core::Study>(Path::new("study.json"), bytes, beatmatch_core::STUDY_SCHEMA_VERSION).is_ok()
        }
        Target::StepFrames => beatmatch_core::step_protocol::read_worker_stream(bytes).is_ok(),
    }
}

/// Read a msgpack theta, bind the architecture it holds, and take one step on two small tensors.
fn learned_theta(bytes: &[u8]) -> Accepted {
    use beatmatch_core::{ParamInfo, StepContext};
    let Ok(theta) = beatmatch_learned::checkpoint::msgpack::read(bytes) else { return false };
    let Some(arch) = beatmatch_learned::Architecture::detect(&theta) else { return false };
    let infos = [ParamInfo::new("w", vec![3, 2]), ParamInfo::new("b", vec![2])];
    let Ok(mut opt) = arch.host(&theta, &Default::default(), 1, 1, &infos) else { return false };
    let (mut w, mut b) = (vec![0.5f32, -0.25, 1.0, 0.0, 2.0, -1.0], vec![0.1f32, -0.1]);
    let (gw, gb) = ([0.01f32, -0.2, 3.0, 0.0, -1e4, 1e-6], [0.5f32, -0.5]);
    opt.step(&mut [&mut w, &mut b], &[&gw, &gb], &StepContext { step: 0, num_steps: 10, losses: &[1.5] });
    true
}

/// Load `bytes` as a `.pt` checkpoint (candle's reader takes a path: a per-process file).
fn torch_pt(bytes: &[u8]) -> Accepted {
    let path = std::env::temp_dir().join(format!("beatmatch-fuzz-{}.pt", std::process::id()));
    if std::fs::write(&path, bytes).is_err() {
        return false;
    }
    beatmatch_learned::checkpoint::load(&path, None).is_ok()
}
