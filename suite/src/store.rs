//! The result store: a directory with `study.json` and one `runs/<hash>.json` per run.
//!
//! Records are written atomically (temporary file, fsync, rename), so a crash leaves either the
//! whole record or none; a leftover temporary file is ignored and overwritten on the next run.

use anyhow::{Context, Result};
use beatmatch_core::{RunRecord, RunStatus, Study};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A result directory.
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Open (creating) the store at `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir.join("runs")).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn record_path(&self, hash: &str) -> PathBuf {
        self.dir.join("runs").join(format!("{hash}.json"))
    }

    /// The finished record for `hash`, if one is stored and readable. A record of a failed run
    /// (a bug or resource error, not divergence) does not count: it will be retried.
    pub fn finished(&self, hash: &str) -> Option<RunRecord> {
        let text = std::fs::read(self.record_path(hash)).ok()?;
        let rec: RunRecord = serde_json::from_slice(&text).ok()?;
        (rec.hash == hash && !matches!(rec.status, RunStatus::Failed { .. })).then_some(rec)
    }

    /// Write a record atomically.
    pub fn write_record(&self, rec: &RunRecord) -> Result<()> {
        write_json_atomic(&self.record_path(&rec.hash), rec)
    }

    /// Write a run's timing sidecar (`runs/<hash>.timing.json`) atomically. Timings live
    /// outside the record so records stay bit-identical across reruns.
    pub fn write_timing(&self, hash: &str, timing: &beatmatch_reports::analysis::Timing) -> Result<()> {
        write_json_atomic(&self.dir.join("runs").join(format!("{hash}.timing.json")), timing)
    }

    /// Write the study manifest atomically.
    pub fn write_study(&self, study: &Study) -> Result<()> {
        write_json_atomic(&self.dir.join("study.json"), study)
    }
}

/// Serialise `value` as pretty JSON into `path` via a temporary file and a rename.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)?;
    bytes.push(b'\n');
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use beatmatch_core::{OptimizerSpec, RunKey};

    fn record(status: RunStatus) -> RunRecord {
        let key = RunKey {
            problem_id: "p".into(),
            problem_hash: "h".into(),
            optimizer: OptimizerSpec::new("adam"),
            optimizer_hash: "o".into(),
            seed: 0,
            steps: 10,
            horizon: 10,
            code_version: "v".into(),
            device: "cpu".into(),
        };
        RunRecord { schema_version: 1, hash: key.hash(), key, params: 3, status, curve: vec![], evals: vec![] }
    }

    #[test]
    fn finished_ignores_failed_corrupt_and_foreign_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rec = record(RunStatus::Finished);
        assert!(store.finished(&rec.hash).is_none());
        store.write_record(&rec).unwrap();
        assert_eq!(store.finished(&rec.hash).unwrap(), rec);
        // A truncated file (as a crash before rename would never leave, but a disk might).
        std::fs::write(store.record_path(&rec.hash), b"{\"schema_version\": 1, \"ha").unwrap();
        assert!(store.finished(&rec.hash).is_none());
        let failed = record(RunStatus::Failed { error: "oom".into() });
        store.write_record(&failed).unwrap();
        assert!(store.finished(&failed.hash).is_none());
        let leftovers: Vec<_> =
            std::fs::read_dir(dir.path().join("runs")).unwrap().filter_map(|e| e.ok()).filter(|e| e.path().to_string_lossy().ends_with(".tmp")).collect();
        assert!(leftovers.is_empty());
    }
}
