//! Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT licence): 60,000 train / 10,000 test
//! 28×28 grey images in 10 classes, read from the four standard IDX gzip files.
//!
//! Looked for in `$BEATMATCH_DATA/fashion-mnist`, `$BEATMATCH_DATA`, then the Debian package
//! `dataset-fashion-mnist`'s `/usr/share/datasets/fashion-mnist`.

use super::{idx, Dataset, MissingData};
use anyhow::{ensure, Result};
use std::path::{Path, PathBuf};

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];
const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The first directory holding all four files.
pub fn locate() -> Result<PathBuf, MissingData> {
    let mut candidates = Vec::new();
    if let Some(root) = std::env::var_os("BEATMATCH_DATA") {
        let root = PathBuf::from(root);
        candidates.push(root.join("fashion-mnist"));
        candidates.push(root);
    }
    candidates.push(PathBuf::from(DEBIAN_DIR));
    locate_in(&candidates)
}

/// The first of `candidates` holding all four files, or what is missing and how to get it.
pub fn locate_in(candidates: &[PathBuf]) -> Result<PathBuf, MissingData> {
    for dir in candidates {
        if FILES.iter().all(|f| dir.join(f).is_file()) {
            return Ok(dir.clone());
        }
    }
    Err(MissingData {
        dataset: "fashion_mnist",
        looked: candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        how_to_get: "install it with `sudo apt-get install dataset-fashion-mnist`, or put the four \
                     *-ubyte.gz files in $BEATMATCH_DATA/fashion-mnist"
            .into(),
    })
}

/// Load from a directory holding the four files; pixels scaled to [0, 1].
pub fn load(dir: &Path) -> Result<Dataset> {
    let read = |name: &str| idx::read_u8(&dir.join(name));
    let (train_x, train_y, test_x, test_y) = (read(FILES[0])?, read(FILES[1])?, read(FILES[2])?, read(FILES[3])?);
    for (images, labels) in [(&train_x, &train_y), (&test_x, &test_y)] {
        ensure!(images.dims.len() == 3 && images.dims[1..] == [28, 28], "images must be N×28×28, got {:?}", images.dims);
        ensure!(labels.dims == [images.dims[0]], "labels {:?} do not match images {:?}", labels.dims, images.dims);
        ensure!(labels.data.iter().all(|&l| l < 10), "labels must be in 0..10");
    }
    let scale = |v: Vec<u8>| v.into_iter().map(|p| f32::from(p) / 255.0).collect();
    let labels = |v: Vec<u8>| v.into_iter().map(u32::from).collect();
    Ok(Dataset {
        example_shape: vec![28, 28],
        num_classes: 10,
        train_x: scale(train_x.data),
        train_y: labels(train_y.data),
        test_x: scale(test_x.data),
        test_y: labels(test_y.data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_say_where_we_looked_and_how_to_get_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILES[0]), b"").unwrap();
        let e = locate_in(&[dir.path().to_path_buf()]).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()) && e.contains("apt-get install dataset-fashion-mnist"), "{e}");
        for f in FILES {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(locate_in(&[PathBuf::from("/nonexistent"), dir.path().to_path_buf()]).unwrap(), dir.path());
    }

    #[test]
    fn loads_a_tiny_set_written_in_the_real_format() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, dims: &[usize], data: &[u8]| {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            gz.write_all(&idx::encode_u8(dims, data)).unwrap();
            std::fs::write(dir.path().join(name), gz.finish().unwrap()).unwrap();
        };
        let img: Vec<u8> = (0..3 * 784).map(|i| (i % 256) as u8).collect();
        write(FILES[0], &[3, 28, 28], &img);
        write(FILES[1], &[3], &[0, 9, 4]);
        write(FILES[2], &[1, 28, 28], &img[..784]);
        write(FILES[3], &[1], &[7]);
        let d = load(dir.path()).unwrap();
        assert_eq!((d.train_len(), d.test_len(), d.example_len()), (3, 1, 784));
        assert_eq!(d.train_y, vec![0, 9, 4]);
        assert_eq!(d.train_x[255], 1.0);
        write(FILES[3], &[1], &[12]);
        assert!(load(dir.path()).unwrap_err().to_string().contains("0..10"));
    }
}
