//! The IDX file format (LeCun's MNIST format, also Fashion-MNIST), optionally gzip-compressed.
//!
//! Header: two zero bytes, a type code (0x08 = u8), the rank, then `rank` big-endian u32 dims.

use anyhow::{bail, Context, Result};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

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
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: not a valid gzip stream", path.display()))?;
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
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let n: usize = dims.iter().product();
    let body = &bytes[header..];
    if body.len() != n {
        bail!("dims {dims:?} need {n} data bytes, file has {}", body.len());
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
