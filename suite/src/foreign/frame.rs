//! The step protocol's frames (docs/step-protocol.md): `u32` little-endian length, then a kind
//! byte and the body. A worker is untrusted input: every way a frame can be wrong is an error
//! that says what was read and what was expected, never a panic or an unbounded allocation.

use std::io::{self, Read, Write};

/// The largest frame either side sends (bytes after the length).
pub const MAX_FRAME: usize = 1 << 20;

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// `H`, `R`, `S`, `D`, `V`, `X` or `Q`.
    pub kind: u8,
    /// What follows the kind.
    pub body: Vec<u8>,
}

/// A frame that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
    /// The length prefix was cut off.
    #[error("frame length cut short after {0} of 4 bytes")]
    ShortLength(usize),
    /// A length of 0 or over [`MAX_FRAME`].
    #[error("frame length {0}: expected 1..={MAX_FRAME} (a worker writing something else to stdout?)")]
    BadLength(u32),
    /// The body was cut off.
    #[error("frame cut short: {got} of {want} bytes")]
    ShortBody {
        /// Bytes read.
        got: usize,
        /// Bytes announced.
        want: usize,
    },
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The next frame; `None` at a clean end of stream (before a frame starts).
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
    let mut len = [0u8; 4];
    match read_up_to(r, &mut len)? {
        0 => return Ok(None),
        4 => {}
        k => return Err(FrameError::ShortLength(k)),
    }
    let n = u32::from_le_bytes(len);
    if n == 0 || n as usize > MAX_FRAME {
        return Err(FrameError::BadLength(n));
    }
    let mut body = vec![0u8; n as usize];
    let got = read_up_to(r, &mut body)?;
    if got < body.len() {
        return Err(FrameError::ShortBody { got, want: body.len() });
    }
    let kind = body.remove(0);
    Ok(Some(Frame { kind, body }))
}

/// Write one frame and flush.
pub fn write_frame(w: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    assert!(body.len() < MAX_FRAME, "frame of {} bytes over the protocol's limit", 1 + body.len());
    let mut buf = Vec::with_capacity(5 + body.len());
    buf.extend_from_slice(&(1 + body.len() as u32).to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// A step frame's body: the step index and one mini-batch loss per member.
pub fn step_body(step: u64, losses: &[f32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + 4 * losses.len());
    b.extend_from_slice(&step.to_le_bytes());
    b.extend_from_slice(&(losses.len() as u32).to_le_bytes());
    for l in losses {
        b.extend_from_slice(&l.to_le_bytes());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_malformed_one_is_named() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b'S', &step_body(7, &[1.5, 2.0])).unwrap();
        write_frame(&mut buf, b'Q', &[]).unwrap();
        let mut r = buf.as_slice();
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, f.body.len()), (b'S', 8 + 4 + 8));
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), Frame { kind: b'Q', body: vec![] });
        assert!(read_frame(&mut r).unwrap().is_none());

        let err = |bytes: &[u8]| read_frame(&mut &bytes[..]).unwrap_err().to_string();
        assert!(err(&[1, 0]).contains("cut short after 2 of 4"));
        assert!(err(&[0, 0, 0, 0]).contains("length 0"));
        // Text on stdout reads as an absurd length, not as a 1.9 GB allocation.
        assert!(err(b"hello world").contains("stdout"));
        assert!(err(&[5, 0, 0, 0, b'D', 1]).contains("2 of 5 bytes"));
    }
}
