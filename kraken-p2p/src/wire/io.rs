//! Reading and writing handshakes and frames on any async byte stream
//! (TCP or TLS).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::WireError;
use super::frame::{Frame, FrameKind};
use super::handshake::{Handshake, PREFIX_LEN};

/// Sends a handshake and flushes it.
///
/// # Errors
///
/// I/O errors.
pub async fn write_handshake<W>(writer: &mut W, handshake: &Handshake) -> Result<(), WireError>
where
    W: AsyncWrite + Unpin,
{
    writer.write_all(&handshake.to_bytes()).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads one handshake, checking magic, version and every length.
///
/// # Errors
///
/// A [`WireError`] for malformed input; `UnexpectedEof` when the peer
/// closes first.
pub async fn read_handshake<R>(reader: &mut R) -> Result<Handshake, WireError>
where
    R: AsyncRead + Unpin,
{
    let mut prefix = [0; PREFIX_LEN];
    reader.read_exact(&mut prefix).await.map_err(eof)?;
    let len = Handshake::parse_prefix(&prefix)?;
    let mut body = vec![0; len as usize];
    reader.read_exact(&mut body).await.map_err(eof)?;
    Handshake::decode_body(body.into())
}

fn eof(e: std::io::Error) -> WireError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::UnexpectedEof
    } else {
        WireError::Io(e)
    }
}

/// Reads frames from a stream, enforcing the length limits.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    piece_length: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps a stream whose torrent has pieces of `piece_length` bytes; no
    /// piece frame may be longer.
    pub fn new(inner: R, piece_length: u32) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            piece_length,
        }
    }

    /// Reads the next frame; `None` when the peer closed cleanly between
    /// frames.
    ///
    /// # Errors
    ///
    /// A [`WireError`] for malformed input or a close mid-frame.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read before cancellation stay buffered for the
    /// next call.
    pub async fn next(&mut self) -> Result<Option<Frame>, WireError> {
        loop {
            if let Some(len) = self.complete_frame_len()? {
                self.buf.advance(4);
                let body = self.buf.split_to(len).freeze();
                return Frame::decode_body(body).map(Some);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(WireError::UnexpectedEof),
                };
            }
        }
    }

    /// Returns the body length once a whole frame is buffered, after
    /// checking its limit as soon as the header arrives.
    fn complete_frame_len(&mut self) -> Result<Option<usize>, WireError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes"));
        let kind = FrameKind::from_byte(self.buf[4])?;
        let limit = Frame::body_limit(kind, self.piece_length);
        if len == 0 || len > limit {
            let (len, limit) = (u64::from(len), u64::from(limit));
            return Err(WireError::TooLong {
                what: "frame",
                len,
                limit,
            });
        }
        let total = 4 + len as usize;
        if self.buf.len() >= total {
            return Ok(Some(len as usize));
        }
        // Grow once to the whole frame so a piece lands in one buffer.
        self.buf.reserve(total - self.buf.len());
        Ok(None)
    }

    /// Returns the stream, dropping any buffered bytes.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Writes frames to a stream; piece bytes go out without being copied.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    header: BytesMut,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps a stream.
    pub fn new(inner: W) -> Self {
        FrameWriter {
            inner,
            header: BytesMut::with_capacity(64),
        }
    }

    /// Sends one frame and flushes it.
    ///
    /// # Errors
    ///
    /// I/O errors.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a cancelled send may leave half a frame on the
    /// stream, after which the connection must be closed.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), WireError> {
        self.header.clear();
        frame.encode_header(&mut self.header);
        self.inner.write_all(&self.header).await?;
        if let Frame::Piece { data, .. } = frame {
            self.inner.write_all(data).await?;
        }
        self.inner.flush().await?;
        Ok(())
    }

    /// Returns the stream.
    pub fn into_inner(self) -> W {
        self.inner
    }
}
