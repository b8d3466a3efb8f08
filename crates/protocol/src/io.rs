//! Async frame I/O over any tokio stream half, with the same bounds as [`FrameDecoder`].

use crate::{frame, Frame, FrameDecoder, Message, ProtocolError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads whole frames from a stream.
pub struct FrameReader<R> {
    inner: R,
    decoder: FrameDecoder,
    buf: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_read_buffer(inner, Self::DEFAULT_READ_BUFFER)
    }

    /// A reader whose socket reads go through a `bytes`-sized buffer (frames still up to the
    /// decoder's limit): many idle connections then cost little memory each.
    pub fn with_read_buffer(inner: R, bytes: usize) -> Self {
        Self { inner, decoder: FrameDecoder::new(), buf: vec![0u8; bytes.max(64)].into_boxed_slice() }
    }

    /// Default size of the buffer socket reads go through.
    pub const DEFAULT_READ_BUFFER: usize = 64 * 1024;

    /// Changes the size of the buffer socket reads go through (e.g. small until the peer
    /// authenticated, then [`FrameReader::DEFAULT_READ_BUFFER`] for uploads).
    pub fn set_read_buffer(&mut self, bytes: usize) {
        let bytes = bytes.max(64);
        if self.buf.len() != bytes {
            self.buf = vec![0u8; bytes].into_boxed_slice();
        }
    }

    /// Changes the largest frame accepted from now on (see [`FrameDecoder::set_max_frame_len`]).
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.decoder.set_max_frame_len(max);
    }

    /// Length of the frame read last (kind byte + payload).
    pub fn last_frame_len(&self) -> usize {
        self.decoder.last_frame_len()
    }

    /// The next frame; `Err(Closed)` on a clean end of stream between frames.
    pub async fn read_frame(&mut self) -> Result<Frame, ProtocolError> {
        loop {
            if let Some(f) = self.decoder.next_frame()? {
                return Ok(f);
            }
            let n = self.inner.read(&mut self.buf).await?;
            if n == 0 {
                return Err(if self.decoder.pending() == 0 {
                    ProtocolError::Closed
                } else {
                    ProtocolError::TruncatedFrame
                });
            }
            self.decoder.extend(&self.buf[..n]);
        }
    }

    /// The next frame, which must be a control message.
    pub async fn read_message(&mut self) -> Result<Message, ProtocolError> {
        match self.read_frame().await? {
            Frame::Message(m) => Ok(m),
            Frame::Data(_) => Err(ProtocolError::Unexpected { expected: "message", got: "data".into() }),
        }
    }
}

/// Writes frames to a stream.
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, buf: Vec::new() }
    }

    pub async fn send(&mut self, msg: &Message) -> Result<(), ProtocolError> {
        self.buf.clear();
        frame::encode_message(msg, &mut self.buf)?;
        self.flush_buf().await
    }

    pub async fn send_data(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        self.buf.clear();
        frame::encode_data(data, &mut self.buf)?;
        self.flush_buf().await
    }

    async fn flush_buf(&mut self) -> Result<(), ProtocolError> {
        self.inner.write_all(&self.buf).await?;
        self.inner.flush().await?;
        // Don't keep a big data buffer around between frames.
        if self.buf.capacity() > 256 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    pub async fn shutdown(&mut self) -> Result<(), ProtocolError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn frames_cross_a_duplex_pipe() {
        let (a, b) = tokio::io::duplex(16);
        let mut w = FrameWriter::new(a);
        let mut r = FrameReader::new(b);
        let writer = async move {
            w.send(&Message::Heartbeat { ts_ms: 1 }).await.expect("send");
            w.send_data(&[7u8; 1000]).await.expect("send");
            w.shutdown().await.expect("shutdown");
        };
        let reader = async move {
            assert_eq!(r.read_message().await.expect("msg"), Message::Heartbeat { ts_ms: 1 });
            assert_eq!(r.read_frame().await.expect("data"), Frame::Data(vec![7u8; 1000]));
            assert!(matches!(r.read_frame().await, Err(ProtocolError::Closed)));
        };
        tokio::join!(writer, reader);
    }
}
