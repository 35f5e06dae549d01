//! The IDX file format (LeCun's MNIST format, also Fashion-MNIST), optionally gzip-compressed.
//!
//! Header: two zero bytes, a type code (0x08 = u8), the rank, then `rank` big-endian u32 dims.

use super::{Dataset, Layout, MissingData};
use anyhow::{bail, ensure, Context, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The standard four files of an MNIST-style image set: train images, train labels, test images,
/// test labels.
pub const FILES: [&str; 4] = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];

/// An MNIST-style image set (MNIST, Fashion-MNIST): 28×28 grey images in 10 classes, as the
/// four gzipped IDX [`FILES`].
#[derive(Clone, Copy, Debug)]
pub struct ImageSet {
    /// Registry name, e.g. `fashion_mnist`.
    pub dataset: &'static str,
    /// Directory name under `$BEATMATCH_DATA` and the fetch cache, e.g. `fashion-mnist`.
    pub sub: &'static str,
    /// Further directories to look in (e.g. a Debian package's).
    pub extra_dirs: &'static [&'static str],
    /// One line telling the user how to get it.
    pub how_to_get: &'static str,
    /// Canonical URL of the directory holding the four [`FILES`] (no trailing slash).
    pub base_url: &'static str,
    /// Published SHA-256 of each of the four [`FILES`], in that order.
    pub sha256: [&'static str; 4],
}

impl ImageSet {
    /// The four files to download, with their sums.
    pub fn downloads(&self) -> Vec<super::Download> {
        FILES.iter().zip(self.sha256).map(|(f, sha256)| super::Download { url: format!("{}/{f}", self.base_url), sha256 }).collect()
    }

    /// The first directory holding all four files.
    pub fn locate(&self) -> Result<PathBuf, MissingData> {
        self.locate_in(&super::search_dirs(self.sub, self.extra_dirs))
    }

    /// The first of `candidates` holding all four files, or where we looked and how to get them.
    pub fn locate_in(&self, candidates: &[PathBuf]) -> Result<PathBuf, MissingData> {
        for dir in candidates {
            if FILES.iter().all(|f| dir.join(f).is_file()) {
                return Ok(dir.clone());
            }
        }
        Err(MissingData {
            dataset: self.dataset,
            looked: candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
            how_to_get: self.how_to_get.into(),
        })
    }

    /// Load from a directory holding the four files; pixels scaled to [0, 1].
    pub fn load(&self, dir: &Path) -> Result<Dataset> {
        let read = |name: &str| read_u8(&dir.join(name));
        let (train_x, train_y, test_x, test_y) = (read(FILES[0])?, read(FILES[1])?, read(FILES[2])?, read(FILES[3])?);
        for (images, labels) in [(&train_x, &train_y), (&test_x, &test_y)] {
            ensure!(images.dims.len() == 3 && images.dims[1..] == [28, 28], "{}: images must be N×28×28, got {:?}", self.dataset, images.dims);
            ensure!(labels.dims == [images.dims[0]], "{}: labels {:?} do not match images {:?}", self.dataset, labels.dims, images.dims);
            ensure!(labels.data.iter().all(|&l| l < 10), "{}: labels must be in 0..10", self.dataset);
        }
        let scale = |v: Vec<u8>| v.into_iter().map(|p| f32::from(p) / 255.0).collect();
        let labels = |v: Vec<u8>| v.into_iter().map(u32::from).collect();
        Ok(Dataset {
            layout: Layout::Examples,
            example_shape: vec![28, 28],
            num_classes: 10,
            train_x: scale(train_x.data),
            train_y: labels(train_y.data),
            test_x: scale(test_x.data),
            test_y: labels(test_y.data),
        })
    }
}

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxU8 {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<u8>,
}

/// Read an IDX u8 file; a `.gz` name is decompressed.
pub fn read_u8(path: &Path) -> Result<IdxU8> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..]).read_to_end(&mut out).with_context(|| format!("{}: not a valid gzip stream", path.display()))?;
        out
    } else {
        raw
    };
    parse_u8(&bytes).with_context(|| format!("{}: not a valid IDX file", path.display()))
}

