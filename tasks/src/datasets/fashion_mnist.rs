//! Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT licence): 60,000 train / 10,000 test
//! 28×28 grey images in 10 classes, read from the four standard IDX gzip files.
//!
//! Looked for in `$BEATMATCH_DATA/fashion-mnist`, `$BEATMATCH_DATA`, the fetch cache
//! (`suite data fetch fashion_mnist`), then the Debian package `dataset-fashion-mnist`'s
//! `/usr/share/datasets/fashion-mnist`.

use super::idx::ImageSet;

/// Where Fashion-MNIST is found and how it is read.
pub const SET: ImageSet = ImageSet {
    dataset: "fashion_mnist",
    sub: "fashion-mnist",
    extra_dirs: &["/usr/share/datasets/fashion-mnist"],
    how_to_get: "run `suite data fetch fashion_mnist`, install it with `sudo apt-get install dataset-fashion-mnist`, \
                 or put the four *-ubyte.gz files in $BEATMATCH_DATA/fashion-mnist",
    // Zalando Research's bucket; the sums are of the files as published (torchvision checks the same).
    base_url: "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
    sha256: [
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ],
};
