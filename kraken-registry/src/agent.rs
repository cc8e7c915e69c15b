//! The agent's registry: the read-only distribution API on localhost whose
//! blobs come through the swarm.
//!
//! [`SwarmBlobs`] is the agent's [`BlobSource`]: blobs are streamed in
//! order as their pieces arrive and are verified, so a client starts
//! decompressing a layer long before it is whole; manifests are fetched
//! whole. What the local store holds is served from it.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kraken_core::{BlobState, BlobStore, BlobStream, ByteRange, Digest, Namespace, Scheduler};

use crate::api::BlobSource;

/// Manifests larger than this are refused when read whole; pushes are
/// limited well below it.
const MAX_MANIFEST_READ: u64 = 64 * 1024 * 1024;

/// The swarm, through an agent's scheduler and store.
#[derive(Debug, Clone)]
pub struct SwarmBlobs {
    scheduler: Arc<dyn Scheduler>,
    store: Arc<dyn BlobStore>,
}

impl SwarmBlobs {
    /// A blob source over an agent's `scheduler` and the `store` it commits
    /// blobs to.
    pub fn new(scheduler: Arc<dyn Scheduler>, store: Arc<dyn BlobStore>) -> SwarmBlobs {
        SwarmBlobs { scheduler, store }
    }

    async fn cached_length(&self, digest: &Digest) -> Option<u64> {
        let stat = self.store.stat(digest).await.ok()?;
        (stat.state == BlobState::Cached).then_some(stat.length)
    }
}

#[async_trait]
impl BlobSource for SwarmBlobs {
    /// The length comes with the blob's metainfo; asking starts the
    /// download, as a `HEAD` is mostly followed by a `GET`.
    async fn size(&self, namespace: &Namespace, digest: &Digest) -> kraken_core::Result<u64> {
        if let Some(length) = self.cached_length(digest).await {
            return Ok(length);
        }
        let stream = self
            .scheduler
            .stream(namespace, digest, ByteRange::Full)
            .await?;
        Ok(stream.length)
    }

    async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> kraken_core::Result<BlobStream> {
        self.scheduler.stream(namespace, digest, range).await
    }

    async fn read(&self, namespace: &Namespace, digest: &Digest) -> kraken_core::Result<Bytes> {
        self.scheduler.download(namespace, digest).await?;
        let reader = self.store.open(digest).await?;
        if reader.len() > MAX_MANIFEST_READ {
            return Err(kraken_core::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{digest} is {} bytes, too large for a manifest",
                    reader.len()
                ),
            )));
        }
        let length = usize::try_from(reader.len()).unwrap_or(usize::MAX);
        reader.read_at(0, length).await
    }
}
