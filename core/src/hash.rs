//! Content hashing: a SHA-256 over the canonical JSON form of a value.
//!
//! Canonical means object keys sorted (serde_json's default `Map` is a `BTreeMap`) and no
//! whitespace, so the same configuration always hashes the same regardless of field order in
//! the YAML it came from.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Hex SHA-256 (64 characters) of the canonical JSON of `value`.
pub fn content_hash<T: Serialize + ?Sized>(value: &T) -> String {
    // Round-trip through `Value` so struct fields and map keys come out sorted.
    let canonical = serde_json::to_value(value).expect("configuration is serialisable");
    let bytes = serde_json::to_vec(&canonical).expect("JSON value is serialisable");
    hex::encode(Sha256::digest(&bytes))
}

/// The first 12 hex characters of [`content_hash`], for display.
pub fn short_hash<T: Serialize + ?Sized>(value: &T) -> String {
    content_hash(value)[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn hash_ignores_map_insertion_order() {
        let mut a = HashMap::new();
        a.insert("lr", 1.0);
        a.insert("b1", 0.9);
        let mut b = HashMap::new();
        b.insert("b1", 0.9);
        b.insert("lr", 1.0);
        assert_eq!(content_hash(&a), content_hash(&b));
        b.insert("b1", 0.95);
        assert_ne!(content_hash(&a), content_hash(&b));
    }
}
