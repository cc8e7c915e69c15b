//! The peer wire protocol: a handshake, then length-prefixed frames.
//!
//! Both sides open with a [`Handshake`] naming the torrent (info hash and
//! digest), themselves (peer id), the namespace and the pieces they hold.
//! After that every message is a [`Frame`]:
//!
//! ```text
//! length u32 BE | kind u8 | fields by kind | piece bytes (Piece only)
//! ```
//!
//! `length` counts everything after itself. Piece bytes follow the header
//! raw, never re-encoded, and are read into one buffer, so a piece costs
//! one copy from the socket. Every length is checked against a hard limit
//! before anything is allocated: a control frame is at most
//! [`MAX_CONTROL_FRAME`] bytes and a piece frame at most the torrent's piece
//! length plus its header. Anything malformed, an unknown kind or an unknown
//! version is a [`WireError`], which ends the connection; the decoder never
//! panics on input.

mod frame;
mod handshake;
mod io;

pub use frame::{Frame, FrameKind, RejectReason};
pub use handshake::{Handshake, MAGIC, PROTOCOL_VERSION};
pub use io::{FrameReader, FrameWriter, read_handshake, write_handshake};

/// The largest frame other than a piece, in bytes after the length prefix.
pub const MAX_CONTROL_FRAME: u32 = 1024;

/// The largest error message carried in a frame, in bytes.
pub const MAX_MESSAGE_LEN: usize = 512;

/// Why bytes from a peer could not be understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The handshake did not start with the protocol magic.
    #[error("not a kraken peer (bad magic)")]
    BadMagic,
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A frame kind this build does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A length field above its limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        /// Which length was too long.
        what: &'static str,
        /// The length announced.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A frame or handshake whose fields do not fit its length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The connection closed in the middle of a message.
    #[error("connection closed mid-message")]
    UnexpectedEof,
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}
