//! The real [`TrackerService`] over a peer store and an origin directory
//! that answer at once and draw their samples from the run's seed.
//!
//! [`MemoryPeerStore`](crate::tracker::MemoryPeerStore) samples with the
//! thread's generator and keeps wall-clock expiry; the simulator needs a
//! seeded sample and never expires an entry (a run is far shorter than
//! the tracker's time to live).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::FutureExt;
use kraken_core::{Digest, Error, InfoHash, MetaInfo, Namespace, PeerId, PeerInfo, PeerStore};
use rand::rngs::StdRng;

use crate::tracker::{
    AnnounceRequest, AnnounceResponse, OriginDirectory, Tracker, TrackerConfig, TrackerService,
};

#[derive(Debug)]
struct Peers {
    list: Vec<PeerInfo>,
    index: HashMap<PeerId, usize>,
    rng: StdRng,
}

/// A peer store for one torrent, sampled with a seeded generator.
#[derive(Debug)]
struct SeededPeerStore(Mutex<Peers>);

impl SeededPeerStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Peers> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl PeerStore for SeededPeerStore {
    async fn announce(&self, _: &InfoHash, peer: &PeerInfo) -> kraken_core::Result<()> {
        let mut peers = self.lock();
        match peers.index.get(&peer.peer_id) {
            Some(&at) => peers.list[at] = peer.clone(),
            None => {
                let at = peers.list.len();
                peers.list.push(peer.clone());
                peers.index.insert(peer.peer_id, at);
            }
        }
        Ok(())
    }

    async fn sample(&self, _: &InfoHash, n: usize) -> kraken_core::Result<Vec<PeerInfo>> {
        let peers = &mut *self.lock();
        let n = n.min(peers.list.len());
        let chosen = rand::seq::index::sample(&mut peers.rng, peers.list.len(), n);
        Ok(chosen.into_iter().map(|i| peers.list[i].clone()).collect())
    }
}

/// The origins of the one simulated blob.
#[derive(Debug)]
struct Origins(Vec<PeerInfo>);

#[async_trait]
impl OriginDirectory for Origins {
    async fn origins(&self, _: &Namespace, _: &Digest) -> kraken_core::Result<Vec<PeerInfo>> {
        Ok(self.0.clone())
    }

    async fn metainfo(&self, _: &Namespace, digest: &Digest) -> kraken_core::Result<MetaInfo> {
        // Every simulated host knows the blob's shape from the start.
        Err(Error::NotFound(*digest))
    }
}

/// The tracker of a run.
#[derive(Debug)]
pub(super) struct SimTracker {
    service: TrackerService,
}

impl SimTracker {
    pub(super) fn new(config: TrackerConfig, origins: Vec<PeerInfo>, rng: StdRng) -> Self {
        let peers = Peers {
            list: Vec::new(),
            index: HashMap::new(),
            rng,
        };
        let store = Arc::new(SeededPeerStore(Mutex::new(peers)));
        let service = TrackerService::new(config, store, Arc::new(Origins(origins)));
        SimTracker { service }
    }

    /// Answers an announce with the real service.
    pub(super) fn announce(&self, request: &AnnounceRequest) -> AnnounceResponse {
        // Neither the store nor the directory ever waits, so the service's
        // future is ready on its first poll.
        self.service
            .announce(request)
            .now_or_never()
            .expect("the simulated tracker answers at once")
            .expect("the simulated peer store cannot fail")
    }

    /// Returns the announces answered.
    pub(super) fn announces(&self) -> u64 {
        self.service.announces()
    }
}
