//! A [`PeerStore`] in the tracker's own memory, for a single tracker or a
//! local cluster. Several trackers that must see the same peers share Redis
//! instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kraken_core::{InfoHash, PeerId, PeerInfo, PeerStore, Result};
use rand::seq::{IteratorRandom, SliceRandom};

/// Announces between two sweeps of every torrent for expired entries;
/// torrents that are sampled are also pruned as they are read.
const SWEEP_EVERY: u64 = 4096;

/// Keeps announces in a map, each until its time to live runs out.
#[derive(Debug)]
pub struct MemoryPeerStore {
    ttl: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    torrents: HashMap<InfoHash, HashMap<PeerId, Entry>>,
    announces: u64,
}

#[derive(Debug)]
struct Entry {
    peer: PeerInfo,
    expires: Instant,
}

impl MemoryPeerStore {
    /// Creates an empty store whose entries live for `ttl` after each
    /// announce.
    pub fn new(ttl: Duration) -> Self {
        MemoryPeerStore {
            ttl,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated
        // in a way that matters: every entry is independent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn sweep(&mut self, now: Instant) {
        self.torrents.retain(|_, peers| {
            peers.retain(|_, e| e.expires > now);
            !peers.is_empty()
        });
    }
}

#[async_trait]
impl PeerStore for MemoryPeerStore {
    async fn announce(&self, info_hash: &InfoHash, peer: &PeerInfo) -> Result<()> {
        let now = Instant::now();
        let mut state = self.lock();
        state.announces += 1;
        if state.announces.is_multiple_of(SWEEP_EVERY) {
            state.sweep(now);
        }
        let entry = Entry {
            peer: peer.clone(),
            expires: now + self.ttl,
        };
        state
            .torrents
            .entry(*info_hash)
            .or_default()
            .insert(peer.peer_id, entry);
        Ok(())
    }

    async fn sample(&self, info_hash: &InfoHash, n: usize) -> Result<Vec<PeerInfo>> {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(peers) = state.torrents.get_mut(info_hash) else {
            return Ok(Vec::new());
        };
        peers.retain(|_, e| e.expires > now);
        let mut rng = rand::rng();
        let mut chosen = peers
            .values()
            .map(|e| e.peer.clone())
            .choose_multiple(&mut rng, n);
        // The sample keeps the map's order; the handout must not.
        chosen.shuffle(&mut rng);
        if peers.is_empty() {
            state.torrents.remove(info_hash);
        }
        Ok(chosen)
    }
}
