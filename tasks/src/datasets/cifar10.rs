//! CIFAR-10 (Krizhevsky 2009): 50,000 train / 10,000 test 32×32 RGB images in 10 classes, read
//! from the "binary version" for users who have it (not shipped: no copy reachable from here).
//!
//! Format: `data_batch_{1..5}.bin` and `test_batch.bin`, each a sequence of 3,073-byte records —
//! the label byte, then 1,024 red, 1,024 green and 1,024 blue pixels, rows top to bottom — so an
//! example is `[3, 32, 32]` (channels first) as stored. Pixels scaled to [0, 1].
//!
//! Looked for in `$BEATMATCH_DATA/cifar10`, `$BEATMATCH_DATA`, the fetch cache, and in each of
//! those a `cifar-10-batches-bin` subdirectory (the archive's own).

use super::{Dataset, Layout, MissingData};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};

/// The five training files then the test file.
pub const FILES: [&str; 6] = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"];

/// Bytes per record: label + 3×32×32 pixels.
pub const RECORD: usize = 1 + 3 * 32 * 32;

/// The archive on the dataset's home page; `suite data fetch cifar10` unpacks it (with the
/// system `tar`).
pub const ARCHIVE_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// The archive's published SHA-256.
pub const ARCHIVE_SHA256: &str = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";

const HOW_TO_GET: &str = "run `suite data fetch cifar10` (needs a network), or unpack cifar-10-binary.tar.gz \
                          (https://www.cs.toronto.edu/~kriz/cifar.html) into $BEATMATCH_DATA/cifar10";

/// The first directory holding all six files.
pub fn locate() -> Result<PathBuf, MissingData> {
    let dirs: Vec<PathBuf> = super::search_dirs("cifar10", &[]).into_iter().flat_map(|d| [d.join("cifar-10-batches-bin"), d]).collect();
    locate_in(&dirs)
}

/// The first of `candidates` holding all six files, or where we looked and how to get them.
pub fn locate_in(candidates: &[PathBuf]) -> Result<PathBuf, MissingData> {
    candidates.iter().find(|d| FILES.iter().all(|f| d.join(f).is_file())).cloned().ok_or_else(|| MissingData {
        dataset: "cifar10",
        looked: candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        how_to_get: HOW_TO_GET.into(),
    })
}

/// Parse one batch file's bytes into pixels and labels; `name` is used in errors.
pub fn parse(name: &str, bytes: &[u8]) -> Result<(Vec<f32>, Vec<u32>)> {
    ensure!(bytes.len().is_multiple_of(RECORD), "{name}: {} bytes is not a whole number of {RECORD}-byte records", bytes.len());
    let n = bytes.len() / RECORD;
    let (mut x, mut y) = (Vec::with_capacity(n * (RECORD - 1)), Vec::with_capacity(n));
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        ensure!(rec[0] < 10, "{name}: record {i} has label {}; expected 0..10", rec[0]);
        y.push(u32::from(rec[0]));
        x.extend(rec[1..].iter().map(|&p| f32::from(p) / 255.0));
    }
    Ok((x, y))
}

/// Load from a directory holding the six files.
pub fn load(dir: &Path) -> Result<Dataset> {
    let read = |f: &str| -> Result<(Vec<f32>, Vec<u32>)> {
        let path = dir.join(f);
        parse(&path.display().to_string(), &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
    };
    let (mut train_x, mut train_y) = (Vec::new(), Vec::new());
    for f in &FILES[..5] {
        let (x, y) = read(f)?;
        train_x.extend(x);
        train_y.extend(y);
    }
    let (test_x, test_y) = read(FILES[5])?;
    Ok(Dataset { layout: Layout::Examples, example_shape: vec![3, 32, 32], num_classes: 10, train_x, train_y, test_x, test_y })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, seed: usize) -> Vec<u8> {
        let mut r = vec![label];
        r.extend((0..RECORD - 1).map(|i| ((i * 31 + seed * 7) % 256) as u8));
        r
    }

    #[test]
    fn loads_small_files_written_in_the_binary_format() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cifar-10-batches-bin");
        std::fs::create_dir(&dir).unwrap();
        for (k, f) in FILES.iter().enumerate() {
            let bytes: Vec<u8> = (0..2).flat_map(|j| record(((k + j) % 10) as u8, k * 2 + j)).collect();
            std::fs::write(dir.join(f), bytes).unwrap();
        }
        let found = locate_in(&[root.path().to_path_buf(), dir.clone()]).unwrap();
        assert_eq!(found, dir);
        let d = load(&found).unwrap();
        assert_eq!((d.train_len(), d.test_len(), d.example_len()), (10, 2, 3072));
        assert_eq!(d.train_y, vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5]);
        assert_eq!(d.test_y, vec![5, 6]);
        // Record 1 of data_batch_1 (seed 1): its green plane starts at pixel 1024.
        assert_eq!(d.train_x[3072 + 1024], ((1024 * 31 + 7) % 256) as f32 / 255.0);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let e = parse("x.bin", &[0u8; RECORD + 5]).unwrap_err().to_string();
        assert!(e.contains("x.bin") && e.contains("whole number"), "{e}");
        let e = parse("y.bin", &record(10, 0)).unwrap_err().to_string();
        assert!(e.contains("record 0 has label 10"), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = locate_in(&[empty.path().to_path_buf()]).unwrap_err().to_string();
        assert!(e.contains("suite data fetch cifar10"), "{e}");
    }
}
