//! The tracker's decisions: record an announce, hand out peers, find
//! metainfo. The HTTP server exposes a [`TrackerService`]; a scheduler in
//! the same process (tests, the local cluster) may call it directly through
//! the [`Tracker`] trait.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kraken_core::{Digest, InfoHash, MetaInfo, Namespace, PeerInfo, PeerStore, Result};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What a peer tells the tracker about one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The blob's digest, so the tracker can add the blob's origins.
    pub digest: Digest,
    /// The blob's namespace.
    pub namespace: Namespace,
    /// The announcing peer, with `complete` set once it holds everything.
    pub peer: PeerInfo,
}

/// The tracker's answer: whom to connect to, and when to ask again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceResponse {
    /// Peers to try, best first.
    pub peers: Vec<PeerInfo>,
    /// When to announce again.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// A tracker as a scheduler sees it: in process or over HTTP.
#[async_trait]
pub trait Tracker: Send + Sync + fmt::Debug {
    /// Records the announce and returns peers for the blob; a complete peer
    /// gets none, since it only seeds.
    async fn announce(&self, request: &AnnounceRequest) -> Result<AnnounceResponse>;

    /// Returns the metainfo of a blob.
    ///
    /// # Errors
    ///
    /// `NotFound` when no origin has the blob or its backend lacks it;
    /// `Unavailable` while it cannot tell.
    async fn metainfo(&self, namespace: &Namespace, digest: &Digest) -> Result<MetaInfo>;
}

/// Where the tracker learns a blob's origins and metainfo: the origin
/// cluster in production, anything in tests.
#[async_trait]
pub trait OriginDirectory: Send + Sync + fmt::Debug {
    /// Returns the origins that own `digest`, as peers (origin and complete).
    async fn origins(&self, namespace: &Namespace, digest: &Digest) -> Result<Vec<PeerInfo>>;

    /// Returns the metainfo of a blob, as [`Tracker::metainfo`].
    async fn metainfo(&self, namespace: &Namespace, digest: &Digest) -> Result<MetaInfo>;
}

/// Tracker settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Most agents handed out per announce, chosen at random; the blob's
    /// origins come on top.
    pub announce_limit: usize,
    /// How often peers should announce.
    #[serde(with = "humantime_serde")]
    pub announce_interval: Duration,
    /// How long an announce is remembered.
    #[serde(with = "humantime_serde")]
    pub peer_ttl: Duration,
    /// How long the origins of a blob are remembered once looked up, so
    /// that every announce does not cost a request to the origin cluster;
    /// zero asks on every announce. A change of owners (an origin down, a
    /// new member) reaches agents this much later.
    #[serde(with = "humantime_serde")]
    pub origins_ttl: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            announce_limit: 50,
            announce_interval: Duration::from_secs(3),
            peer_ttl: Duration::from_secs(5 * 3600),
            origins_ttl: Duration::from_secs(5),
        }
    }
}

/// Announce handling and peer handout over a [`PeerStore`] and an
/// [`OriginDirectory`].
#[derive(Debug, Clone)]
pub struct TrackerService {
    config: TrackerConfig,
    peers: Arc<dyn PeerStore>,
    origins: Arc<dyn OriginDirectory>,
    known_origins: Arc<OriginCache>,
    announces: Arc<AtomicU64>,
}

