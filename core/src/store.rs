//! The result store: the one place that knows a result directory's layout.
//!
//! ```text
//! DIR/study.json               the manifest (schema: crate::study), written once per study
//! DIR/runs/<hash>.json         one record per run, named by its key's content hash (crate::record)
//! DIR/runs/<hash>.timing.json  that run's wall-clock time ([`Timing`]), kept out of the record
//! DIR/claims/<key>.<gen>.claim who is training a run group now (crate::claim)
//! DIR/shards/<N>/<I>.json      the records shard I of N was given ([`ShardFile`])
//! DIR/logs/<host>.<pid>…log    one log per process: progress lines and each record written
//! ```
//!
//! Writes are atomic: a temporary file named uniquely across hosts and processes (host name,
//! process id, a per-process counter and the clock), fsync, rename. A crash leaves the whole
//! file or none, and shards on several hosts writing into one shared directory never collide
//! on a temporary name. Leftover temporary files are ignored by every reader (and listed by
//! `suite gc`). A full disk or a read-only store is an error naming the directory; the file
//! being written is left as it was.

use crate::claim::{Claims, Holder};
use crate::{RunRecord, RunStatus, Study, RECORD_SCHEMA_VERSION, STUDY_SCHEMA_VERSION};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

pub use crate::files::{unique_suffix, write_atomic, write_json_atomic, StoreError};

/// A run's timing sidecar (`runs/<hash>.timing.json`), outside the record so records stay
/// bit-identical across reruns.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Wall-clock seconds of training (measurements included).
    pub seconds: f64,
    /// Steps taken.
    pub steps: u64,
}

/// Which records shard `shard` of `of` was given (`DIR/shards/<of>/<shard>.json`), so
/// `suite status` can say how far each shard is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardFile {
    /// 1-based shard number.
    pub shard: usize,
    /// Number of shards.
    pub of: usize,
    /// Record hashes of the shard's runs, sorted.
    pub records: Vec<String>,
}

/// What `suite gc` would remove.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Garbage {
    /// Records (and their timing sidecars) the manifest does not reference.
    pub records: Vec<PathBuf>,
    /// Temporary files a crash left behind (older than an hour, so no live writer's).
    pub temporaries: Vec<PathBuf>,
    /// Claims whose holder has gone.
    pub stale_claims: Vec<PathBuf>,
}

impl Garbage {
    /// Every path.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.records.iter().chain(&self.temporaries).chain(&self.stale_claims)
    }
}

/// A result directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

/// A study with every record it references.
pub struct Loaded {
    /// The manifest.
    pub study: Study,
    /// Records by hash.
    pub records: HashMap<String, RunRecord>,
    /// Timings by record hash, where a sidecar exists.
    pub timings: HashMap<String, Timing>,
}

#[derive(Deserialize)]
struct Versioned {
    schema_version: u32,
}

impl Store {
    /// The store at `dir`, for reading (nothing is created).
    pub fn at(dir: &Path) -> Self {
        Self { dir: dir.to_path_buf() }
    }

