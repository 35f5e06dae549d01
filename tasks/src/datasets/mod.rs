//! Datasets: one module each, all loaded into the same in-memory [`Dataset`] form.
//!
//! Loading is cached per process: every run of a sweep shares one copy.

pub mod cifar10;
pub mod digits;
pub mod fashion_mnist;
pub mod fetch;
pub mod idx;
pub mod mnist;
pub mod mnist1d;
pub mod mnist1d_gen;
pub mod moby_dick;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// How a dataset's values are cut into training items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Fixed-size labelled examples: `x` holds `len × prod(example_shape)` values, `y` the labels.
    Examples,
    /// One token stream (byte values as `f32`, `y` empty), sampled as windows of a language
    /// model's context + 1 tokens.
    Stream,
}

/// A dataset held in memory, inputs flattened row-major as `f32`.
#[derive(Debug)]
pub struct Dataset {
    /// Labelled examples or a token stream.
    pub layout: Layout,
    /// Shape of one example, e.g. `[40]` or `[28, 28]`.
    pub example_shape: Vec<usize>,
    /// Number of classes; labels are in `0..num_classes`.
    pub num_classes: usize,
    /// Training inputs, `train_len × prod(example_shape)` values.
    pub train_x: Vec<f32>,
    /// Training labels.
    pub train_y: Vec<u32>,
    /// Held-out inputs.
    pub test_x: Vec<f32>,
    /// Held-out labels.
    pub test_y: Vec<u32>,
}

impl Dataset {
    /// Values per example.
    pub fn example_len(&self) -> usize {
        self.example_shape.iter().product()
    }
    /// Number of training examples.
    pub fn train_len(&self) -> usize {
        self.train_y.len()
    }
    /// Number of held-out examples.
    pub fn test_len(&self) -> usize {
        self.test_y.len()
    }
}

/// The datasets the registry can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetName {
    /// MNIST-1D (Greydanus 2020), the frozen 4000/1000 set shipped with beatmatch.
    Mnist1d,
    /// Fashion-MNIST (Xiao et al. 2017), 60k/10k 28×28 grey images, read from IDX files.
    FashionMnist,
    /// UCI optdigits 8×8 (scikit-learn's `load_digits`), shipped; 1437/360 split.
    Digits,
    /// MNIST-1D regenerated at 50,000 examples (40k/10k) with the standard recipe and seed.
    Mnist1dLarge,
    /// MNIST (LeCun et al. 1998), 60k/10k 28×28 digits, read from IDX files the user has.
    Mnist,
    /// CIFAR-10 (Krizhevsky 2009), 50k/10k 32×32 RGB images, read from the binary version.
    Cifar10,
    /// *Moby Dick* as a byte stream (shipped): the language-model corpus.
    MobyDick,
}

impl DatasetName {
    /// Every dataset, in display order.
    pub const ALL: [DatasetName; 7] = [
        DatasetName::Mnist1d,
        DatasetName::Mnist1dLarge,
        DatasetName::Digits,
        DatasetName::FashionMnist,
        DatasetName::Mnist,
        DatasetName::Cifar10,
        DatasetName::MobyDick,
    ];

