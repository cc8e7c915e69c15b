//! An in-process swarm on loopback: a tracker service, origins and agents,
//! each with its own disk store under one temporary directory.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_core::{
    Algorithm, BlobStore, Digest, Error, MetaInfo, Namespace, PeerInfo, PieceLengths, Result,
    Scheduler,
};
use kraken_p2p::scheduler::{Engine, EngineOptions, SchedulerConfig};
use kraken_p2p::tracker::{MemoryPeerStore, OriginDirectory, TrackerConfig, TrackerService};

/// Origins and metainfo known to the test tracker.
#[derive(Debug, Default)]
pub struct Directory {
    origins: Mutex<Vec<PeerInfo>>,
    metainfo: Mutex<HashMap<Digest, MetaInfo>>,
}

#[async_trait]
impl OriginDirectory for Directory {
    async fn origins(&self, _: &Namespace, _: &Digest) -> Result<Vec<PeerInfo>> {
        Ok(self.origins.lock().unwrap().clone())
    }

    async fn metainfo(&self, _: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        let known = self.metainfo.lock().unwrap().get(digest).cloned();
        known.ok_or(Error::NotFound(*digest))
    }
}

/// A running peer.
pub struct Peer {
    pub engine: Engine,
    pub store: Arc<DiskStore>,
    pub root: std::path::PathBuf,
}

pub struct Swarm {
    pub dir: tempfile::TempDir,
    pub directory: Arc<Directory>,
    pub tracker: Arc<TrackerService>,
    /// What engines announce to; `tracker` itself unless replaced by
    /// [`Swarm::with_engine_tracker`] (an HTTP client, say).
    engine_tracker: Option<Arc<dyn kraken_p2p::tracker::Tracker>>,
    next: std::sync::atomic::AtomicUsize,
}

pub fn ns() -> Namespace {
    Namespace::new("test/swarm").unwrap()
}

/// Scheduler settings for fast tests: short intervals and timeouts.
pub fn fast_config() -> SchedulerConfig {
    SchedulerConfig {
        announce_interval: Duration::from_millis(200),
        blacklist_duration: Duration::from_secs(2),
        ..SchedulerConfig::default()
    }
}

impl Swarm {
    pub fn new() -> Self {
        let directory = Arc::new(Directory::default());
        let config = TrackerConfig {
            announce_interval: Duration::from_millis(200),
            ..TrackerConfig::default()
        };
        let peers = Arc::new(MemoryPeerStore::new(config.peer_ttl));
        let tracker = Arc::new(TrackerService::new(config, peers, directory.clone()));
        Swarm {
            dir: tempfile::tempdir().unwrap(),
            directory,
            tracker,
            engine_tracker: None,
            next: Default::default(),
        }
    }

    /// Makes peers started from now on reach the tracker through `tracker`
    /// instead of calling the service directly.
    pub fn with_engine_tracker(mut self, tracker: Arc<dyn kraken_p2p::tracker::Tracker>) -> Self {
        self.engine_tracker = Some(tracker);
        self
    }

    /// Starts a peer with a fresh store, or reopens the store at `root`.
    pub async fn peer_at(
        &self,
        root: std::path::PathBuf,
        config: SchedulerConfig,
        origin: bool,
    ) -> Peer {
        let options = EngineOptions {
            origin,
            scheduler: config,
            ..EngineOptions::default()
        };
        self.peer_with_options_at(root, options).await
    }

    /// Starts a peer with a fresh store and the given engine options (TLS,
    /// say).
    pub async fn peer_with_options(&self, options: EngineOptions) -> Peer {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = self.dir.path().join(format!("peer{n}"));
        self.peer_with_options_at(root, options).await
    }

    async fn peer_with_options_at(&self, root: std::path::PathBuf, options: EngineOptions) -> Peer {
        let store = Arc::new(DiskStore::open(DiskStoreOptions::new(&root)).await.unwrap());
        let origin = options.origin;
        let tracker: Arc<dyn kraken_p2p::tracker::Tracker> = match &self.engine_tracker {
            Some(tracker) => tracker.clone(),
            None => self.tracker.clone(),
        };
        let engine = Engine::start(options, store.clone(), tracker)
            .await
            .unwrap();
        if origin {
            self.directory
                .origins
                .lock()
                .unwrap()
                .push(engine.local_peer().clone());
        }
        Peer {
            engine,
            store,
            root,
        }
    }

    pub async fn peer(&self, config: SchedulerConfig, origin: bool) -> Peer {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.peer_at(self.dir.path().join(format!("peer{n}")), config, origin)
            .await
    }

    /// Makes the tracker answer for `digest` with another blob's metainfo.
    pub fn lie_about(&self, digest: Digest, meta: MetaInfo) {
        self.directory.metainfo.lock().unwrap().insert(digest, meta);
    }

    /// Stops handing out origins, as when they all went away.
    pub fn forget_origins(&self) {
        self.directory.origins.lock().unwrap().clear();
    }

    /// Stores `data` in `peer` as a committed blob and tells the tracker its
    /// metainfo.
    pub async fn publish(&self, peer: &Peer, data: &Bytes, piece_length: u64) -> MetaInfo {
        self.publish_as(peer, data, piece_length, Algorithm::Sha256)
            .await
    }

