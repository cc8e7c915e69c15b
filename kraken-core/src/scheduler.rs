//! The `Scheduler` trait: the P2P engine as its host application sees it.
//!
//! A host asks for a blob by namespace and digest and the scheduler fetches
//! its pieces from the swarm, verifies them and commits the blob to the
//! host's [`BlobStore`](crate::BlobStore). The namespace selects the backend
//! an origin reads through on a miss; it never changes which bytes a digest
//! names.

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{ByteRange, Digest, Namespace, Result};

/// A blob's bytes streamed in order, possibly while it still downloads.
pub struct BlobStream {
    /// The whole blob's length, known before the first byte arrives.
    pub length: u64,
    /// The part of the blob the stream yields.
    pub range: Range<u64>,
    /// The bytes of `range`, in order. An error ends the stream.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream")
            .field("length", &self.length)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// Counters describing a scheduler's work, for metrics and health pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulerStats {
    /// Blobs being downloaded now.
    pub downloading: u64,
    /// Blobs offered to other peers.
    pub seeding: u64,
    /// Open peer connections.
    pub connections: u64,
    /// Piece bytes received and verified since start.
    pub bytes_in: u64,
    /// The part of `bytes_in` that origins sent; the rest came from other
    /// agents, which is what the swarm saves the origins.
    #[serde(default)]
    pub bytes_in_from_origins: u64,
    /// Piece bytes sent since start.
    pub bytes_out: u64,
}

/// Gets blobs through the swarm and offers local blobs to it.
///
/// Concurrent calls for the same digest share one download.
#[async_trait]
pub trait Scheduler: Send + Sync + fmt::Debug {
    /// Fetches a blob through the swarm and resolves once it is committed in
    /// the local store, verified; resolves at once when it already is.
    ///
    /// # Errors
    ///
    /// `NotFound` when the origins and their backends do not have it;
    /// `Unavailable` when they cannot be reached or cannot tell; `Cancelled`
    /// after [`Scheduler::cancel`]; `Timeout` when no piece arrives for the
    /// configured time; store errors.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the download running for other callers
    /// and for seeding.
    async fn download(&self, namespace: &Namespace, digest: &Digest) -> Result<()>;

    /// Streams `range` of a blob in order, starting as soon as the first
    /// needed piece is verified rather than when the whole blob is; piece
    /// choice favours the pieces the stream needs next.
    ///
    /// # Errors
    ///
    /// Those of [`Scheduler::download`] before the first byte;
    /// `RangeNotSatisfiable` when `range` lies outside the blob. Failures
    /// after that end the stream with an error.
    async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> Result<BlobStream>;

    /// Offers a blob the local store already holds to the swarm.
    ///
    /// # Errors
    ///
    /// `NotFound` when the store does not have it cached.
    async fn seed(&self, namespace: &Namespace, digest: &Digest) -> Result<()>;

    /// Stops downloading a blob; pending `download` calls fail with
    /// `Cancelled` and the partial download stays resumable.
    fn cancel(&self, digest: &Digest);

    /// Returns current counters.
    fn stats(&self) -> SchedulerStats;
}
