//! The `BlobStore` trait: a host's local content-addressed storage.
//!
//! A blob lives in one of three states. An *upload* is bytes a client is
//! pushing, appended in order under an [`UploadId`], whose digest is checked
//! only at commit. A *download* is a blob being fetched from the swarm, piece
//! by piece in any order, each piece checked against its metainfo hash as it
//! is written. A *cached* blob is complete, its whole digest verified, and is
//! the only state ever served to a consumer as a blob.
//!
//! Committing an upload or a download publishes the blob atomically: a
//! reader sees either no blob or the whole verified blob, never a prefix.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::{Bitfield, Digest, MetaInfo, PieceIndex, PieceLengths, Result};

/// Identifies an upload in progress: 32 lowercase hex characters, safe in
/// URLs and file names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

/// Why a string is not an upload id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("upload id must be 32 lowercase hex characters")]
pub struct UploadIdError;

impl UploadId {
    /// Draws a fresh random id.
    pub fn random() -> Self {
        UploadId(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// Returns the id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UploadId {
    type Err = UploadIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| UploadId(s.to_owned())).ok_or(UploadIdError)
    }
}

impl TryFrom<String> for UploadId {
    type Error = UploadIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<UploadId> for String {
    fn from(id: UploadId) -> Self {
        id.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

/// The state a stored blob is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BlobState {
    /// Being downloaded: `have` of `pieces` pieces are present and verified.
    Downloading {
        /// Pieces present.
        have: u32,
        /// Pieces in the blob.
        pieces: u32,
    },
    /// Complete, verified and servable.
    Cached,
}

/// What a store knows of one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStat {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's full length in bytes.
    pub length: u64,
    /// Downloading or cached.
    #[serde(flatten)]
    pub state: BlobState,
    /// Pinned blobs are never evicted nor deleted.
    pub pinned: bool,
    /// When the blob was last read or written, to the store's resolution.
    pub last_access: SystemTime,
}

/// Ranged reads of one committed blob.
///
/// While a reader is alive the blob counts as in use and is not evicted.
#[async_trait]
pub trait BlobReader: Send + Sync + fmt::Debug {
    /// Returns the blob's length in bytes.
    fn len(&self) -> u64;

    /// Returns true for a zero-length blob.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `len` bytes at `offset`.
    ///
    /// # Errors
    ///
    /// [`Error::RangeNotSatisfiable`](crate::Error::RangeNotSatisfiable) when
    /// the range runs past the end; I/O errors from the medium.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes>;
}

/// Streams `range` of a blob in chunks of at most `chunk` bytes.
///
/// The stream holds the reader, so the blob stays in use until it ends.
pub fn read_range(
    reader: Arc<dyn BlobReader>,
    range: Range<u64>,
    chunk: usize,
) -> BoxStream<'static, Result<Bytes>> {
    let chunk = chunk.max(1) as u64;
    stream::unfold((reader, range), move |(reader, range)| async move {
        if range.start >= range.end {
            return None;
        }
        let len = chunk.min(range.end - range.start);
        let item = reader.read_at(range.start, len as usize).await;
        let next = if item.is_ok() {
            range.start + len..range.end
        } else {
            range.end..range.end
        };
        Some((item, (reader, next)))
    })
    .boxed()
}

/// Local content-addressed blob storage with upload, download and cache
/// states.
///
/// Implementations must be safe to share (`Arc<dyn BlobStore>`) across
/// tasks and must keep the invariant that matters most: only bytes whose
/// whole digest was verified are ever visible as a cached blob. Every
/// method may also fail with [`Error::Io`](crate::Error::Io).
///
/// The default implementation is
/// [`DiskStore`](crate::disk::DiskStore); the `testkit` feature's
/// `blob_store_suite` checks any implementation against this contract.
#[async_trait]
pub trait BlobStore: Send + Sync + fmt::Debug {
    /// Starts an empty upload and returns its id.
    async fn create_upload(&self) -> Result<UploadId>;

    /// Appends `data` to an upload at `offset`, which must equal the upload's
    /// current size; returns the size after the append.
    ///
    /// # Errors
    ///
    /// `UploadNotFound`; `UploadOffset` when `offset` is not the current size
    /// (nothing is written); `StoreFull` when the bytes do not fit.
    async fn append_upload(&self, id: &UploadId, offset: u64, data: Bytes) -> Result<u64>;

