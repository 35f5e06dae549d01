//! One process's log file in the store (`DIR/logs/<host>.<pid>.….log`): what it was asked,
//! its progress lines, each record it wrote, each claim it took over, and how it ended — so a
//! week of cluster jobs can be audited after the terminals are gone.

use beatmatch_core::Store;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A process's log; writing never fails the run (a full disk loses log lines, not runs).
pub struct RunLog {
    file: Option<Mutex<std::fs::File>>,
    path: Option<PathBuf>,
}

impl RunLog {
    /// A new log file in `store`; without one (unwritable directory) lines go nowhere.
    pub fn create(store: &Store) -> Self {
        let path = store.new_log_path();
        let file = path.parent().and_then(|d| std::fs::create_dir_all(d).ok()).and_then(|_| std::fs::File::create(&path).ok());
        Self { path: file.as_ref().map(|_| path), file: file.map(Mutex::new) }
    }

    /// A log that writes nothing (tests, `suite plan`).
    pub fn none() -> Self {
        Self { file: None, path: None }
    }

    /// The file, if one was opened.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Append `line`, stamped with Unix seconds.
    pub fn line(&self, line: &str) {
        if let Some(f) = &self.file {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let _ = writeln!(f.lock().unwrap(), "{t:.3} {line}");
        }
    }

    /// Print `line` on stderr and append it.
    pub fn say(&self, line: &str) {
        eprintln!("{line}");
        self.line(line);
    }
}

/// The record-writing lines of the logs in `dir` (`record <hash> <status>`), as (hash, log file)
/// pairs — how tests and audits count how often each run was trained.
pub fn records_written(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("logs")) else { return out };
    for e in entries.filter_map(|e| e.ok()) {
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        for l in text.lines() {
            let mut words = l.split_whitespace().skip(1);
            if let (Some("record"), Some(hash)) = (words.next(), words.next()) {
                out.push((hash.to_string(), e.path()));
            }
        }
    }
    out
}
