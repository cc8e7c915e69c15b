//! Frames: the messages peers exchange after the handshake.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kraken_core::PieceIndex;

use super::{MAX_CONTROL_FRAME, MAX_MESSAGE_LEN, WireError};

/// Bytes before the piece data in a piece frame: kind and index.
pub(crate) const PIECE_HEADER_LEN: u32 = 1 + 4;

/// A message after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Nothing to say; keeps idle connections and their timers alive.
    KeepAlive,
    /// The sender now holds this piece, verified.
    HavePiece(PieceIndex),
    /// The sender asks for this whole piece.
    Request(PieceIndex),
    /// The bytes of a whole piece; the receiver verifies them.
    Piece {
        /// Which piece.
        index: PieceIndex,
        /// Its bytes.
        data: Bytes,
    },
    /// The sender will not serve a request for this piece.
    Reject {
        /// The piece asked for.
        index: PieceIndex,
        /// Why.
        reason: RejectReason,
    },
    /// The sender holds every piece.
    Complete,
    /// The sender no longer wants this piece.
    Cancel(PieceIndex),
    /// The sender is closing the connection, and says why.
    Error(String),
}

/// Why a piece request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The sender does not have the piece.
    NotAvailable,
    /// The sender is too busy; ask someone else.
    Busy,
    /// The request was invalid (say, an index past the last piece).
    Invalid,
}

/// The kind byte of each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// [`Frame::KeepAlive`].
    KeepAlive = 0,
    /// [`Frame::HavePiece`].
    HavePiece = 1,
    /// [`Frame::Request`].
    Request = 2,
    /// [`Frame::Piece`].
    Piece = 3,
    /// [`Frame::Reject`].
    Reject = 4,
    /// [`Frame::Complete`].
    Complete = 5,
    /// [`Frame::Cancel`].
    Cancel = 6,
    /// [`Frame::Error`].
    Error = 7,
}

impl FrameKind {
    pub(crate) fn from_byte(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0 => FrameKind::KeepAlive,
            1 => FrameKind::HavePiece,
            2 => FrameKind::Request,
            3 => FrameKind::Piece,
            4 => FrameKind::Reject,
            5 => FrameKind::Complete,
            6 => FrameKind::Cancel,
            7 => FrameKind::Error,
            other => return Err(WireError::UnknownKind(other)),
        })
    }
}

impl RejectReason {
    fn code(self) -> u8 {
        match self {
            RejectReason::NotAvailable => 1,
            RejectReason::Busy => 2,
            RejectReason::Invalid => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self, WireError> {
        match code {
            1 => Ok(RejectReason::NotAvailable),
            2 => Ok(RejectReason::Busy),
            3 => Ok(RejectReason::Invalid),
            _ => Err(WireError::Malformed("reject reason")),
        }
    }
}

impl Frame {
    /// Returns the kind byte.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::KeepAlive => FrameKind::KeepAlive,
            Frame::HavePiece(_) => FrameKind::HavePiece,
            Frame::Request(_) => FrameKind::Request,
            Frame::Piece { .. } => FrameKind::Piece,
            Frame::Reject { .. } => FrameKind::Reject,
            Frame::Complete => FrameKind::Complete,
            Frame::Cancel(_) => FrameKind::Cancel,
            Frame::Error(_) => FrameKind::Error,
        }
    }

    /// Writes the length prefix and header, everything but a piece's bytes,
    /// which the caller sends right after so they are never copied.
    pub(crate) fn encode_header(&self, out: &mut BytesMut) {
        let body_len = match self {
            Frame::Piece { data, .. } => PIECE_HEADER_LEN as usize + data.len(),
            Frame::Error(message) => 1 + 2 + truncate(message).len(),
            Frame::Reject { .. } => 1 + 4 + 1,
            Frame::HavePiece(_) | Frame::Request(_) | Frame::Cancel(_) => 1 + 4,
            Frame::KeepAlive | Frame::Complete => 1,
        };
        out.put_u32(body_len as u32);
        out.put_u8(self.kind() as u8);
        match self {
            Frame::HavePiece(i) | Frame::Request(i) | Frame::Cancel(i) => out.put_u32(i.0),
            Frame::Piece { index, .. } => out.put_u32(index.0),
            Frame::Reject { index, reason } => {
                out.put_u32(index.0);
                out.put_u8(reason.code());
            }
            Frame::Error(message) => {
                let message = truncate(message);
                out.put_u16(message.len() as u16);
                out.put_slice(message.as_bytes());
            }
            Frame::KeepAlive | Frame::Complete => {}
        }
    }

    /// Encodes the whole frame into one buffer; for tests and fuzzing.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_header(&mut out);
        if let Frame::Piece { data, .. } = self {
            out.put_slice(data);
        }
        out.freeze()
    }

    /// Decodes one frame body (everything after the length prefix).
    ///
    /// # Errors
    ///
    /// [`WireError::UnknownKind`] or [`WireError::Malformed`].
    pub fn decode_body(mut body: Bytes) -> Result<Frame, WireError> {
        if body.is_empty() {
            return Err(WireError::Malformed("empty frame"));
        }
        let kind = FrameKind::from_byte(body.get_u8())?;
        let frame = match kind {
            FrameKind::KeepAlive => Frame::KeepAlive,
            FrameKind::Complete => Frame::Complete,
            FrameKind::HavePiece => Frame::HavePiece(index(&mut body)?),
            FrameKind::Request => Frame::Request(index(&mut body)?),
            FrameKind::Cancel => Frame::Cancel(index(&mut body)?),
            FrameKind::Piece => {
                let index = index(&mut body)?;
                return Ok(Frame::Piece { index, data: body });
            }
            FrameKind::Reject => {
                let index = index(&mut body)?;
                let code = body
                    .try_get_u8()
                    .map_err(|_| WireError::Malformed("reject"))?;
                Frame::Reject {
                    index,
                    reason: RejectReason::from_code(code)?,
                }
            }
            FrameKind::Error => Frame::Error(message(&mut body)?),
        };
        if !body.is_empty() {
            return Err(WireError::Malformed("trailing bytes in frame"));
        }
        Ok(frame)
    }

    /// Returns the largest body a frame of `kind` may have, given the
    /// torrent's piece length.
    pub(crate) fn body_limit(kind: FrameKind, piece_length: u32) -> u32 {
        match kind {
            FrameKind::Piece => PIECE_HEADER_LEN.saturating_add(piece_length),
            _ => MAX_CONTROL_FRAME,
        }
    }
}

fn index(body: &mut Bytes) -> Result<PieceIndex, WireError> {
    body.try_get_u32()
        .map(PieceIndex)
        .map_err(|_| WireError::Malformed("piece index"))
}

fn message(body: &mut Bytes) -> Result<String, WireError> {
    let len = body
        .try_get_u16()
        .map_err(|_| WireError::Malformed("error message"))? as usize;
    if len > MAX_MESSAGE_LEN || body.len() < len {
        return Err(WireError::Malformed("error message length"));
    }
    let text = body.split_to(len);
    String::from_utf8(text.to_vec()).map_err(|_| WireError::Malformed("error message utf-8"))
}

/// Cuts a message to [`MAX_MESSAGE_LEN`] bytes on a character boundary.
fn truncate(message: &str) -> &str {
    let mut end = message.len().min(MAX_MESSAGE_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}
