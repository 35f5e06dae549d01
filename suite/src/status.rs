//! `suite status DIR`: how far a study is — each of its runs done, running (its group claimed
//! by a live process), pending or failed — overall and per shard, with the failures' first lines.

use anyhow::{bail, Result};
use beatmatch_core::claim::{group_key, ClaimState, Claims, Holder};
use beatmatch_core::{RunStatus, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where one run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunState {
    /// Recorded (finished or diverged).
    Done,
    /// Not recorded; its group is claimed by a live process.
    Running,
    /// Not recorded, nobody on it.
    Pending,
    /// Recorded as failed, or its record is unreadable.
    Failed,
}

/// Counts of runs by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Recorded runs.
    pub done: usize,
    /// Of those, diverged.
    pub diverged: usize,
    /// Being trained now.
    pub running: usize,
    /// Waiting.
    pub pending: usize,
    /// Failed or unreadable.
    pub failed: usize,
}

impl Counts {
    fn add(&mut self, s: RunState, diverged: bool) {
        match s {
            RunState::Done => {
                self.done += 1;
                self.diverged += usize::from(diverged);
            }
            RunState::Running => self.running += 1,
            RunState::Pending => self.pending += 1,
            RunState::Failed => self.failed += 1,
        }
    }

    /// Total runs.
    pub fn total(&self) -> usize {
        self.done + self.running + self.pending + self.failed
    }

    fn line(&self) -> String {
        format!(
            "{} runs: {} done ({} diverged), {} running, {} pending, {} failed",
            self.total(),
            self.done,
            self.diverged,
            self.running,
            self.pending,
            self.failed
        )
    }
}

/// One study's status.
#[derive(Clone, Debug)]
pub struct StudyStatus {
    /// The directory.
    pub dir: PathBuf,
    /// Selection (tier) of the study.
    pub selection: String,
    /// Code version that planned it.
    pub code_version: String,
    /// Over every run the manifest references.
    pub all: Counts,
    /// Per shard assignment found (shard, of, counts), by shard count then shard.
    pub shards: Vec<(usize, usize, Counts)>,
    /// Distinct failure first lines with their count and one record hash.
    pub failures: Vec<(String, usize, String)>,
    /// Live claims: group key, holder, time since its heartbeat.
    pub running: Vec<(String, Option<Holder>, Duration)>,
    /// Records per code version.
    pub versions: BTreeMap<String, usize>,
}

/// The status of the study in `dir`.
pub fn study_status(dir: &Path) -> Result<StudyStatus> {
    let store = Store::at(dir);
    let study = store.read_study()?;
    let claims = Claims::new(&store.claims_dir(), beatmatch_core::claim::default_ttl(), Holder::me("suite status"))?;
    let mut group_of: BTreeMap<&str, String> = BTreeMap::new();
    for c in &study.cells {
        group_of.entry(c.record.as_str()).or_insert_with(|| group_key(&study.tasks[c.task].problem_hash, c.seed));
    }
    let mut live: BTreeMap<String, bool> = BTreeMap::new();
    let mut running = Vec::new();
    for key in group_of.values().collect::<BTreeSet<_>>() {
        let state = claims.state(key)?;
        if let ClaimState::Live { holder, age } = &state {
            running.push((key.clone(), holder.clone(), *age));
        }
        live.insert(key.clone(), matches!(state, ClaimState::Live { .. }));
    }
    let mut states: BTreeMap<&str, (RunState, bool)> = BTreeMap::new();
    let mut failures: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut versions = BTreeMap::new();
    for (&hash, key) in &group_of {
        let state = match store.read_record(hash) {
            Ok(Some(r)) if r.hash == hash => {
                *versions.entry(r.key.code_version.clone()).or_insert(0) += 1;
                match &r.status {
                    RunStatus::Failed { error } => {
                        let e = failures.entry(error.lines().next().unwrap_or_default().to_string()).or_insert((0, hash.to_string()));
                        e.0 += 1;
                        (RunState::Failed, false)
                    }
                    RunStatus::Diverged { .. } => (RunState::Done, true),
                    RunStatus::Finished => (RunState::Done, false),
                }
            }
            Ok(Some(r)) => {
                let e = failures.entry(format!("record file holds run {} instead", r.hash)).or_insert((0, hash.to_string()));
                e.0 += 1;
                (RunState::Failed, false)
            }
            Err(err) => {
                let e = failures.entry(err.to_string().lines().next().unwrap_or_default().to_string()).or_insert((0, hash.to_string()));
                e.0 += 1;
                (RunState::Failed, false)
            }
            Ok(None) if live[key] => (RunState::Running, false),
            Ok(None) => (RunState::Pending, false),
        };
        states.insert(hash, state);
    }
    let mut all = Counts::default();
    states.values().for_each(|&(s, d)| all.add(s, d));
    let mut shards = Vec::new();
    for f in store.shard_files() {
        let mut c = Counts::default();
        for h in &f.records {
            // A run the manifest no longer references is not counted.
            if let Some(&(s, d)) = states.get(h.as_str()) {
                c.add(s, d);
            }
        }
        shards.push((f.shard, f.of, c));
    }
    let mut failures: Vec<(String, usize, String)> = failures.into_iter().map(|(l, (n, h))| (l, n, h)).collect();
    failures.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(StudyStatus { dir: dir.to_path_buf(), selection: study.selection, code_version: study.code_version, all, shards, failures, running, versions })
}

impl StudyStatus {
    /// The text `suite status` prints.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} ({}, planned by {}): {}", self.dir.display(), self.selection, self.code_version, self.all.line());
        for (i, n, c) in &self.shards {
            let _ = writeln!(s, "  shard {i}/{n}: {}", c.line());
        }
        for (key, holder, age) in &self.running {
            let who = holder.as_ref().map_or("an unreadable claim".into(), |h| format!("{} pid {} ({})", h.host, h.pid, h.label));
            let _ = writeln!(s, "  running: group {key} on {who}, heartbeat {:.0} s ago", age.as_secs_f64());
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "  failures ({} runs; retried by the next `suite run`):", self.all.failed);
            for (line, n, hash) in self.failures.iter().take(10) {
                let _ = writeln!(s, "    {n}× {line}  (e.g. runs/{hash}.json)");
            }
            if self.failures.len() > 10 {
                let _ = writeln!(s, "    … and {} other messages", self.failures.len() - 10);
            }
        }
        if self.versions.len() > 1 {
            let _ = writeln!(
                s,
                "  mixed: records of {} code versions: {} (reports need --allow-mixed)",
                self.versions.len(),
                beatmatch_reports::export::markdown::versions_line(&self.versions)
            );
        }
        s
    }
}

/// `suite status DIR`: `DIR` itself, or every study folder directly under it.
pub fn run(dir: &Path) -> Result<ExitCode> {
    let mut dirs = Vec::new();
    if Store::at(dir).has_study() {
        dirs.push(dir.to_path_buf());
    } else if let Ok(entries) = std::fs::read_dir(dir) {
        dirs = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| Store::at(p).has_study()).collect();
        dirs.sort();
    }
    if dirs.is_empty() {
        bail!("{}: no study.json here or in its subfolders (is this a result directory written by `suite run`?)", dir.display());
    }
    for d in dirs {
        print!("{}", study_status(&d)?.render());
    }
    Ok(ExitCode::SUCCESS)
}
