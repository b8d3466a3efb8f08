//! Frame encoding and an incremental, allocation-bounded decoder.
//!
//! Layout: `u32 BE length | u8 kind | payload`, where length counts the kind byte and the payload.
//! The decoder accepts bytes in any split (as TCP delivers them) and yields whole frames.

use crate::{message::Message, ProtocolError};

/// Largest frame either side accepts (kind byte + payload). Data chunks are far smaller.
pub const MAX_FRAME_LEN: usize = 4 * 1024 * 1024;
/// Length prefix + kind byte.
pub const FRAME_HEADER_LEN: usize = 5;

const KIND_MESSAGE: u8 = 1;
const KIND_DATA: u8 = 2;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message(Message),
    Data(Vec<u8>),
}

/// Appends an encoded control frame to `out`.
pub fn encode_message(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let payload = serde_json::to_vec(msg)?;
    encode_raw(KIND_MESSAGE, &payload, out)
}

/// Appends an encoded data frame to `out`.
pub fn encode_data(data: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    encode_raw(KIND_DATA, data, out)
}

fn encode_raw(kind: u8, payload: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let len = payload.len() + 1;
    if len > MAX_FRAME_LEN {
        return Err(ProtocolError::FrameTooLarge { len, max: MAX_FRAME_LEN });
    }
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    Ok(())
}

/// Deepest JSON nesting a message may have. Checked before parsing so a hostile frame can't
/// exhaust the stack, whatever recursion limit serde_json was built with.
pub const MAX_JSON_DEPTH: usize = 64;

fn check_json_depth(payload: &[u8]) -> Result<(), ProtocolError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in payload {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ProtocolError::TooDeep(MAX_JSON_DEPTH));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Largest frame a hub accepts before the peer has authenticated: every hello the hub accepts
/// (labels of at most 4 KiB in all, 64 capabilities and 64 active commands of at most 64 bytes,
/// hostname: ≈ 14 KiB of JSON at most) fits, and an unauthenticated peer can make the hub hold
/// no more than this (plus one socket read) until the handshake timeout.
pub const PRE_AUTH_MAX_FRAME_LEN: usize = 32 * 1024;

/// Once a frame this big has been decoded, the buffer that held it is given back rather than
/// kept for the connection's lifetime (20,000 links × one 4 MiB sample each would stay resident).
const KEEP_BUFFER_CAPACITY: usize = 256 * 1024;