impl TrackerService {
    /// Creates the service.
    pub fn new(
        config: TrackerConfig,
        peers: Arc<dyn PeerStore>,
        origins: Arc<dyn OriginDirectory>,
    ) -> Self {
        TrackerService {
            config,
            peers,
            origins,
            known_origins: Arc::default(),
            announces: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Announces answered since start.
    pub fn announces(&self) -> u64 {
        self.announces.load(Ordering::Relaxed)
    }

    /// Checks that the peer store answers, for readiness probes.
    ///
    /// # Errors
    ///
    /// Whatever the peer store returns when it cannot be reached.
    pub async fn ready(&self) -> Result<()> {
        // A torrent nobody announces: the read costs the store almost
        // nothing and proves it answers.
        let probe = InfoHash::from_bytes([0; InfoHash::LEN]);
        self.peers.sample(&probe, 1).await.map(drop)
    }

    /// Returns the origins of a blob, from the cache while they are fresh.
    async fn origins_of(&self, namespace: &Namespace, digest: &Digest) -> Result<Vec<PeerInfo>> {
        let ttl = self.config.origins_ttl;
        if ttl.is_zero() {
            return self.origins.origins(namespace, digest).await;
        }
        if let Some(origins) = self.known_origins.get(namespace, digest) {
            return Ok(origins);
        }
        let origins = self.origins.origins(namespace, digest).await?;
        // An empty answer is not kept: origins that are still joining
        // should be handed out as soon as they answer.
        if !origins.is_empty() {
            let expires = Instant::now() + ttl;
            self.known_origins
                .put(namespace, digest, origins.clone(), expires);
        }
        Ok(origins)
    }
}

/// Most blobs whose origins are remembered; past it, expired entries are
/// dropped, and all of them if none has expired.
const MAX_KNOWN_ORIGINS: usize = 1 << 16;

/// The origins of recently announced blobs, each until it expires.
#[derive(Debug, Default)]
struct OriginCache {
    entries: Mutex<HashMap<Digest, KnownOrigins>>,
}

#[derive(Debug)]
struct KnownOrigins {
    namespace: Namespace,
    origins: Vec<PeerInfo>,
    expires: Instant,
}

impl OriginCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, KnownOrigins>> {
        // A cache: whatever a panicking thread left is still an answer.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, namespace: &Namespace, digest: &Digest) -> Option<Vec<PeerInfo>> {
        let now = Instant::now();
        let entries = self.lock();
        let known = entries.get(digest)?;
        (known.expires > now && known.namespace == *namespace).then(|| known.origins.clone())
    }

    fn put(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        origins: Vec<PeerInfo>,
        expires: Instant,
    ) {
        let mut entries = self.lock();
        if entries.len() >= MAX_KNOWN_ORIGINS && !entries.contains_key(digest) {
            let now = Instant::now();
            entries.retain(|_, known| known.expires > now);
            if entries.len() >= MAX_KNOWN_ORIGINS {
                entries.clear();
            }
        }
        let known = KnownOrigins {
            namespace: namespace.clone(),
            origins,
            expires,
        };
        entries.insert(*digest, known);
    }
}

#[async_trait]
impl Tracker for TrackerService {
    async fn announce(&self, request: &AnnounceRequest) -> Result<AnnounceResponse> {
        let interval = self.config.announce_interval;
        self.announces.fetch_add(1, Ordering::Relaxed);
        self.peers
            .announce(&request.info_hash, &request.peer)
            .await?;
        if request.peer.complete {
            return Ok(AnnounceResponse {
                peers: Vec::new(),
                interval,
            });
        }
        let limit = self.config.announce_limit + 1; // the asker may be drawn
        let agents = self.peers.sample(&request.info_hash, limit).await?;
        let origins = match self.origins_of(&request.namespace, &request.digest).await {
            Ok(origins) => origins,
            // Agents can still help each other while origins are unreachable.
            Err(e) => {
                tracing::warn!(digest = %request.digest, error = %e, "origin lookup failed");
                Vec::new()
            }
        };
        let peers = handout(&request.peer, agents, origins, self.config.announce_limit);
        Ok(AnnounceResponse { peers, interval })
    }

