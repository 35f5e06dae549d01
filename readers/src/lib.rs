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
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 10] = [
        Target::Registry,
        Target::Protocol,
        Target::Recipe,
        Target::NativeCheckpoint,
        Target::Msgpack,
        Target::Idx,
        Target::Cifar,
        Target::DigitsCsv,
        Target::Record,
        Target::Study,
    ];

    /// The fuzz target's name (its file `fuzz/fuzz_targets/<name>.rs` and corpus folder).
    pub fn name(self) -> &'static str {
        match self {
            Target::Registry => "registry_yaml",
            Target::Protocol => "protocol_yaml",
            Target::Recipe => "recipe_yaml",
            Target::NativeCheckpoint => "native_checkpoint",
            Target::Msgpack => "msgpack_checkpoint",
            Target::Idx => "idx",
            Target::Cifar => "cifar",
            Target::DigitsCsv => "digits_csv",
            Target::Record => "record_json",
            Target::Study => "study_json",
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
        Target::Idx => beatmatch_tasks::datasets::idx::parse_u8(bytes).is_ok(),
        Target::Cifar => beatmatch_tasks::datasets::cifar10::parse("fuzz.bin", bytes).is_ok(),
        Target::DigitsCsv => text(bytes).is_some_and(|t| beatmatch_tasks::datasets::digits::parse(t).is_ok()),
        Target::Record => {
            beatmatch_core::store::parse_versioned::<beatmatch_core::RunRecord>(Path::new("fuzz.json"), bytes, beatmatch_core::RECORD_SCHEMA_VERSION).is_ok()
        }
        Target::Study => {
            beatmatch_core::store::parse_versioned::<beatmatch_core::Study>(Path::new("study.json"), bytes, beatmatch_core::STUDY_SCHEMA_VERSION).is_ok()
        }
    }
}