/// Parse IDX u8 bytes.
pub fn parse_u8(bytes: &[u8]) -> Result<IdxU8> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        bail!("missing the IDX magic (two zero bytes, type, rank)");
    }
    if bytes[2] != 0x08 {
        bail!("element type 0x{:02x}; expected 0x08 (unsigned byte)", bytes[2]);
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        bail!("header truncated: {} bytes, need {header} for rank {rank}", bytes.len());
    }
    let dims: Vec<usize> = (0..rank).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let body = &bytes[header..];
    // Checked: declared sizes are untrusted, and their product may overflow.
    let n = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n != Some(body.len()) {
        bail!("dims {dims:?} need {} data bytes, file has {}", n.map_or("more than 2^64".into(), |n| n.to_string()), body.len());
    }
    Ok(IdxU8 { dims, data: body.to_vec() })
}

/// Encode an IDX u8 array (used by tests and tools that write small IDX files).
pub fn encode_u8(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    #[test]
    fn round_trip_plain_and_gzip() {
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode_u8(&[2, 3, 4], &data);
        assert_eq!(parse_u8(&bytes).unwrap(), IdxU8 { dims: vec![2, 3, 4], data: data.clone() });

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-idx3-ubyte.gz");
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&bytes).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        assert_eq!(read_u8(&path).unwrap().data, data);
    }

    const SET: ImageSet = ImageSet {
        dataset: "test_set",
        sub: "test-set",
        extra_dirs: &[],
        how_to_get: "write it yourself",
        base_url: "https://example.org/set",
        sha256: [""; 4],
    };

    #[test]
    fn missing_files_say_where_we_looked_and_how_to_get_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILES[0]), b"").unwrap();
        let e = SET.locate_in(&[dir.path().to_path_buf()]).unwrap_err().to_string();
        assert!(e.contains(&dir.path().display().to_string()) && e.contains("write it yourself"), "{e}");
        for f in FILES {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        assert_eq!(SET.locate_in(&[PathBuf::from("/nonexistent"), dir.path().to_path_buf()]).unwrap(), dir.path());
    }

    #[test]
    fn loads_a_tiny_set_written_in_the_real_format() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, dims: &[usize], data: &[u8]| {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            gz.write_all(&encode_u8(dims, data)).unwrap();
            std::fs::write(dir.path().join(name), gz.finish().unwrap()).unwrap();
        };
        let img: Vec<u8> = (0..3 * 784).map(|i| (i % 256) as u8).collect();
        write(FILES[0], &[3, 28, 28], &img);
        write(FILES[1], &[3], &[0, 9, 4]);
        write(FILES[2], &[1, 28, 28], &img[..784]);
        write(FILES[3], &[1], &[7]);
        let d = SET.load(dir.path()).unwrap();
        assert_eq!((d.train_len(), d.test_len(), d.example_len()), (3, 1, 784));
        assert_eq!(d.train_y, vec![0, 9, 4]);
        assert_eq!(d.train_x[255], 1.0);
        write(FILES[3], &[1], &[12]);
        assert!(SET.load(dir.path()).unwrap_err().to_string().contains("0..10"));
        write(FILES[2], &[1, 27, 28], &img[..756]);
        assert!(SET.load(dir.path()).unwrap_err().to_string().contains("N×28×28"));
    }

    #[test]
    fn truncated_or_wrong_type_is_an_error() {
        let mut bytes = encode_u8(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        bytes.pop();
        assert!(parse_u8(&bytes).unwrap_err().to_string().contains("need 6 data bytes"));
        let mut wrong = encode_u8(&[1], &[0]);
        wrong[2] = 0x0D;
        assert!(parse_u8(&wrong).unwrap_err().to_string().contains("expected 0x08"));
    }
}