    async fn metainfo(&self, namespace: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        self.origins.metainfo(namespace, digest).await
    }
}

/// Orders a handout: complete agents first (they can serve everything),
/// then origins, then incomplete agents; never the asker, never a peer
/// twice, at most `limit` agents.
pub fn handout(
    asker: &PeerInfo,
    agents: Vec<PeerInfo>,
    origins: Vec<PeerInfo>,
    limit: usize,
) -> Vec<PeerInfo> {
    let mut agents: Vec<_> = agents
        .into_iter()
        .filter(|p| p.peer_id != asker.peer_id && !origins.iter().any(|o| o.peer_id == p.peer_id))
        .take(limit)
        .collect();
    agents.sort_by_key(|p| !p.complete);
    let split = agents
        .iter()
        .position(|p| !p.complete)
        .unwrap_or(agents.len());
    let incomplete = agents.split_off(split);
    let origins = origins
        .into_iter()
        .filter(|o| o.peer_id != asker.peer_id)
        .map(|mut o| {
            o.origin = true;
            o.complete = true;
            o
        });
    agents
        .into_iter()
        .chain(origins)
        .chain(incomplete)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use kraken_core::PeerId;

    use super::*;
    use crate::tracker::MemoryPeerStore;

    /// Origins that count how often they are asked; `empty` answers none.
    #[derive(Debug, Default)]
    struct Counted {
        lookups: AtomicUsize,
        empty: AtomicBool,
    }

    #[async_trait]
    impl OriginDirectory for Counted {
        async fn origins(&self, _: &Namespace, _: &Digest) -> Result<Vec<PeerInfo>> {
            self.lookups.fetch_add(1, Ordering::Relaxed);
            match self.empty.load(Ordering::Relaxed) {
                true => Ok(Vec::new()),
                false => Ok(vec![peer(9, true)]),
            }
        }

        async fn metainfo(&self, _: &Namespace, digest: &Digest) -> Result<MetaInfo> {
            Err(kraken_core::Error::NotFound(*digest))
        }
    }

    fn service(origins_ttl: Duration, directory: Arc<Counted>) -> TrackerService {
        let config = TrackerConfig {
            origins_ttl,
            ..TrackerConfig::default()
        };
        let peers = Arc::new(MemoryPeerStore::new(config.peer_ttl));
        TrackerService::new(config, peers, directory)
    }

    fn announce_of(n: u8) -> AnnounceRequest {
        let digest = Digest::sha256_of(b"blob");
        AnnounceRequest {
            info_hash: InfoHash::from_bytes([3; InfoHash::LEN]),
            digest,
            namespace: Namespace::new("ns").unwrap(),
            peer: peer(n, false),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn origins_are_looked_up_once_per_ttl() {
        let directory = Arc::new(Counted::default());
        let tracker = service(Duration::from_secs(5), directory.clone());
        for n in 1..=3 {
            let answer = tracker.announce(&announce_of(n)).await.unwrap();
            assert!(answer.peers.iter().any(|p| p.origin), "origins handed out");
        }
        assert_eq!(directory.lookups.load(Ordering::Relaxed), 1);
        tokio::time::advance(Duration::from_secs(6)).await;
        tracker.announce(&announce_of(4)).await.unwrap();
        assert_eq!(directory.lookups.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_origins_and_a_zero_ttl_are_not_remembered() {
        let directory = Arc::new(Counted::default());
        directory.empty.store(true, Ordering::Relaxed);
        let tracker = service(Duration::from_secs(5), directory.clone());
        tracker.announce(&announce_of(1)).await.unwrap();
        directory.empty.store(false, Ordering::Relaxed);
        let answer = tracker.announce(&announce_of(2)).await.unwrap();
        assert!(
            answer.peers.iter().any(|p| p.origin),
            "a joining origin shows at once"
        );

        let directory = Arc::new(Counted::default());
        let tracker = service(Duration::ZERO, directory.clone());
        tracker.announce(&announce_of(1)).await.unwrap();
        tracker.announce(&announce_of(2)).await.unwrap();
        assert_eq!(directory.lookups.load(Ordering::Relaxed), 2);
    }

    fn peer(n: u8, complete: bool) -> PeerInfo {
        let addr = format!("127.0.0.{n}:16001").parse().unwrap();
        PeerInfo {
            complete,
            ..PeerInfo::new(PeerId::from_bytes([n; 20]), addr)
        }
    }

    #[test]
    fn handout_orders_complete_then_origins_then_incomplete() {
        let asker = peer(1, false);
        let agents = vec![
            peer(2, false),
            peer(1, false),
            peer(3, true),
            peer(4, false),
        ];
        let origins = vec![peer(9, false)];
        let got = handout(&asker, agents, origins, 50);
        let ids: Vec<u8> = got.iter().map(|p| p.peer_id.as_bytes()[0]).collect();
        assert_eq!(ids[0], 3);
        assert_eq!(ids[1], 9);
        assert!(got[1].origin && got[1].complete);
        assert_eq!(ids[2..].len(), 2);
        assert!(!ids.contains(&1), "never the asker");
    }

    #[test]
    fn handout_caps_agents_but_keeps_origins() {
        let agents: Vec<_> = (10..40).map(|n| peer(n, false)).collect();
        let origins = vec![peer(1, true), peer(2, true)];
        let got = handout(&peer(99, false), agents, origins, 5);
        assert_eq!(got.len(), 7);
        assert_eq!(got.iter().filter(|p| p.origin).count(), 2);
    }
}
