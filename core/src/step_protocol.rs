//! The step protocol's wire format (`docs/step-protocol.md`): how the suite and a worker
//! process that owns an optimizer talk. Every frame is a `u32` little-endian length, then a kind
//! byte and the body; tensors never travel in frames (they live in a shared file).
//!
//! A worker is untrusted input: every way its frames can be wrong is an error that says what was
//! read and what was expected, never a panic or an allocation larger than the frame limit
//! ([`read_frame`], [`Ready::parse`], [`read_worker_stream`]: the fuzz target `step_frames`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};

/// The protocol version this code speaks.
pub const PROTOCOL: u32 = 1;

/// The largest frame either side sends (bytes after the length).
pub const MAX_FRAME: usize = 1 << 20;

/// Frame kinds, by who sends them.
pub mod kind {
    /// Suite → worker: hello (JSON).
    pub const HELLO: u8 = b'H';
    /// Worker → suite: ready (JSON, [`super::Ready`]).
    pub const READY: u8 = b'R';
    /// Suite → worker: take a step ([`super::step_body`]).
    pub const STEP: u8 = b'S';
    /// Worker → suite: done (empty).
    pub const DONE: u8 = b'D';
    /// Suite → worker: write the evaluation parameters (empty).
    pub const EVAL: u8 = b'V';
    /// Worker → suite: an error (UTF-8 text).
    pub const ERROR: u8 = b'X';
    /// Suite → worker: quit (empty).
    pub const QUIT: u8 = b'Q';
}

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// One of [`kind`]'s bytes (unchecked here: the reader of a conversation checks).
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
    #[error("frame length {0} (bytes {bytes:?}): expected 1..={MAX_FRAME}; is the worker writing something other than frames to stdout?", bytes = .0.to_le_bytes().map(char::from).iter().collect::<String>())]
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

/// Write one frame and flush. A body over the limit is an `InvalidInput` error.
pub fn write_frame(w: &mut impl Write, kind: u8, body: &[u8]) -> io::Result<()> {
    if body.len() >= MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("frame of {} bytes over the protocol's limit of {MAX_FRAME}", 1 + body.len())));
    }
    let mut buf = Vec::with_capacity(5 + body.len());
    buf.extend_from_slice(&(1 + body.len() as u32).to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(body);
    w.write_all(&buf)?;
    w.flush()
}

/// A step frame's body: the zero-based step index, then the member count and one mini-batch
/// loss (nats) per member.
pub fn step_body(step: u64, losses: &[f32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + 4 * losses.len());
    b.extend_from_slice(&step.to_le_bytes());
    b.extend_from_slice(&(losses.len() as u32).to_le_bytes());
    for l in losses {
        b.extend_from_slice(&l.to_le_bytes());
    }
    b
}

/// What a worker says in its ready frame.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// The protocol version it speaks.
    pub protocol: u32,
    /// Library name → version, as the worker reports them (kept in every record).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Whether the worker evaluates elsewhere than at its parameters (answers [`kind::EVAL`]).
    #[serde(default)]
    pub eval_params: bool,
}

/// A ready frame that is not what this suite speaks.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// Not the JSON object expected.
    #[error("the worker's ready frame is not the JSON expected ({0}); it began {1:?}")]
    Json(serde_json::Error, String),
    /// Another protocol version.
    #[error("the worker speaks step protocol {0}; this suite speaks {PROTOCOL}")]
    Version(u32),
}

impl Ready {
    /// Parse and check a ready frame's body.
    pub fn parse(body: &[u8]) -> Result<Self, ReadyError> {
        let head = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let r: Ready = serde_json::from_slice(body).map_err(|e| ReadyError::Json(e, head))?;
        if r.protocol != PROTOCOL {
            return Err(ReadyError::Version(r.protocol));
        }
        Ok(r)
    }
}

/// Read everything a worker could send in one conversation, as the suite does: a ready frame,
/// then done or error frames, to the end or the first error. Returns the frames accepted (what
/// the fuzz target feeds; the suite itself reads frame by frame with a timeout).
pub fn read_worker_stream(mut r: impl Read) -> Result<usize, String> {
    let mut n = 0;
    while let Some(f) = read_frame(&mut r).map_err(|e| e.to_string())? {
        match (n, f.kind) {
            (0, kind::READY) => {
                Ready::parse(&f.body).map_err(|e| e.to_string())?;
            }
            (_, kind::ERROR) => return Err(String::from_utf8_lossy(&f.body).into_owned()),
            (1.., kind::DONE) if f.body.is_empty() => {}
            (_, k) => return Err(format!("unexpected frame `{}` ({} bytes) at frame {n}", char::from(k).escape_default(), f.body.len())),
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_every_malformed_one_is_named() {
        let mut buf = Vec::new();
        write_frame(&mut buf, kind::STEP, &step_body(7, &[1.5, 2.0])).unwrap();
        write_frame(&mut buf, kind::QUIT, &[]).unwrap();
        let mut r = buf.as_slice();
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.kind, f.body.len()), (b'S', 8 + 4 + 8));
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), Frame { kind: b'Q', body: vec![] });
        assert!(read_frame(&mut r).unwrap().is_none());

        let err = |bytes: &[u8]| read_frame(&mut &bytes[..]).unwrap_err().to_string();
        assert!(err(&[1, 0]).contains("cut short after 2 of 4"));
        assert!(err(&[0, 0, 0, 0]).contains("length 0"));
        // Text on stdout reads as an absurd length, not as a 1.9 GB allocation, and the error
        // shows the text.
        let e = err(b"hello world");
        assert!(e.contains("stdout") && e.contains("hell"), "{e}");
        assert!(err(&[5, 0, 0, 0, b'D', 1]).contains("2 of 5 bytes"));
        assert!(write_frame(&mut Vec::new(), b'X', &vec![0; MAX_FRAME]).is_err());
    }

    #[test]
    fn a_ready_frame_of_another_version_or_shape_is_refused_by_name() {
        let r = Ready::parse(br#"{"protocol": 1, "versions": {"numpy": "2.4.6"}}"#).unwrap();
        assert_eq!((r.versions["numpy"].as_str(), r.eval_params), ("2.4.6", false));
        assert!(Ready::parse(br#"{"protocol": 2}"#).unwrap_err().to_string().contains("speaks step protocol 2; this suite speaks 1"));
        let e = Ready::parse(b"[1, 2]").unwrap_err().to_string();
        assert!(e.contains("not the JSON expected") && e.contains("[1, 2]"), "{e}");
    }

    #[test]
    fn a_worker_stream_is_a_ready_then_dones() {
        let mut ok = Vec::new();
        write_frame(&mut ok, kind::READY, br#"{"protocol": 1}"#).unwrap();
        write_frame(&mut ok, kind::DONE, &[]).unwrap();
        assert_eq!(read_worker_stream(ok.as_slice()), Ok(2));
        let mut done_first = Vec::new();
        write_frame(&mut done_first, kind::DONE, &[]).unwrap();
        assert!(read_worker_stream(done_first.as_slice()).unwrap_err().contains("unexpected frame `D`"));
    }
}