    /// Returns how many bytes an upload holds so far.
    ///
    /// # Errors
    ///
    /// `UploadNotFound`.
    async fn upload_size(&self, id: &UploadId) -> Result<u64>;

    /// Verifies an upload against `digest` and publishes it as a cached blob
    /// with the metainfo built from its bytes (piece length from `lengths`).
    /// The upload ends either way.
    ///
    /// Committing a digest that is already cached succeeds, keeps the
    /// existing blob and returns its existing metainfo.
    ///
    /// # Errors
    ///
    /// `UploadNotFound`; `DigestMismatch` when the bytes hash otherwise, in
    /// which case the bytes are discarded.
    async fn commit_upload(
        &self,
        id: &UploadId,
        digest: &Digest,
        lengths: &PieceLengths,
    ) -> Result<MetaInfo>;

    /// Discards an upload.
    ///
    /// # Errors
    ///
    /// `UploadNotFound`.
    async fn abort_upload(&self, id: &UploadId) -> Result<()>;

    /// Creates a download for `meta`, or resumes the one already on disk,
    /// and returns which pieces are present. For a blob already cached it
    /// returns a full bitfield and changes nothing.
    ///
    /// # Errors
    ///
    /// `MetaInfoConflict` when a download or blob of this digest exists with
    /// a different metainfo; `StoreFull` when the blob cannot fit.
    async fn start_download(&self, meta: &MetaInfo) -> Result<Bitfield>;

    /// Verifies `data` as piece `index` of a download and stores it. Writing
    /// a piece that is already present succeeds without rewriting it.
    ///
    /// # Errors
    ///
    /// `NotFound` without a download; `PieceOutOfRange`; `PieceMismatch` when
    /// the length or SHA-256 is wrong, in which case nothing is stored.
    async fn write_piece(&self, digest: &Digest, index: PieceIndex, data: Bytes) -> Result<()>;

    /// Returns which pieces of a blob are present: those written to its
    /// download, or all of them once cached.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn bitfield(&self, digest: &Digest) -> Result<Bitfield>;

    /// Reads a present piece, from a download in progress or a cached blob,
    /// so a peer can seed what it has before it has everything.
    ///
    /// # Errors
    ///
    /// `NotFound`; `PieceOutOfRange`; `PieceMissing`.
    async fn read_piece(&self, digest: &Digest, index: PieceIndex) -> Result<Bytes>;

    /// Verifies a complete download's whole digest and publishes it as a
    /// cached blob. Committing a blob already cached succeeds.
    ///
    /// # Errors
    ///
    /// `NotFound`; `Incomplete` with pieces missing; `DigestMismatch` when
    /// the pieces do not add up to the digest, in which case the download is
    /// discarded.
    async fn commit_download(&self, digest: &Digest) -> Result<()>;

    /// Returns the metainfo of a cached blob or a download.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn metainfo(&self, digest: &Digest) -> Result<MetaInfo>;

    /// Opens a cached blob for ranged reads; the blob is in use, and so not
    /// evictable, until the reader is dropped.
    ///
    /// # Errors
    ///
    /// `NotFound`, also while the blob is only downloading.
    async fn open(&self, digest: &Digest) -> Result<Arc<dyn BlobReader>>;

    /// Describes a cached blob or a download.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn stat(&self, digest: &Digest) -> Result<BlobStat>;

    /// Deletes a cached blob or a download. Readers already open keep
    /// working until dropped.
    ///
    /// # Errors
    ///
    /// `NotFound`; `Pinned`.
    async fn delete(&self, digest: &Digest) -> Result<()>;

    /// Pins a cached blob or download so it is never evicted nor deleted;
    /// pinning persists across restarts. Pinning twice is the same as once.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn pin(&self, digest: &Digest) -> Result<()>;

    /// Removes a pin; unpinning an unpinned blob succeeds.
    ///
    /// # Errors
    ///
    /// `NotFound`.
    async fn unpin(&self, digest: &Digest) -> Result<()>;

    /// Lists every cached blob and download, in digest order.
    async fn list(&self) -> Result<Vec<BlobStat>>;
}
