//! Reading whole messages off a socket with a size limit and a stall timeout.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::codec::frame::{self, Frame, FrameError};
use super::codec::startup::{self, StartupError, StartupPacket};

/// Why reading a message failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid message.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The first packet is invalid.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The peer stopped sending in the middle of a message.
    #[error("peer stalled mid-message for {0:?}")]
    Stalled(Duration),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed mid-message")]
    Truncated,
}

/// Buffers a byte stream and hands out complete messages.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    limit: usize,
    stall: Duration,
}

const READ_CHUNK: usize = 64 * 1024;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Reads messages of at most `limit` bytes; a message that stops arriving
    /// for `stall` is an error.
    pub fn new(inner: R, limit: usize, stall: Duration) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(READ_CHUNK),
            limit,
            stall,
        }
    }

    /// The next complete message already buffered, without reading.
    pub fn try_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        Ok(frame::decode(&mut self.buf, self.limit)?)
    }

    /// Reads more bytes. Returns `false` on a clean end of stream (nothing
    /// buffered). Waits forever between messages, but at most the stall
    /// timeout while a message is incomplete.
    pub async fn fill(&mut self) -> Result<bool, ReadError> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let n = if self.buf.is_empty() {
            self.inner.read_buf(&mut self.buf).await?
        } else {
            tokio::time::timeout(self.stall, self.inner.read_buf(&mut self.buf))
                .await
                .map_err(|_| ReadError::Stalled(self.stall))??
        };
        if n == 0 {
            return if self.buf.is_empty() {
                Ok(false)
            } else {
                Err(ReadError::Truncated)
            };
        }
        Ok(true)
    }

    /// The next message, reading as needed; `None` at a clean end of stream.
    pub async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(f) = self.try_frame()? {
                return Ok(Some(f));
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// The first (untagged) packet of a connection, bounded by the stall
    /// timeout as a whole so a silent client cannot hold a slot.
    pub async fn startup(&mut self) -> Result<Option<StartupPacket>, ReadError> {
        let stall = self.stall;
        tokio::time::timeout(stall, async {
            loop {
                if let Some(p) = startup::decode(&mut self.buf)? {
                    return Ok(Some(p));
                }
                if !self.fill().await? {
                    return Ok(None);
                }
            }
        })
        .await
        .map_err(|_| ReadError::Stalled(stall))?
    }

    /// Whether bytes are buffered beyond what was consumed. After an
    /// SSLRequest this must be false: bytes sent before the TLS handshake
    /// would otherwise be read as if they came over TLS.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The socket, for writing replies during the handshake.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The socket and whatever is buffered, to continue on another reader.
    pub fn into_parts(self) -> (R, BytesMut) {
        (self.inner, self.buf)
    }

    /// Continues reading `inner` after bytes already buffered.
    pub fn from_parts(inner: R, buf: BytesMut, limit: usize, stall: Duration) -> Self {
        Self {
            inner,
            buf,
            limit,
            stall,
        }
    }
}