    /// The registry name, e.g. `fashion_mnist`.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist1d => "mnist1d",
            DatasetName::FashionMnist => "fashion_mnist",
            DatasetName::Digits => "digits",
            DatasetName::Mnist1dLarge => "mnist1d_large",
            DatasetName::Mnist => "mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::MobyDick => "moby_dick",
        }
    }

    /// Parse a registry name.
    pub fn parse(s: &str) -> Option<DatasetName> {
        DatasetName::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether this is a token stream for language models (rather than labelled examples).
    pub fn is_text(self) -> bool {
        self == DatasetName::MobyDick
    }

    /// Shape of one example and number of classes (the vocabulary for text: bytes, 256), known
    /// without loading the data.
    pub fn signature(self) -> (Vec<usize>, usize) {
        match self {
            DatasetName::Mnist1d | DatasetName::Mnist1dLarge => (vec![40], 10),
            DatasetName::FashionMnist | DatasetName::Mnist => (vec![28, 28], 10),
            DatasetName::Digits => (vec![8, 8], 10),
            DatasetName::Cifar10 => (vec![3, 32, 32], 10),
            DatasetName::MobyDick => (vec![1], 256),
        }
    }

    /// Where the data is, or why it is not available (with how to get it).
    pub fn locate(self) -> Result<DataSource, MissingData> {
        match self {
            DatasetName::Mnist1d | DatasetName::Digits | DatasetName::MobyDick => Ok(DataSource::Embedded),
            DatasetName::Mnist1dLarge => Ok(DataSource::Generated),
            DatasetName::FashionMnist => fashion_mnist::SET.locate().map(DataSource::Dir),
            DatasetName::Mnist => mnist::SET.locate().map(DataSource::Dir),
            DatasetName::Cifar10 => cifar10::locate().map(DataSource::Dir),
        }
    }

    /// Load (once per process) and return the dataset.
    pub fn load(self) -> anyhow::Result<Arc<Dataset>> {
        static CACHE: OnceLock<Mutex<HashMap<DatasetName, Arc<Dataset>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        // Holding the lock while loading makes concurrent callers wait for one load, not do two.
        let mut guard = cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = guard.get(&self) {
            return Ok(d.clone());
        }
        let data = Arc::new(match self {
            DatasetName::Mnist1d => mnist1d::load_frozen()?,
            DatasetName::FashionMnist => fashion_mnist::SET.load(&fashion_mnist::SET.locate()?)?,
            DatasetName::Mnist => mnist::SET.load(&mnist::SET.locate()?)?,
            DatasetName::Cifar10 => cifar10::load(&cifar10::locate()?)?,
            DatasetName::MobyDick => moby_dick::load()?,
            DatasetName::Digits => digits::load()?,
            DatasetName::Mnist1dLarge => mnist1d_gen::generate(&mnist1d_gen::Mnist1dArgs { num_samples: 50_000, ..Default::default() }),
        });
        guard.insert(self, data.clone());
        Ok(data)
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a dataset was found.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// Compiled into the binary.
    Embedded,
    /// Generated on first use from a fixed recipe and seed.
    Generated,
    /// Read from this directory.
    Dir(PathBuf),
}

/// A dataset that is not on this machine, and how to get it.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{dataset}: data not found ({looked}); {how_to_get}")]
pub struct MissingData {
    /// Dataset name.
    pub dataset: &'static str,
    /// Where we looked.
    pub looked: String,
    /// One line telling the user how to get it.
    pub how_to_get: String,
}

/// Directories searched for a downloadable dataset `sub` (e.g. `fashion-mnist`), in order:
/// `$BEATMATCH_DATA/sub`, `$BEATMATCH_DATA`, where `suite data fetch` puts it, then `extra`.
pub fn search_dirs(sub: &str, extra: &[&str]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(root) = std::env::var_os("BEATMATCH_DATA") {
        let root = PathBuf::from(root);
        dirs.push(root.join(sub));
        dirs.push(root);
    }
    let fetched = fetch_dir(sub);
    if !dirs.contains(&fetched) {
        dirs.push(fetched);
    }
    dirs.extend(extra.iter().map(PathBuf::from));
    dirs
}

/// One file of a dataset to download (what [`fetch`] fetches; the IDX sets list theirs).
#[derive(Clone, Debug)]
pub struct Download {
    /// Canonical URL.
    pub url: String,
    /// Published SHA-256 of the file, lowercase hex.
    pub sha256: &'static str,
}

impl Download {
    /// The file name the URL ends in.
    pub fn file_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }
}

/// Where `suite data fetch` installs dataset `sub`: `$BEATMATCH_DATA/sub`, else
/// `$HOME/.cache/beatmatch/data/sub`.
pub fn fetch_dir(sub: &str) -> PathBuf {
    match std::env::var_os("BEATMATCH_DATA") {
        Some(root) => PathBuf::from(root).join(sub),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into())).join(".cache/beatmatch/data").join(sub),
    }
}
