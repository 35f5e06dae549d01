//! MNIST (LeCun, Bottou, Bengio & Haffner 1998): 60,000 train / 10,000 test 28×28 grey digits,
//! read from the four standard IDX gzip files for users who have them (not shipped: no copy with
//! a clear licence is reachable from here).
//!
//! Looked for in `$BEATMATCH_DATA/mnist`, `$BEATMATCH_DATA`, then the fetch cache
//! (`suite data fetch mnist`).

use super::idx::ImageSet;

/// Where MNIST is found and how it is read.
pub const SET: ImageSet = ImageSet {
    dataset: "mnist",
    sub: "mnist",
    extra_dirs: &[],
    how_to_get: "run `suite data fetch mnist` (needs a network), or put the four *-ubyte.gz files in $BEATMATCH_DATA/mnist",
    // The mirror TensorFlow Datasets uses; the sums are the ones TFDS and torchvision check.
    base_url: "https://storage.googleapis.com/cvdf-datasets/mnist",
    sha256: [
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ],
};