    /// Publishes as [`Swarm::publish`] under a digest of `algorithm`.
    pub async fn publish_as(
        &self,
        peer: &Peer,
        data: &Bytes,
        piece_length: u64,
        algorithm: Algorithm,
    ) -> MetaInfo {
        let digest = Digest::of(algorithm, data);
        let id = peer.store.create_upload().await.unwrap();
        peer.store
            .append_upload(&id, 0, data.clone())
            .await
            .unwrap();
        let lengths = PieceLengths::fixed(piece_length).unwrap();
        let meta = peer
            .store
            .commit_upload(&id, &digest, &lengths)
            .await
            .unwrap();
        assert_eq!(meta, MetaInfo::of_bytes(data, algorithm, &lengths));
        self.directory
            .metainfo
            .lock()
            .unwrap()
            .insert(digest, meta.clone());
        meta
    }
}

/// Deterministic pseudo-random bytes.
pub fn blob(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<_>>()
        .into()
}

/// Reads a committed blob back from a store.
pub async fn read_back(store: &DiskStore, digest: &Digest) -> Vec<u8> {
    let reader = store.open(digest).await.unwrap();
    reader
        .read_at(0, reader.len() as usize)
        .await
        .unwrap()
        .to_vec()
}

/// How a fake peer misbehaves.
#[derive(Debug, Clone, Copy)]
pub enum Misbehaviour {
    /// Answers every request with bytes of the right length but wrong hash.
    Corrupt,
    /// Accepts requests and never answers.
    Silent,
}

/// Starts a peer that claims the whole blob and misbehaves, and announces
/// it to the tracker as complete so leechers are handed it first.
/// A misbehaving peer, and how many pieces it sent on each connection.
pub struct BadPeer {
    pub info: PeerInfo,
    pub pieces_per_connection: Arc<Mutex<Vec<usize>>>,
}

pub async fn spawn_bad_peer(swarm: &Swarm, meta: &MetaInfo, how: Misbehaviour) -> BadPeer {
    use kraken_p2p::tracker::{AnnounceRequest, Tracker};
    use kraken_p2p::wire::{Frame, FrameReader, FrameWriter, Handshake, read_handshake};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = PeerInfo {
        complete: true,
        ..PeerInfo::new(kraken_core::PeerId::random(), addr)
    };
    let hello = Handshake {
        info_hash: meta.info_hash(),
        digest: *meta.digest(),
        peer_id: peer.peer_id,
        namespace: ns(),
        bitfield: kraken_core::Bitfield::full(meta.piece_count()),
    };
    let request = AnnounceRequest {
        info_hash: hello.info_hash,
        digest: hello.digest,
        namespace: ns(),
        peer: peer.clone(),
    };
    let meta = meta.clone();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let counts = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let hello = hello.clone();
            let meta = meta.clone();
            let counts = counts.clone();
            tokio::spawn(async move {
                if read_handshake(&mut tcp).await.is_err() {
                    return;
                }
                kraken_p2p::wire::write_handshake(&mut tcp, &hello)
                    .await
                    .unwrap();
                let conn = {
                    let mut counts = counts.lock().unwrap();
                    counts.push(0);
                    counts.len() - 1
                };
                let (read, write) = tokio::io::split(tcp);
                let mut reader = FrameReader::new(read, meta.piece_length() as u32);
                let mut writer = FrameWriter::new(write);
                while let Ok(Some(frame)) = reader.next().await {
                    let Frame::Request(index) = frame else {
                        continue;
                    };
                    if let Misbehaviour::Corrupt = how {
                        let len = meta.piece_len(index).unwrap() as usize;
                        let data = blob(len, u64::from(index.0) + 999);
                        if writer.send(&Frame::Piece { index, data }).await.is_err() {
                            return;
                        }
                        counts.lock().unwrap()[conn] += 1;
                    }
                }
            });
        }
    });
    swarm.tracker.announce(&request).await.unwrap();
    BadPeer {
        info: peer,
        pieces_per_connection: sent,
    }
}

/// Starts `n` agents with `config`.
pub async fn agents(swarm: &Swarm, n: usize, config: &SchedulerConfig) -> Vec<Peer> {
    let mut peers = Vec::with_capacity(n);
    for _ in 0..n {
        peers.push(swarm.peer(config.clone(), false).await);
    }
    peers
}

/// Downloads a blob on every peer at once, within `limit`.
pub async fn download_all(peers: &[Peer], meta: &MetaInfo, limit: Duration) -> Vec<Result<()>> {
    let ns = ns();
    let downloads = peers.iter().map(|p| p.engine.download(&ns, meta.digest()));
    tokio::time::timeout(limit, futures::future::join_all(downloads))
        .await
        .expect("downloads finished in time")
}

/// Downloads a blob on every peer at once and checks each copy is `data`.
pub async fn download_exact(peers: &[Peer], meta: &MetaInfo, data: &Bytes, limit: Duration) {
    for (peer, result) in peers.iter().zip(download_all(peers, meta, limit).await) {
        result.unwrap();
        assert_eq!(read_back(&peer.store, meta.digest()).await, &data[..]);
    }
}
