//! The wire protocol between the perf-agent addon (in every Node process) and perf-hub.
//!
//! A connection carries *frames*: a 4-byte big-endian length, one kind byte and a payload.
//! Control frames hold one JSON [`Message`]; data frames hold raw artifact bytes on an upload
//! connection. Frames are bounded by [`MAX_FRAME_LEN`] so a bad peer can't make us allocate
//! without limit, and every decoding failure is a [`ProtocolError`] value, never a panic.
//!
//! Two kinds of connection use the agent port of the hub:
//! - the *control link*: `Hello` → `Challenge` → `Auth` → `Welcome`, then heartbeats, commands,
//!   acks, progress and results in both directions;
//! - an *upload stream* per artifact: `UploadHello` (with the one-time token the hub issued in
//!   the command) → `UploadOffset` (where to resume) → data frames → `UploadDone` → `UploadAck`.
//!   Large artifacts travel there so the control link never queues behind a gigabyte.

pub mod auth;
pub mod capture;
pub mod frame;
pub mod io;
pub mod message;
pub mod metrics_sample;

pub use capture::{capture_kind, AckPoint, CaptureKind, Executor, CAPTURE_KINDS};
pub use frame::{
    encode_data, encode_message, Frame, FrameDecoder, FRAME_HEADER_LEN, MAX_FRAME_LEN, PRE_AUTH_MAX_FRAME_LEN,
};
pub use io::{FrameReader, FrameWriter};
pub use message::*;
pub use metrics_sample::*;

/// Milliseconds since the Unix epoch: the clock of every timestamp on the wire (0 if the system
/// clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Whether `s` has the form of an id the hub hands out (8-64 hex characters). Ids from the other
/// end are checked with it before they reach a query, a log line or a file path.
pub fn is_valid_id(s: &str) -> bool {
    (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Version spoken by this build. The hub refuses a `Hello` with another major version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Everything that can go wrong on the wire, as a value the caller can report.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("message nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("empty frame")]
    EmptyFrame,
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u8),
    #[error("malformed message: {0}")]
    BadMessage(#[from] serde_json::Error),
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame")]
    TruncatedFrame,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected message: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}
