//! Claims: which process is working on a run group (or holds a short lock) right now, so that
//! processes on several hosts sharing one store never train the same runs at once.
//!
//! A claim is a file `claims/<key>.<generation>.claim` holding its [`Holder`] as JSON. It is
//! created exclusively — written under a unique temporary name, then hard-linked to its final
//! name, which fails if that name exists (atomic on local file systems and on NFS) — so of two
//! processes racing for one generation exactly one wins. The holder refreshes the file's
//! modification time every `ttl / 5` (the heartbeat); a claim not refreshed for `ttl` is stale,
//! and so is one whose holder ran on this host and has exited. A stale claim is taken over by
//! creating the next generation, again exclusively, so one taker wins.
//!
//! Guarantee: two processes train the same run group at once only when a holder that is still
//! alive misses its heartbeats for a whole `ttl` (stopped, or cut off from the file system);
//! then at most the groups it held at that moment are trained twice, and since a run's record
//! is a function of its key, both write the same bytes.

use crate::files::{unique_suffix, StoreError};

pub use crate::files::host_name;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Who holds a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// The process's start time on that host (clock ticks since boot), so a reused pid is not
    /// mistaken for the holder.
    pub pid_start: Option<u64>,
    /// What the holder is, e.g. `suite run --shard 2/4`.
    pub label: String,
}

impl Holder {
    /// This process, labelled `label`.
    pub fn me(label: &str) -> Self {
        Self { host: host_name(), pid: std::process::id(), pid_start: process_start(std::process::id()), label: label.to_string() }
    }

    /// Whether this holder is a process of this host that has exited (or whose pid now names
    /// another process). A holder on another host is never known dead: its claim expires.
    pub fn known_dead(&self) -> bool {
        if self.host != host_name() {
            return false;
        }
        match process_start(self.pid) {
            None => true,
            Some(start) => self.pid_start.is_some_and(|s| s != start),
        }
    }
}

/// The state of a claim key.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimState {
    /// Nobody holds it.
    Free,
    /// Held and alive: last heartbeat `age` ago.
    Live {
        /// The holder (None when the claim file could not be read).
        holder: Option<Holder>,
        /// Time since the last heartbeat.
        age: Duration,
    },
    /// Held by a process that stopped beating (or exited): may be taken over.
    Stale {
        /// The holder (None when the claim file could not be read).
        holder: Option<Holder>,
        /// Time since the last heartbeat.
        age: Duration,
    },
}

/// What [`Claims::acquire`] got.
#[derive(Clone, Debug, PartialEq)]
pub enum Acquired {
    /// The claim is now this process's (`took_over`: from a stale holder).
    Yes {
        /// The stale holder it was taken from, if any.
        took_over: Option<Holder>,
    },
    /// Another live process holds it.
    HeldBy(Option<Holder>),
}

/// This process's claims in one claims directory.
pub struct Claims {
    dir: PathBuf,
    ttl: Duration,
    me: Holder,
    held: Mutex<HashMap<String, (PathBuf, usize)>>,
}

/// Claim time-to-live: `BEATMATCH_CLAIM_TTL_SECS` (seconds), else 5 minutes. Hosts' clocks must
/// agree to well within it.
pub fn default_ttl() -> Duration {
    let secs = std::env::var("BEATMATCH_CLAIM_TTL_SECS").ok().and_then(|v| v.parse::<f64>().ok()).filter(|s| *s > 0.0).unwrap_or(300.0);
    Duration::from_secs_f64(secs)
}

fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
    move |source| StoreError::io(action, path, source)
}