    /// The store at `dir`, creating it (and `runs/`) for writing.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        let runs = dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(|source| StoreError::io("creating", &runs, source))?;
        Ok(Self::at(dir))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/study.json`.
    pub fn study_path(&self) -> PathBuf {
        self.dir.join("study.json")
    }

    /// `DIR/runs`.
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.join("runs")
    }

    /// `DIR/runs/<hash>.json`.
    pub fn record_path(&self, hash: &str) -> PathBuf {
        self.runs_dir().join(format!("{hash}.json"))
    }

    /// `DIR/runs/<hash>.timing.json`.
    pub fn timing_path(&self, hash: &str) -> PathBuf {
        self.runs_dir().join(format!("{hash}.timing.json"))
    }

    /// `DIR/claims`.
    pub fn claims_dir(&self) -> PathBuf {
        self.dir.join("claims")
    }

    /// This process's claims in the store (see [`crate::claim`]).
    pub fn claims(&self, ttl: std::time::Duration, me: Holder) -> Result<Claims, StoreError> {
        Claims::new(&self.claims_dir(), ttl, me)
    }

    /// `DIR/logs/<host>.<pid>.<…>.log`: a new log file name for this process.
    pub fn new_log_path(&self) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", unique_suffix()))
    }

    /// `DIR/shards/<of>/<shard>.json`.
    pub fn shard_path(&self, shard: usize, of: usize) -> PathBuf {
        self.dir.join("shards").join(of.to_string()).join(format!("{shard}.json"))
    }

    /// Write a shard's assignment atomically.
    pub fn write_shard(&self, s: &ShardFile) -> Result<(), StoreError> {
        let path = self.shard_path(s.shard, s.of);
        let parent = path.parent().expect("a shard file has a folder");
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io("creating", parent, e))?;
        write_json_atomic(&path, s)
    }

    /// Every shard assignment written, by shard count then shard.
    pub fn shard_files(&self) -> Vec<ShardFile> {
        let mut out = Vec::new();
        let Ok(counts) = std::fs::read_dir(self.dir.join("shards")) else { return out };
        for c in counts.filter_map(|e| e.ok()) {
            let Ok(files) = std::fs::read_dir(c.path()) else { continue };
            for f in files.filter_map(|e| e.ok()).filter(|f| f.path().extension().is_some_and(|e| e == "json")) {
                if let Some(s) = std::fs::read(f.path()).ok().and_then(|b| serde_json::from_slice::<ShardFile>(&b).ok()) {
                    out.push(s);
                }
            }
        }
        out.sort_by_key(|s| (s.of, s.shard));
        out
    }

    /// Hashes of every record file in `runs/` (whatever their content).
    pub fn record_hashes(&self) -> BTreeSet<String> {
        let Ok(entries) = std::fs::read_dir(self.runs_dir()) else { return BTreeSet::new() };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let stem = name.strip_suffix(".json")?;
                (!stem.starts_with('.') && !stem.ends_with(".timing")).then(|| stem.to_string())
            })
            .collect()
    }

    /// What no current study references: records outside the manifest (all of them when
    /// there is none), temporaries older than an hour, and stale claims.
    pub fn garbage(&self) -> Result<Garbage, StoreError> {
        let referenced: BTreeSet<String> = match self.has_study() {
            true => self.read_study()?.cells.into_iter().map(|c| c.record).collect(),
            false => BTreeSet::new(),
        };
        let mut g = Garbage::default();
        for hash in self.record_hashes().into_iter().filter(|h| !referenced.contains(h)) {
            g.records.push(self.record_path(&hash));
            if self.timing_path(&hash).exists() {
                g.records.push(self.timing_path(&hash));
            }
        }
        let hour = std::time::Duration::from_secs(3600);
        for dir in [self.dir.clone(), self.runs_dir(), self.claims_dir(), self.dir.join("logs")] {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.filter_map(|e| e.ok()) {
                let name = e.file_name().to_string_lossy().to_string();
                let old = e.metadata().ok().and_then(|m| m.modified().ok()).and_then(|m| m.elapsed().ok()).is_some_and(|a| a > hour);
                if name.starts_with('.') && name.ends_with(".tmp") && old {
                    g.temporaries.push(e.path());
                }
            }
        }
        if let Ok(claims) = Claims::new(&self.claims_dir(), crate::claim::default_ttl(), Holder::me("gc")) {
            for k in claims.keys() {
                if matches!(claims.state(&k), Ok(crate::claim::ClaimState::Stale { .. })) {
                    g.stale_claims.extend(claims.generation_paths(&k));
                }
            }
        }
        g.records.sort();
        g.temporaries.sort();
        g.stale_claims.sort();
        Ok(g)
    }

    /// Whether the directory holds a manifest.
    pub fn has_study(&self) -> bool {
        self.study_path().is_file()
    }

    /// The manifest; an error names the file (and both schema versions when they differ).
    pub fn read_study(&self) -> Result<Study, StoreError> {
        read_versioned(&self.study_path(), STUDY_SCHEMA_VERSION)
    }

    /// Write the manifest atomically.
    pub fn write_study(&self, study: &Study) -> Result<(), StoreError> {
        write_json_atomic(&self.study_path(), study)
    }

    /// The record `hash`: `Ok(None)` when absent, an error when unreadable or of another schema.
    pub fn read_record(&self, hash: &str) -> Result<Option<RunRecord>, StoreError> {
        let path = self.record_path(hash);
        if !path.is_file() {
            return Ok(None);
        }
        read_versioned(&path, RECORD_SCHEMA_VERSION).map(Some)
    }

    /// The finished record for `hash`, if one is stored, readable and really `hash`'s. A record
    /// of a failed run (a bug or resource error, not divergence) does not count: it is retried.
    pub fn finished(&self, hash: &str) -> Option<RunRecord> {
        let rec = self.read_record(hash).ok()??;
        (rec.hash == hash && !matches!(rec.status, RunStatus::Failed { .. })).then_some(rec)
    }

    /// Write a record atomically.
    pub fn write_record(&self, rec: &RunRecord) -> Result<(), StoreError> {
        write_json_atomic(&self.record_path(&rec.hash), rec)
    }

    /// The timing sidecar of `hash`, if present and readable.
    pub fn read_timing(&self, hash: &str) -> Option<Timing> {
        std::fs::read(self.timing_path(hash)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Write a run's timing sidecar atomically.
    pub fn write_timing(&self, hash: &str, timing: &Timing) -> Result<(), StoreError> {
        write_json_atomic(&self.timing_path(hash), timing)
    }

    /// The manifest and every record it references (a missing record is an error naming it),
    /// with their timings where present.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let study = self.read_study()?;
        let mut records = HashMap::new();
        let mut timings = HashMap::new();
        let mut missing = Vec::new();
        for cell in &study.cells {
            if records.contains_key(&cell.record) {
                continue;
            }
            match self.read_record(&cell.record)? {
                Some(r) => {
                    if let Some(t) = self.read_timing(&cell.record) {
                        timings.insert(cell.record.clone(), t);
                    }
                    records.insert(cell.record.clone(), r);
                }
                None => missing.push(cell.record.clone()),
            }
        }
        if let Some(first) = missing.first() {
            return Err(StoreError::MissingRecords { dir: self.runs_dir(), count: missing.len(), first: first.clone() });
        }
        Ok(Loaded { study, records, timings })
    }
}

impl Loaded {
    /// Records per code version, over the records the manifest references.
    pub fn code_versions(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.records.values() {
            *out.entry(r.key.code_version.clone()).or_insert(0) += 1;
        }
        out
    }

    /// For each optimizer run by a step-protocol worker (its spec as displayed), the records
    /// per set of library versions its workers reported (`numpy 2.4.6, python 3.11.7`).
    pub fn worker_versions(&self) -> BTreeMap<String, BTreeMap<String, usize>> {
        let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for r in self.records.values().filter(|r| !r.worker_versions.is_empty()) {
            let set: Vec<String> = r.worker_versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
            *out.entry(r.key.optimizer.to_string()).or_default().entry(set.join(", ")).or_insert(0) += 1;
        }
        out
    }
}

fn read_versioned<T: DeserializeOwned>(path: &Path, expected: u32) -> Result<T, StoreError> {
    let bytes = std::fs::read(path).map_err(|source| StoreError::Io { action: "reading", path: path.to_path_buf(), error: source })?;
    parse_versioned(path, &bytes, expected)
}

/// Parse a store file's bytes (`path` names it in errors): its `schema_version` must be
/// `expected`, then the whole file must be of schema `T`.
pub fn parse_versioned<T: DeserializeOwned>(path: &Path, bytes: &[u8], expected: u32) -> Result<T, StoreError> {
    let parse = |error| StoreError::Parse { path: path.to_path_buf(), error };
    let v: Versioned = serde_json::from_slice(bytes).map_err(parse)?;
    if v.schema_version != expected {
        return Err(StoreError::Schema { path: path.to_path_buf(), found: v.schema_version, expected });
    }
    serde_json::from_slice(bytes).map_err(parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OptimizerSpec, RunKey};

    fn record(status: RunStatus) -> RunRecord {
        let key = RunKey {
            problem_id: "p".into(),
            problem_hash: "h".into(),
            optimizer: OptimizerSpec::new("toy"),
            optimizer_hash: "o".into(),
            seed: 0,
            steps: 10,
            horizon: 10,
            code_version: "v".into(),
            device: "cpu".into(),
        };
        RunRecord {
            schema_version: RECORD_SCHEMA_VERSION,
            hash: key.hash(),
            key,
            params: 3,
            status,
            curve: vec![],
            evals: vec![],
            worker_versions: Default::default(),
        }
    }

    fn temporaries(dir: &Path) -> usize {
        std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().to_string_lossy().ends_with(".tmp")).count()
    }

    #[test]
    fn finished_ignores_failed_corrupt_and_foreign_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let rec = record(RunStatus::Finished);
        assert!(store.finished(&rec.hash).is_none());
        store.write_record(&rec).unwrap();
        assert_eq!(store.finished(&rec.hash).unwrap(), rec);
        // A truncated file (a crash before the rename never leaves one, but a disk might).
        std::fs::write(store.record_path(&rec.hash), b"{\"schema_version\": 1, \"ha").unwrap();
        assert!(store.finished(&rec.hash).is_none());
        assert!(matches!(store.read_record(&rec.hash), Err(StoreError::Parse { .. })));
        let failed = record(RunStatus::Failed { error: "oom".into() });
        store.write_record(&failed).unwrap();
        assert!(store.finished(&failed.hash).is_none());
        // A record filed under another run's hash is not that run's.
        std::fs::copy(store.record_path(&failed.hash), store.record_path("f00")).unwrap();
        assert!(store.finished("f00").is_none());
        assert_eq!(temporaries(&store.runs_dir()), 0);
    }

    #[test]
    fn another_schema_is_an_error_naming_the_file_and_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        let mut rec = record(RunStatus::Finished);
        rec.schema_version = 99;
        store.write_record(&rec).unwrap();
        let e = store.read_record(&rec.hash).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{}.json", rec.hash)) && e.contains("schema version 99") && e.contains(&format!("reads version {RECORD_SCHEMA_VERSION}")),
            "{e}"
        );
        std::fs::write(store.study_path(), b"{\"schema_version\": 1}").unwrap();
        let e = store.read_study().unwrap_err().to_string();
        assert!(e.contains("study.json") && e.contains("schema version 1") && e.contains(&format!("reads version {STUDY_SCHEMA_VERSION}")), "{e}");
    }

    #[test]
    fn timings_round_trip_and_temporary_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path()).unwrap();
        assert_eq!(store.read_timing("x"), None);
        store.write_timing("x", &Timing { seconds: 1.5, steps: 3 }).unwrap();
        assert_eq!(store.read_timing("x"), Some(Timing { seconds: 1.5, steps: 3 }));
        let names: std::collections::BTreeSet<String> = (0..1000).map(|_| unique_suffix()).collect();
        assert_eq!(names.len(), 1000);
        assert!(names.iter().all(|n| n.contains(&format!(".{}.", std::process::id()))));
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_and_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.json");
        write_json_atomic(&target, &1u32).unwrap();
        // Renaming a file onto a directory fails: the earlier file stays, no temporary remains.
        let blocked = dir.path().join("sub");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"").unwrap();
        assert!(write_json_atomic(&blocked, &2u32).is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "1\n");
        assert_eq!(temporaries(dir.path()), 0);
    }
}
