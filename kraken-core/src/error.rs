//! The error type of `kraken-core` and of the traits it defines, except
//! [`Backend`](crate::Backend), whose failures are [`BackendError`]s.

use std::io;

use crate::store::UploadId;
use crate::{BackendError, Digest, DigestError, MetaInfoError, NamespaceError, PieceIndex};

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in a blob store, a peer store or a scheduler.
///
/// Callers match on the variant to decide what to tell a client: the
/// registry maps each one to an HTTP status in one exhaustive `match`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string was malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A namespace string was malformed.
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    /// A metainfo was malformed or inconsistent.
    #[error(transparent)]
    MetaInfo(#[from] MetaInfoError),
    /// No blob, partial download or metainfo exists for this digest.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// No upload with this id is in progress.
    #[error("upload {0} not found")]
    UploadNotFound(UploadId),
    /// A chunk was appended at the wrong offset.
    #[error("upload is at offset {expected}, chunk starts at {actual}")]
    UploadOffset {
        /// The upload's current size.
        expected: u64,
        /// Where the rejected chunk started.
        actual: u64,
    },
    /// The bytes hash to a different digest than claimed; nothing was kept.
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch {
        /// The digest the caller claimed.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// A piece index past the blob's last piece.
    #[error("piece {index} of {digest} is out of range")]
    PieceOutOfRange {
        /// The blob.
        digest: Digest,
        /// The rejected index.
        index: PieceIndex,
    },
    /// A piece's length or SHA-256 does not match the metainfo.
    #[error("piece {index} of {digest} does not match its hash")]
    PieceMismatch {
        /// The blob.
        digest: Digest,
        /// The rejected piece.
        index: PieceIndex,
    },
    /// A piece was read that the store does not have yet.
    #[error("piece {index} of {digest} is not present")]
    PieceMissing {
        /// The blob.
        digest: Digest,
        /// The missing piece.
        index: PieceIndex,
    },
    /// A download was committed with pieces still missing.
    #[error("download of {digest} is missing {missing} pieces")]
    Incomplete {
        /// The blob.
        digest: Digest,
        /// How many pieces are missing.
        missing: u32,
    },
    /// A download was started with a metainfo other than the one it has.
    #[error("download of {0} already exists with different metainfo")]
    MetaInfoConflict(Digest),
    /// The blob is pinned and cannot be deleted.
    #[error("blob {0} is pinned")]
    Pinned(Digest),
    /// The store cannot make room: everything evictable is pinned or in use.
    #[error("store is full: {needed} more bytes needed, capacity {capacity}")]
    StoreFull {
        /// Bytes the operation needed.
        needed: u64,
        /// The store's capacity in bytes.
        capacity: u64,
    },
    /// A byte range that lies outside the blob.
    #[error("requested range is not satisfiable for a blob of {length} bytes")]
    RangeNotSatisfiable {
        /// Start of the requested range.
        start: u64,
        /// End (exclusive) of the requested range.
        end: u64,
        /// The blob's length.
        length: u64,
    },
    /// The blob may exist, but no peer, origin or backend can provide it
    /// now: they are unreachable or failing.
    #[error("blob {0} is unavailable: no peer, origin or backend can provide it now")]
    Unavailable(Digest),
    /// The operation was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,
    /// The operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The filesystem failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}
