//! A host application that gets a blob through the swarm by its digest.
//!
//! Everything a real deployment spreads over hosts runs here in one
//! process on loopback: a tracker, an origin seeding one blob from its disk
//! store, and the agent the host embeds. The host's part is the few lines
//! in `fetch`: build an [`Agent`] over a store and the tracker, then ask it
//! for the digest.
//!
//! Run: `cargo run -p kraken-examples --example embed_p2p`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_core::{BlobStore, Digest, Error, MetaInfo, Namespace, PeerInfo, PieceLengths, Result};
use kraken_p2p::agent::Agent;
use kraken_p2p::scheduler::{Engine, EngineOptions};
use kraken_p2p::tracker::{
    MemoryPeerStore, OriginDirectory, Tracker, TrackerConfig, TrackerService,
};

/// What the tracker knows of the origin cluster: here, one origin and the
/// metainfo of the blobs it seeds. In production the origins answer this.
#[derive(Debug, Default)]
struct OneOrigin {
    peer: Mutex<Option<PeerInfo>>,
    blobs: Mutex<HashMap<Digest, MetaInfo>>,
}

#[async_trait]
impl OriginDirectory for OneOrigin {
    async fn origins(&self, _: &Namespace, _: &Digest) -> Result<Vec<PeerInfo>> {
        Ok(self
            .peer
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect())
    }

    async fn metainfo(&self, _: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        let blobs = self.blobs.lock().expect("not poisoned");
        blobs.get(digest).cloned().ok_or(Error::NotFound(*digest))
    }
}

/// Starts an origin that seeds `data` and tells the directory about it.
async fn start_origin(
    root: &Path,
    data: Bytes,
    directory: &OneOrigin,
    tracker: Arc<dyn Tracker>,
) -> Result<(Engine, Digest)> {
    let store = Arc::new(DiskStore::open(DiskStoreOptions::new(root)).await?);
    let digest = Digest::sha256_of(&data);
    let upload = store.create_upload().await?;
    store.append_upload(&upload, 0, data).await?;
    let meta = store
        .commit_upload(&upload, &digest, &PieceLengths::default())
        .await?;
    let options = EngineOptions {
        origin: true,
        ..EngineOptions::default()
    };
    let origin = Engine::start(options, store, tracker).await?;
    *directory.peer.lock().expect("not poisoned") = Some(origin.local_peer().clone());
    directory
        .blobs
        .lock()
        .expect("not poisoned")
        .insert(digest, meta);
    Ok((origin, digest))
}

/// The host application's part: get a blob by digest through the swarm.
async fn fetch(root: &Path, tracker: Arc<dyn Tracker>, digest: &Digest) -> Result<Bytes> {
    let store = Arc::new(DiskStore::open(DiskStoreOptions::new(root)).await?);
    let agent = Agent::builder(store, tracker).build().await?;
    let namespace = Namespace::new("examples/embed")?;
    let blob = agent.get(&namespace, digest).await?;
    let bytes = blob.read_at(0, blob.len() as usize).await?;
    agent.shutdown().await;
    Ok(bytes)
}

/// Runs the whole cluster and returns the blob the agent fetched and its
/// digest.
async fn run() -> Result<(Bytes, Digest)> {
    let dir = tempfile::tempdir()?;
    let directory = Arc::new(OneOrigin::default());
    let config = TrackerConfig::default();
    let peers = Arc::new(MemoryPeerStore::new(config.peer_ttl));
    let tracker: Arc<dyn Tracker> = Arc::new(TrackerService::new(config, peers, directory.clone()));

    let data = pseudo_random(6 << 20);
    let origin_root = dir.path().join("origin");
    let (origin, digest) = start_origin(&origin_root, data, &directory, tracker.clone()).await?;
    let fetched = fetch(&dir.path().join("agent"), tracker, &digest).await?;
    origin.shutdown();
    Ok((fetched, digest))
}

/// Makes `len` bytes that do not compress, like a real layer.
fn pseudo_random(len: usize) -> Bytes {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    };
    (0..len).map(|_| next()).collect::<Vec<_>>().into()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let (blob, digest) = run().await?;
    let verified = Digest::sha256_of(&blob) == digest;
    println!(
        "fetched {digest} through the swarm: {} bytes, digest verified: {verified}",
        blob.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_agent_fetches_the_origins_blob() {
        let (blob, digest) = super::run().await.unwrap();
        assert_eq!(blob.len(), 6 << 20);
        assert_eq!(kraken_core::Digest::sha256_of(&blob), digest);
    }
}