impl Claims {
    /// Claims kept in `dir` (created if missing) for `me`.
    pub fn new(dir: &Path, ttl: Duration, me: Holder) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        Ok(Self { dir: dir.to_path_buf(), ttl, me, held: Mutex::new(HashMap::new()) })
    }

    /// The time-to-live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often a holder should call [`Claims::heartbeat`].
    pub fn heartbeat_interval(&self) -> Duration {
        self.ttl / 5
    }

    fn generations(&self, key: &str) -> Result<Vec<(u64, PathBuf)>, StoreError> {
        let prefix = format!("{key}.");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(io("listing", &self.dir))? {
            let Ok(e) = e else { continue };
            let name = e.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".claim")) else { continue };
            if let Ok(g) = rest.parse::<u64>() {
                out.push((g, e.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every key with a claim file in the directory (whatever its state).
    pub fn keys(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return vec![] };
        let keys: std::collections::BTreeSet<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let (key, g) = name.strip_suffix(".claim")?.rsplit_once('.')?;
                (g.parse::<u64>().is_ok() && !key.starts_with('.')).then(|| key.to_string())
            })
            .collect();
        keys.into_iter().collect()
    }

    /// Every claim file of `key`.
    pub fn generation_paths(&self, key: &str) -> Vec<PathBuf> {
        self.generations(key).map(|g| g.into_iter().map(|(_, p)| p).collect()).unwrap_or_default()
    }

    /// The state of `key`'s newest claim.
    pub fn state(&self, key: &str) -> Result<ClaimState, StoreError> {
        Ok(self.newest(key)?.map_or(ClaimState::Free, |(_, _, s)| s))
    }

    fn newest(&self, key: &str) -> Result<Option<(u64, PathBuf, ClaimState)>, StoreError> {
        let Some((g, path)) = self.generations(key)?.pop() else { return Ok(None) };
        let Ok(meta) = std::fs::metadata(&path) else {
            // Released between the listing and now.
            return Ok(Some((g, path, ClaimState::Free)));
        };
        let age = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok()).unwrap_or_default();
        let holder: Option<Holder> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let dead = holder.as_ref().is_some_and(Holder::known_dead);
        let state = if dead || age >= self.ttl { ClaimState::Stale { holder, age } } else { ClaimState::Live { holder, age } };
        Ok(Some((g, path, state)))
    }

    /// Claim `key` for this process: free keys and stale claims are taken, a live claim of
    /// another process is not. Claiming a key this process holds counts one more use of it
    /// (each use ends with a [`Claims::release`]).
    pub fn acquire(&self, key: &str) -> Result<Acquired, StoreError> {
        if let Some((_, uses)) = self.held.lock().unwrap().get_mut(key) {
            *uses += 1;
            return Ok(Acquired::Yes { took_over: None });
        }
        // A few rounds: a lost race re-reads the new holder.
        for _ in 0..4 {
            let (next, took_over) = match self.newest(key)? {
                None => (1, None),
                Some((g, _, ClaimState::Free)) => (g + 1, None),
                Some((_, _, ClaimState::Live { holder, .. })) => return Ok(Acquired::HeldBy(holder)),
                Some((g, _, ClaimState::Stale { holder, .. })) => (g + 1, holder),
            };
            let path = self.dir.join(format!("{key}.{next}.claim"));
            let tmp = self.dir.join(format!(".{key}.{}.tmp", unique_suffix()));
            let mut bytes = serde_json::to_vec(&self.me).expect("a holder serialises");
            bytes.push(b'\n');
            std::fs::write(&tmp, &bytes).map_err(|e| StoreError::io("writing", &tmp, e))?;
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    // Older generations are history now.
                    for (g, old) in self.generations(key)? {
                        if g < next {
                            let _ = std::fs::remove_file(old);
                        }
                    }
                    self.held.lock().unwrap().insert(key.to_string(), (path, 1));
                    return Ok(Acquired::Yes { took_over });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("creating", &path, e)),
            }
        }
        Ok(Acquired::HeldBy(None))
    }

    /// End one use of `key`; the last use removes the claim file.
    pub fn release(&self, key: &str) {
        let mut held = self.held.lock().unwrap();
        let Some((path, uses)) = held.get_mut(key) else { return };
        *uses -= 1;
        if *uses == 0 {
            let path = path.clone();
            held.remove(key);
            // Only our own generation: a taker's newer file is left alone.
            let _ = std::fs::remove_file(path);
        }
    }

    /// Whether this process still holds `key`'s newest claim (false once taken over).
    pub fn still_mine(&self, key: &str) -> bool {
        let Some(path) = self.held.lock().unwrap().get(key).map(|(p, _)| p.clone()) else { return false };
        self.newest(key).ok().flatten().is_some_and(|(_, newest, _)| newest == path)
    }

    /// Refresh every claim this process holds (call every [`Claims::heartbeat_interval`]).
    pub fn heartbeat(&self) {
        let paths: Vec<PathBuf> = self.held.lock().unwrap().values().map(|(p, _)| p.clone()).collect();
        for p in paths {
            if let Ok(f) = std::fs::File::options().append(true).open(&p) {
                let _ = f.set_modified(SystemTime::now());
            }
        }
    }

    /// Keys this process holds.
    pub fn held(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.held.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        for (_, (path, _)) in self.held.get_mut().unwrap().drain() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The claim key of a run group: the runs of one problem (by content hash) from one seed.
pub fn group_key(problem_hash: &str, seed: u64) -> String {
    format!("{}-s{seed}", &problem_hash[..problem_hash.len().min(16)])
}

/// A live process's start time (field 22 of `/proc/PID/stat`); None when there is no such
/// process, or it is a zombie (killed, not yet reaped). Without `/proc` nothing can be told, so
/// every pid reads as alive and claims end by expiry only.
fn process_start(pid: u32) -> Option<u64> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) if !Path::new("/proc/self").exists() => return Some(0),
        Err(_) => return None,
    };
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(dir: &Path, label: &str, ttl: f64) -> Claims {
        Claims::new(dir, Duration::from_secs_f64(ttl), Holder::me(label)).unwrap()
    }

    #[test]
    fn one_of_two_claimants_wins_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        let a = claims(dir.path(), "a", 60.0);
        let b = claims(dir.path(), "b", 60.0);
        assert_eq!(a.acquire("g").unwrap(), Acquired::Yes { took_over: None });
        match b.acquire("g").unwrap() {
            Acquired::HeldBy(Some(h)) => assert_eq!(h.label, "a"),
            other => panic!("{other:?}"),
        }
        // A second use by the holder, then two releases.
        assert_eq!(a.acquire("g").unwrap(), Acquired::Yes { took_over: None });
        a.release("g");
        assert!(matches!(b.acquire("g").unwrap(), Acquired::HeldBy(_)));
        a.release("g");
        assert_eq!(b.state("g").unwrap(), ClaimState::Free);
        assert_eq!(b.acquire("g").unwrap(), Acquired::Yes { took_over: None });
        assert!(b.still_mine("g"));
    }

    #[test]
    fn an_expired_claim_is_taken_over_once_and_the_old_holder_learns_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = claims(dir.path(), "a", 0.2);
        assert!(matches!(a.acquire("g").unwrap(), Acquired::Yes { .. }));
        std::thread::sleep(Duration::from_millis(300));
        let b = claims(dir.path(), "b", 0.2);
        let c = claims(dir.path(), "c", 0.2);
        match b.acquire("g").unwrap() {
            Acquired::Yes { took_over: Some(h) } => assert_eq!(h.label, "a"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.acquire("g").unwrap(), Acquired::HeldBy(Some(ref h)) if h.label == "b"));
        assert!(!a.still_mine("g") && b.still_mine("g"));
        // The old holder's release leaves the taker's claim alone.
        a.release("g");
        assert!(b.still_mine("g"));
    }

    #[test]
    fn heartbeats_keep_a_claim_alive() {
        let dir = tempfile::tempdir().unwrap();
        let a = claims(dir.path(), "a", 0.5);
        a.acquire("g").unwrap();
        let b = claims(dir.path(), "b", 0.5);
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(100));
            a.heartbeat();
        }
        assert!(matches!(b.acquire("g").unwrap(), Acquired::HeldBy(_)));
    }

    #[test]
    fn a_claim_of_an_exited_process_on_this_host_is_stale_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Holder { pid, pid_start: Some(1), ..Holder::me("dead") };
        std::fs::write(dir.path().join("g.7.claim"), serde_json::to_vec(&dead).unwrap()).unwrap();
        let b = claims(dir.path(), "b", 3600.0);
        assert!(matches!(b.state("g").unwrap(), ClaimState::Stale { .. }));
        assert!(matches!(b.acquire("g").unwrap(), Acquired::Yes { took_over: Some(ref h) } if h.label == "dead"));
        assert!(dir.path().join("g.8.claim").exists() && !dir.path().join("g.7.claim").exists());
        // This process is alive, so its own holder record is not dead.
        assert!(!Holder::me("x").known_dead());
    }

    #[test]
    fn racing_threads_never_share_a_claim() {
        let dir = tempfile::tempdir().unwrap();
        let winners = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for i in 0..8 {
                let (dir, winners) = (dir.path(), &winners);
                s.spawn(move || {
                    // Distinct Claims stand in for distinct processes.
                    let c = claims(dir, &format!("t{i}"), 60.0);
                    if matches!(c.acquire("g").unwrap(), Acquired::Yes { .. }) {
                        winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::mem::forget(c);
                    }
                });
            }
        });
        assert_eq!(winners.into_inner(), 1);
    }
}