/// Incremental decoder: feed it bytes with [`FrameDecoder::extend`], take frames with
/// [`FrameDecoder::next_frame`]. It never buffers more than one frame of its limit plus one read.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_frame_len: usize,
    last_frame_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self { buf: Vec::new(), start: 0, max_frame_len: MAX_FRAME_LEN, last_frame_len: 0 }
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder refusing frames longer than `max` (at most [`MAX_FRAME_LEN`]).
    pub fn with_max_frame_len(max: usize) -> Self {
        Self { max_frame_len: max.min(MAX_FRAME_LEN), ..Self::default() }
    }

    /// Changes the limit for the frames still to come (e.g. raised once the peer authenticated).
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.max_frame_len = max.min(MAX_FRAME_LEN);
    }

    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Length (kind byte + payload) of the frame [`FrameDecoder::next_frame`] returned last.
    pub fn last_frame_len(&self) -> usize {
        self.last_frame_len
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed, or an error for a frame that
    /// can never be valid (the connection should then be closed).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len == 0 {
            return Err(ProtocolError::EmptyFrame);
        }
        if len > self.max_frame_len {
            return Err(ProtocolError::FrameTooLarge { len, max: self.max_frame_len });
        }
        if avail.len() < 4 + len {
            // One allocation of the frame's size, not a doubling one: a peer that announces a
            // frame makes us hold that frame, not twice it.
            let missing = 4 + len - avail.len();
            self.buf.reserve_exact(missing);
            return Ok(None);
        }
        let kind = avail[4];
        let payload = &avail[5..4 + len];
        let frame = match kind {
            KIND_MESSAGE => {
                check_json_depth(payload)?;
                Frame::Message(serde_json::from_slice(payload)?)
            }
            KIND_DATA => Frame::Data(payload.to_vec()),
            other => return Err(ProtocolError::UnknownFrameKind(other)),
        };
        self.start += 4 + len;
        self.last_frame_len = len;
        Ok(Some(frame))
    }

    /// Drops consumed bytes so the buffer doesn't grow with the connection's lifetime, and gives
    /// back a big buffer once it is empty.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER_CAPACITY {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use proptest::prelude::*;

    fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::Message(Message::Heartbeat { ts_ms: 42 }),
            Frame::Data(vec![0, 1, 2, 255]),
            Frame::Message(Message::Challenge { nonce: "ab".repeat(16) }),
            Frame::Data(Vec::new()),
        ]
    }

    fn encode_all(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            match f {
                Frame::Message(m) => encode_message(m, &mut out).expect("encode"),
                Frame::Data(d) => encode_data(d, &mut out).expect("encode"),
            }
        }
        out
    }

    #[test]
    fn roundtrip_whole_buffer() {
        let frames = sample_frames();
        let mut dec = FrameDecoder::new();
        dec.extend(&encode_all(&frames));
        let mut got = Vec::new();
        while let Some(f) = dec.next_frame().expect("decode") {
            got.push(f);
        }
        assert_eq!(got, frames);
        assert_eq!(dec.pending(), 0);
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        let mut dec = FrameDecoder::new();
        dec.extend(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        assert!(matches!(dec.next_frame(), Err(ProtocolError::FrameTooLarge { .. })));
    }

    #[test]
    fn a_lowered_limit_refuses_a_big_frame_from_its_header() {
        let mut dec = FrameDecoder::with_max_frame_len(PRE_AUTH_MAX_FRAME_LEN);
        dec.extend(&((PRE_AUTH_MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        assert!(matches!(dec.next_frame(), Err(ProtocolError::FrameTooLarge { max: PRE_AUTH_MAX_FRAME_LEN, .. })));
        let mut dec = FrameDecoder::with_max_frame_len(16);
        let mut bytes = Vec::new();
        encode_data(&[1u8; 100], &mut bytes).expect("encode");
        dec.extend(&bytes);
        assert!(dec.next_frame().is_err(), "over the lowered limit");
        let mut dec = FrameDecoder::with_max_frame_len(16);
        dec.set_max_frame_len(MAX_FRAME_LEN);
        dec.extend(&bytes);
        assert!(matches!(dec.next_frame(), Ok(Some(Frame::Data(_)))), "raised again");
        assert_eq!(dec.last_frame_len(), 101);
    }

    #[test]
    fn an_announced_frame_is_buffered_at_its_size_not_doubled() {
        let mut dec = FrameDecoder::new();
        let len = (1usize << 20) + 1;
        dec.extend(&(len as u32).to_be_bytes());
        dec.extend(&[KIND_DATA]);
        assert!(matches!(dec.next_frame(), Ok(None)));
        for _ in 0..16 {
            dec.extend(&[0u8; 60_000]);
            let _ = dec.next_frame();
        }
        assert!(dec.buf.capacity() <= 4 + len + 60_000, "{}", dec.buf.capacity());
    }

    #[test]
    fn a_big_buffer_is_given_back_after_its_frame() {
        let mut dec = FrameDecoder::new();
        let mut bytes = Vec::new();
        encode_data(&vec![0u8; 1 << 20], &mut bytes).expect("encode");
        dec.extend(&bytes);
        assert!(matches!(dec.next_frame(), Ok(Some(Frame::Data(_)))));
        dec.extend(&[]);
        assert!(dec.buf.capacity() <= KEEP_BUFFER_CAPACITY);
    }

    #[test]
    fn zero_length_and_unknown_kind_are_errors() {
        let mut dec = FrameDecoder::new();
        dec.extend(&[0, 0, 0, 0]);
        assert!(matches!(dec.next_frame(), Err(ProtocolError::EmptyFrame)));
        let mut dec = FrameDecoder::new();
        dec.extend(&[0, 0, 0, 2, 9, 9]);
        assert!(matches!(dec.next_frame(), Err(ProtocolError::UnknownFrameKind(9))));
    }

    #[test]
    fn bad_json_is_an_error() {
        let mut dec = FrameDecoder::new();
        dec.extend(&[0, 0, 0, 3, 1, b'{', b'x']);
        assert!(matches!(dec.next_frame(), Err(ProtocolError::BadMessage(_))));
        let mut dec = FrameDecoder::new();
        let mut bytes = Vec::new();
        encode_raw(KIND_MESSAGE, br#"{"type":"no_such_message"}"#, &mut bytes).expect("encode");
        dec.extend(&bytes);
        assert!(matches!(dec.next_frame(), Err(ProtocolError::BadMessage(_))));
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = format!(r#"{{"type":"metrics","sample":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let mut bytes = Vec::new();
        encode_raw(KIND_MESSAGE, deep.as_bytes(), &mut bytes).expect("encode");
        let mut dec = FrameDecoder::new();
        dec.extend(&bytes);
        assert!(matches!(dec.next_frame(), Err(ProtocolError::TooDeep(_))));
        // Brackets inside strings don't count.
        let ok = format!(r#"{{"type":"goodbye","reason":"{}\"{}"}}"#, "[".repeat(200), "{".repeat(200));
        let mut bytes = Vec::new();
        encode_raw(KIND_MESSAGE, ok.as_bytes(), &mut bytes).expect("encode");
        let mut dec = FrameDecoder::new();
        dec.extend(&bytes);
        assert!(matches!(dec.next_frame(), Ok(Some(Frame::Message(Message::Goodbye { .. })))));
    }

    #[test]
    fn encoder_refuses_oversized_payload() {
        let big = vec![0u8; MAX_FRAME_LEN];
        assert!(matches!(encode_data(&big, &mut Vec::new()), Err(ProtocolError::FrameTooLarge { .. })));
    }

    proptest! {
        // The decoder is a trust boundary: arbitrary bytes must give frames or errors, never a
        // panic, and must never make it hold more than one maximal frame.
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut dec = FrameDecoder::new();
            for c in chunks {
                dec.extend(&c);
                loop {
                    match dec.next_frame() {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(_) => return Ok(()),
                    }
                }
                prop_assert!(dec.pending() <= MAX_FRAME_LEN + 4 + 64);
            }
        }

        #[test]
        fn any_split_yields_the_same_frames(cuts in proptest::collection::vec(0usize..200, 0..10)) {
            let frames = sample_frames();
            let bytes = encode_all(&frames);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut dec = FrameDecoder::new();
            let mut got = Vec::new();
            let mut prev = 0;
            for p in points.into_iter().chain(std::iter::once(bytes.len())) {
                dec.extend(&bytes[prev..p]);
                prev = p;
                while let Some(f) = dec.next_frame().expect("valid stream") {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
        }
    }
}
