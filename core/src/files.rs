//! Files written whole or not at all, under temporary names no other process on any host
//! picks, and the errors that name the file (and, for a full disk or a read-only store, the
//! directory): what the store and the claims write with.

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What went wrong reading or writing a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read, written or renamed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done, e.g. `reading`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a separate cause: printed once).
        error: std::io::Error,
    },
    /// The store's file system is full.
    #[error("no space left on the device holding {} (while {action} {}); free space and rerun: finished runs are kept, the unfinished one is retried", dir.display(), path.display())]
    NoSpace {
        /// What was being done.
        action: &'static str,
        /// The directory written into.
        dir: PathBuf,
        /// The file.
        path: PathBuf,
    },
    /// The store cannot be written (read-only file system or no permission).
    #[error("{} is not writable ({error}, while {action} {}); point --out at a writable directory", dir.display(), path.display())]
    NotWritable {
        /// What was being done.
        action: &'static str,
        /// The directory written into.
        dir: PathBuf,
        /// The file.
        path: PathBuf,
        /// The OS error (in the message, not a separate cause: printed once).
        error: std::io::Error,
    },
    /// A file is not valid JSON of the expected schema.
    #[error("parsing {}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error (in the message).
        error: serde_json::Error,
    },
    /// A file was written by a schema this code cannot read.
    #[error("{}: schema version {found}, but this beatmatch reads version {expected} (rerun `suite run` with this version to rewrite it)", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this code reads.
        expected: u32,
    },
    /// The manifest names records the directory does not hold.
    #[error("{count} of the study's runs have no record in {} (first: {first}); run `suite run` to finish them", dir.display())]
    MissingRecords {
        /// The `runs` directory.
        dir: PathBuf,
        /// How many.
        count: usize,
        /// The first missing hash.
        first: String,
    },
}

impl StoreError {
    /// The error of `action` on `path`: a full disk and a read-only store get their own
    /// variants, naming the directory.
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        let dir = path.parent().map_or_else(|| path.to_path_buf(), Path::to_path_buf);
        let path = path.to_path_buf();
        match source.raw_os_error() {
            Some(28) => StoreError::NoSpace { action, dir, path },                                         // ENOSPC
            Some(30) | Some(13) | Some(1) => StoreError::NotWritable { action, dir, path, error: source }, // EROFS, EACCES, EPERM
            _ => StoreError::Io { action, path, error: source },
        }
    }
}

/// This host's name (as `/proc/sys/kernel/hostname`, else `$HOSTNAME`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// A temporary-file suffix no other process on any host sharing the directory will pick:
/// host name, process id, a per-process counter and the clock's nanoseconds.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let host: String = host_name().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{host}.{}.{}.{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Serialise `value` as pretty JSON (plus a newline) into `path` via a uniquely named
/// temporary file, fsync and a rename.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|error| StoreError::Parse { path: path.to_path_buf(), error })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Write `bytes` into `path` via a uniquely named temporary file, fsync and a rename; on any
/// error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let name = path.file_name().map_or_else(|| "file".into(), |n| n.to_string_lossy().to_string());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", unique_suffix()));
    fn io<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> StoreError + 'p {
        move |source| StoreError::io(action, path, source)
    }
    let fault = injected_fault();
    let written = (|| {
        if fault == Some(30) {
            return Err(io("creating", &tmp)(std::io::Error::from_raw_os_error(30)));
        }
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        if fault == Some(28) {
            // Half the bytes reach the disk, as when it fills mid-write.
            let _ = f.write_all(&bytes[..bytes.len() / 2]);
            return Err(io("writing", &tmp)(std::io::Error::from_raw_os_error(28)));
        }
        f.write_all(bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into", path))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The fault injected into this write, for tests of full and read-only disks:
/// `BEATMATCH_INJECT_WRITE_FAULT=enospc:N` (or `erofs:N`) lets this process's first N atomic
/// writes through and fails every later one with ENOSPC (EROFS).
fn injected_fault() -> Option<i32> {
    static SPEC: std::sync::OnceLock<Option<(i32, u64)>> = std::sync::OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let (errno, after) = (*SPEC.get_or_init(|| {
        let v = std::env::var("BEATMATCH_INJECT_WRITE_FAULT").ok()?;
        let (kind, n) = v.split_once(':')?;
        let errno = match kind {
            "enospc" => 28,
            "erofs" => 30,
            _ => return None,
        };
        Some((errno, n.parse().ok()?))
    }))?;
    (WRITES.fetch_add(1, Ordering::Relaxed) >= after).then_some(errno)
}
