#![cfg(feature = "testkit")]
//! Checks the testkit itself: every suite passes a correct implementation
//! and fails a deliberately broken one for the right reason, and the test
//! doubles do what their documentation promises.
//!
//! The peer store and scheduler here are fixtures for testing the suites,
//! not implementations to reuse: the real ones live in `kraken-p2p`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{FutureExt, StreamExt, stream};
use kraken_core::testkit::{
    DownloadFault, FaultyBackend, MemoryBackend, Operation, SchedulerHarness, backend_suite,
    blob_store_suite, peer_store_suite, scheduler_suite, temp_disk_store,
};
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BackendStream, Bitfield, BlobReader, BlobStat,
    BlobState, BlobStore, BlobStream, ByteRange, Capabilities, Digest, Error, InfoHash, ListPage,
    MetaInfo, Namespace, ObjectInfo, PeerId, PeerInfo, PeerStore, PieceIndex, PieceLengths, Result,
    Scheduler, SchedulerStats, UploadBody, UploadId, read_range,
};
use rand::seq::SliceRandom;

/// Runs `suite` and checks it panics with a message naming `check`.
async fn expect_failure(check: &str, suite: impl Future<Output = ()>) {
    let Err(payload) = AssertUnwindSafe(suite).catch_unwind().await else {
        panic!("the suite passed a broken implementation; expected {check} to fail");
    };
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        message.contains(check),
        "expected {check} to fail, the suite said: {message}"
    );
}

fn ns(s: &str) -> Namespace {
    Namespace::new(s).unwrap()
}

async fn read_all(
    backend: &dyn Backend,
    ns: &Namespace,
    name: &str,
) -> Result<Bytes, BackendError> {
    let mut stream = backend.download(ns, name, None).await?;
    let mut data = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk?);
    }
    Ok(data.freeze())
}

// ---- backends ------------------------------------------------------------

#[tokio::test]
async fn memory_backend_passes_backend_suite() {
    backend_suite(Arc::new(MemoryBackend::new())).await;
}

#[tokio::test]
async fn read_only_memory_backend_passes_backend_suite() {
    for list in [true, false] {
        let caps = Capabilities { write: false, list };
        backend_suite(Arc::new(MemoryBackend::with_capabilities(caps))).await;
    }
}

#[tokio::test]
async fn read_only_memory_backend_serves_inserted_objects() {
    let backend = MemoryBackend::with_capabilities(Capabilities {
        write: false,
        list: true,
    });
    backend.insert(&ns("upstream"), "sha256:abc", Bytes::from_static(b"hello"));
    assert_eq!(
        read_all(&backend, &ns("upstream"), "sha256:abc")
            .await
            .unwrap(),
        "hello"
    );
    let page = backend.list(&ns("upstream"), "", None, 10).await.unwrap();
    assert_eq!(page.names, ["sha256:abc"]);
}

#[tokio::test]
async fn faulty_backend_without_faults_passes_backend_suite() {
    let (backend, faults) = FaultyBackend::wrap(Arc::new(MemoryBackend::new()));
    backend_suite(backend).await;
    assert!(faults.calls(Operation::Upload) > 0 && faults.calls(Operation::List) > 0);
}

/// A backend whose `stat` overstates every size by one byte.
#[derive(Debug, Default)]
struct OffByOneStat(MemoryBackend);

#[async_trait]
impl Backend for OffByOneStat {
    fn kind(&self) -> &'static str {
        "off-by-one"
    }

    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }

    async fn stat(&self, ns: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let info = self.0.stat(ns, name).await?;
        Ok(ObjectInfo {
            size: info.size + 1,
        })
    }

    async fn download(
        &self,
        ns: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        self.0.download(ns, name, range).await
    }

    async fn upload(
        &self,
        ns: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        self.0.upload(ns, name, length, body).await
    }

    async fn list(
        &self,
        ns: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        self.0.list(ns, prefix, page, limit).await
    }
}

#[tokio::test]
async fn backend_suite_fails_a_wrong_stat_size() {
    let suite = backend_suite(Arc::new(OffByOneStat::default()));
    expect_failure("backend_suite/upload then read", suite).await;
}

#[tokio::test]
async fn backend_suite_fails_a_lying_backend() {
    let (backend, faults) = FaultyBackend::wrap(Arc::new(MemoryBackend::new()));
    faults.set_download_fault(DownloadFault::FlipByte { at: 0 });
    expect_failure("backend_suite/upload then read", backend_suite(backend)).await;
}

#[tokio::test]
async fn backend_suite_fails_during_an_outage() {
    let (backend, faults) = FaultyBackend::wrap(Arc::new(MemoryBackend::new()));
    faults.set_outage(true);
    expect_failure("backend_suite/missing object", backend_suite(backend)).await;
}

#[tokio::test]
async fn outage_fails_every_call_until_lifted() {
    let inner = Arc::new(MemoryBackend::new());
    inner.insert(&ns("a"), "x", Bytes::from_static(b"1"));
    let (backend, faults) = FaultyBackend::wrap(inner);
    faults.set_outage(true);
    let err = backend.stat(&ns("a"), "x").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(backend.download(&ns("a"), "x", None).await.is_err());
    assert!(backend.list(&ns("a"), "", None, 5).await.is_err());
    let body = stream::iter([Ok(Bytes::from_static(b"2"))]).boxed();
    assert!(backend.upload(&ns("a"), "x", 1, body).await.is_err());
    faults.set_outage(false);
    assert_eq!(backend.stat(&ns("a"), "x").await.unwrap().size, 1);
}

#[tokio::test]
async fn fail_next_fails_exactly_n_targeted_calls() {
    let inner = Arc::new(MemoryBackend::new());
    inner.insert(&ns("a"), "x", Bytes::from_static(b"1"));
    let (backend, faults) = FaultyBackend::wrap(inner);
    faults.target(&[Operation::Download]);
    faults.fail_next(2, BackendErrorKind::RateLimited);
    assert!(
        backend.stat(&ns("a"), "x").await.is_ok(),
        "stat is not targeted"
    );
    for _ in 0..2 {
        let Err(err) = backend.download(&ns("a"), "x", None).await else {
            panic!("not failed")
        };
        assert_eq!(err.kind(), BackendErrorKind::RateLimited);
        assert!(err.is_retryable());
    }
    assert_eq!(faults.pending_failures(), 0);
    assert_eq!(
        read_all(backend.as_ref(), &ns("a"), "x").await.unwrap(),
        "1"
    );
}

#[tokio::test]
async fn download_faults_truncate_corrupt_and_break_streams() {
    let inner = Arc::new(MemoryBackend::new());
    let data = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    inner.insert(&ns("a"), "x", data.clone());
    let (backend, faults) = FaultyBackend::wrap(inner);

    faults.set_download_fault(DownloadFault::Truncate { keep: 70_000 });
    assert_eq!(
        read_all(backend.as_ref(), &ns("a"), "x").await.unwrap(),
        data.slice(..70_000)
    );

    faults.set_download_fault(DownloadFault::FlipByte { at: 100_000 });
    let got = read_all(backend.as_ref(), &ns("a"), "x").await.unwrap();
    let differ: Vec<_> = (0..data.len()).filter(|&i| got[i] != data[i]).collect();
    assert_eq!((got.len(), differ), (data.len(), vec![100_000]));

    faults.set_download_fault(DownloadFault::FailAfter { after: 70_000 });
    let mut body = backend.download(&ns("a"), "x", None).await.unwrap();
    let mut received = 0;
    let error = loop {
        match body.next().await.expect("the stream must fail, not end") {
            Ok(chunk) => received += chunk.len(),
            Err(e) => break e,
        }
    };
    assert_eq!(
        (received, error.kind()),
        (70_000, BackendErrorKind::Unavailable)
    );
    assert!(body.next().await.is_none(), "nothing follows the error");

    faults.clear();
    assert_eq!(
        read_all(backend.as_ref(), &ns("a"), "x").await.unwrap(),
        data
    );
}

#[tokio::test]
async fn counters_count_every_call_and_latency_delays_it() {
    let (backend, faults) = FaultyBackend::wrap(Arc::new(MemoryBackend::new()));
    let _ = backend.stat(&ns("a"), "x").await;
    let _ = backend.stat(&ns("a"), "y").await;
    faults.set_outage(true);
    let _ = backend.list(&ns("a"), "", None, 1).await;
    assert_eq!(faults.calls(Operation::Stat), 2);
    assert_eq!(faults.calls(Operation::List), 1, "failed calls count");
    assert_eq!(
        (faults.calls(Operation::Download), faults.total_calls()),
        (0, 3)
    );
    faults.reset_calls();
    assert_eq!(faults.total_calls(), 0);

    faults.clear();
    faults.set_latency(Duration::from_millis(60));
    let start = Instant::now();
    let _ = backend.stat(&ns("a"), "x").await;
    assert!(start.elapsed() >= Duration::from_millis(60));
}

// ---- peer stores ---------------------------------------------------------

/// Each peer of one torrent with when it last announced.
type Torrent = HashMap<PeerId, (PeerInfo, Instant)>;

/// A fixture for testing the peer store suite, with switches to break it.
#[derive(Debug)]
struct MapPeerStore {
    ttl: Duration,
    expires: bool,
    shuffles: bool,
    entries: Mutex<HashMap<InfoHash, Torrent>>,
}

impl MapPeerStore {
    fn new(ttl: Duration) -> Self {
        MapPeerStore {
            ttl,
            expires: true,
            shuffles: true,
            entries: Mutex::default(),
        }
    }
}

#[async_trait]
impl PeerStore for MapPeerStore {
    async fn announce(&self, info_hash: &InfoHash, peer: &PeerInfo) -> Result<()> {
        let mut entries = self.entries.lock().unwrap();
        let torrent = entries.entry(*info_hash).or_default();
        torrent.insert(peer.peer_id, (peer.clone(), Instant::now()));
        Ok(())
    }

    async fn sample(&self, info_hash: &InfoHash, n: usize) -> Result<Vec<PeerInfo>> {
        let entries = self.entries.lock().unwrap();
        let alive = |at: &Instant| !self.expires || at.elapsed() < self.ttl;
        let mut peers: Vec<PeerInfo> = entries
            .get(info_hash)
            .into_iter()
            .flat_map(|torrent| torrent.values())
            .filter(|(_, at)| alive(at))
            .map(|(peer, _)| peer.clone())
            .collect();
        if self.shuffles {
            peers.shuffle(&mut rand::rng());
        } else {
            peers.sort_by_key(|p| p.peer_id);
        }
        peers.truncate(n);
        Ok(peers)
    }
}

#[tokio::test]
async fn peer_store_suite_passes_a_correct_store() {
    peer_store_suite(|ttl| async move { Arc::new(MapPeerStore::new(ttl)) as Arc<dyn PeerStore> })
        .await;
}

#[tokio::test]
async fn peer_store_suite_fails_a_store_that_never_expires() {
    let suite = peer_store_suite(|ttl| async move {
        Arc::new(MapPeerStore {
            expires: false,
            ..MapPeerStore::new(ttl)
        }) as Arc<dyn PeerStore>
    });
    expect_failure("peer_store_suite/expiry", suite).await;
}

#[tokio::test]
async fn peer_store_suite_fails_a_store_that_always_picks_the_same_peers() {
    let suite = peer_store_suite(|ttl| async move {
        Arc::new(MapPeerStore {
            shuffles: false,
            ..MapPeerStore::new(ttl)
        }) as Arc<dyn PeerStore>
    });
    expect_failure("peer_store_suite/sampling is random", suite).await;
}

// ---- blob stores ---------------------------------------------------------

/// A fixture for testing the blob store suite: the contract kept in maps,
/// with a switch that lets `delete` ignore pins.
#[derive(Debug, Default)]
struct MapBlobStore {
    ignores_pins: bool,
    state: Mutex<StoreState>,
}

#[derive(Debug, Default)]
struct StoreState {
    uploads: HashMap<UploadId, BytesMut>,
    blobs: BTreeMap<Digest, Entry>,
}

/// A download (`cached` false) or a cached blob, every piece present.
#[derive(Debug)]
struct Entry {
    meta: MetaInfo,
    pieces: Vec<Option<Bytes>>,
    cached: bool,
    pinned: bool,
}

impl Entry {
    fn bitfield(&self) -> Bitfield {
        let mut bits = Bitfield::new(self.meta.piece_count());
        let present = self.pieces.iter().enumerate().filter(|(_, p)| p.is_some());
        present.for_each(|(i, _)| bits.set(PieceIndex(i as u32)));
        bits
    }

    fn bytes(&self) -> Bytes {
        self.pieces
            .iter()
            .flatten()
            .flat_map(|p| p.iter().copied())
            .collect()
    }
}

// The helpers return the trait's own error type, whatever its size.
#[allow(clippy::result_large_err)]
impl StoreState {
    fn upload(&mut self, id: &UploadId) -> Result<&mut BytesMut> {
        self.uploads
            .get_mut(id)
            .ok_or_else(|| Error::UploadNotFound(id.clone()))
    }

    fn entry(&mut self, digest: &Digest) -> Result<&mut Entry> {
        self.blobs.get_mut(digest).ok_or(Error::NotFound(*digest))
    }
}

#[derive(Debug)]
struct BytesReader(Bytes);

#[async_trait]
impl BlobReader for BytesReader {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let (start, end, length) = (offset, offset + len as u64, self.len());
        if end > length {
            return Err(Error::RangeNotSatisfiable { start, end, length });
        }
        Ok(self.0.slice(start as usize..end as usize))
    }
}

#[async_trait]
impl BlobStore for MapBlobStore {
    async fn create_upload(&self) -> Result<UploadId> {
        let id = UploadId::random();
        self.state
            .lock()
            .unwrap()
            .uploads
            .insert(id.clone(), BytesMut::new());
        Ok(id)
    }

    async fn append_upload(&self, id: &UploadId, offset: u64, data: Bytes) -> Result<u64> {
        let mut state = self.state.lock().unwrap();
        let upload = state.upload(id)?;
        let expected = upload.len() as u64;
        if offset != expected {
            return Err(Error::UploadOffset {
                expected,
                actual: offset,
            });
        }
        upload.extend_from_slice(&data);
        Ok(upload.len() as u64)
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64> {
        Ok(self.state.lock().unwrap().upload(id)?.len() as u64)
    }

    async fn commit_upload(
        &self,
        id: &UploadId,
        digest: &Digest,
        lengths: &PieceLengths,
    ) -> Result<MetaInfo> {
        let mut state = self.state.lock().unwrap();
        state.upload(id)?;
        let data = state.uploads.remove(id).unwrap().freeze();
        let actual = Digest::of(digest.algorithm(), &data);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        if let Some(entry) = state.blobs.get(digest).filter(|e| e.cached) {
            return Ok(entry.meta.clone());
        }
        let meta = MetaInfo::of_bytes(&data, digest.algorithm(), lengths);
        let pieces = (0..meta.piece_count())
            .map(|i| piece_of(&meta, &data, i))
            .collect();
        state.blobs.insert(
            *digest,
            Entry {
                meta: meta.clone(),
                pieces,
                cached: true,
                pinned: false,
            },
        );
        Ok(meta)
    }

    async fn abort_upload(&self, id: &UploadId) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        state
            .uploads
            .remove(id)
            .map(drop)
            .ok_or_else(|| Error::UploadNotFound(id.clone()))
    }

    async fn start_download(&self, meta: &MetaInfo) -> Result<Bitfield> {
        let mut state = self.state.lock().unwrap();
        let entry = state.blobs.entry(*meta.digest()).or_insert_with(|| Entry {
            meta: meta.clone(),
            pieces: vec![None; meta.piece_count() as usize],
            cached: false,
            pinned: false,
        });
        if entry.meta != *meta {
            return Err(Error::MetaInfoConflict(*meta.digest()));
        }
        Ok(entry.bitfield())
    }

    async fn write_piece(&self, digest: &Digest, index: PieceIndex, data: Bytes) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        let entry = state.entry(digest)?;
        let slot = entry.pieces.get(index.as_usize());
        match slot {
            None => Err(Error::PieceOutOfRange {
                digest: *digest,
                index,
            }),
            Some(Some(_)) => Ok(()),
            Some(None) if !entry.meta.verify_piece(index, &data) => Err(Error::PieceMismatch {
                digest: *digest,
                index,
            }),
            Some(None) => {
                entry.pieces[index.as_usize()] = Some(data);
                Ok(())
            }
        }
    }

    async fn bitfield(&self, digest: &Digest) -> Result<Bitfield> {
        Ok(self.state.lock().unwrap().entry(digest)?.bitfield())
    }

    async fn read_piece(&self, digest: &Digest, index: PieceIndex) -> Result<Bytes> {
        let mut state = self.state.lock().unwrap();
        match state.entry(digest)?.pieces.get(index.as_usize()) {
            None => Err(Error::PieceOutOfRange {
                digest: *digest,
                index,
            }),
            Some(None) => Err(Error::PieceMissing {
                digest: *digest,
                index,
            }),
            Some(Some(piece)) => Ok(piece.clone()),
        }
    }

    async fn commit_download(&self, digest: &Digest) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        let entry = state.entry(digest)?;
        let missing = entry.pieces.iter().filter(|p| p.is_none()).count() as u32;
        if missing > 0 {
            return Err(Error::Incomplete {
                digest: *digest,
                missing,
            });
        }
        let actual = Digest::of(digest.algorithm(), &entry.bytes());
        if actual != *digest {
            state.blobs.remove(digest);
            return Err(Error::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        entry.cached = true;
        Ok(())
    }

    async fn metainfo(&self, digest: &Digest) -> Result<MetaInfo> {
        Ok(self.state.lock().unwrap().entry(digest)?.meta.clone())
    }

    async fn open(&self, digest: &Digest) -> Result<Arc<dyn BlobReader>> {
        let mut state = self.state.lock().unwrap();
        let entry = state.entry(digest)?;
        if !entry.cached {
            return Err(Error::NotFound(*digest));
        }
        Ok(Arc::new(BytesReader(entry.bytes())))
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        Ok(stat_of(self.state.lock().unwrap().entry(digest)?))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        if state.entry(digest)?.pinned && !self.ignores_pins {
            return Err(Error::Pinned(*digest));
        }
        state.blobs.remove(digest);
        Ok(())
    }

    async fn pin(&self, digest: &Digest) -> Result<()> {
        self.state.lock().unwrap().entry(digest)?.pinned = true;
        Ok(())
    }

    async fn unpin(&self, digest: &Digest) -> Result<()> {
        self.state.lock().unwrap().entry(digest)?.pinned = false;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<BlobStat>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .blobs
            .values()
            .map(stat_of)
            .collect())
    }
}

fn piece_of(meta: &MetaInfo, data: &Bytes, i: u32) -> Option<Bytes> {
    let range = meta.piece_range(PieceIndex(i))?;
    Some(data.slice(range.start as usize..range.end as usize))
}

fn stat_of(entry: &Entry) -> BlobStat {
    let (have, pieces) = (entry.bitfield().count(), entry.meta.piece_count());
    BlobStat {
        digest: *entry.meta.digest(),
        length: entry.meta.length(),
        state: if entry.cached {
            BlobState::Cached
        } else {
            BlobState::Downloading { have, pieces }
        },
        pinned: entry.pinned,
        last_access: SystemTime::now(),
    }
}

#[tokio::test]
async fn blob_store_suite_passes_a_correct_store() {
    blob_store_suite(Arc::new(MapBlobStore::default())).await;
}

#[tokio::test]
async fn blob_store_suite_passes_the_disk_store() {
    let (_dir, store) = temp_disk_store().await;
    blob_store_suite(store).await;
}

#[tokio::test]
async fn blob_store_suite_fails_a_store_that_deletes_pinned_blobs() {
    let store = MapBlobStore {
        ignores_pins: true,
        ..MapBlobStore::default()
    };
    expect_failure(
        "blob_store_suite/pin cached",
        blob_store_suite(Arc::new(store)),
    )
    .await;
}

// ---- schedulers ----------------------------------------------------------

/// A fixture for testing the scheduler suite: it fetches whole blobs
/// straight from a backend into the store, with a switch that stops it
/// counting received bytes.
#[derive(Debug)]
struct DirectScheduler {
    backend: Arc<MemoryBackend>,
    store: Arc<dyn BlobStore>,
    counts_bytes: bool,
    bytes_in: AtomicU64,
    // One download at a time, so concurrent callers share its result.
    fetching: tokio::sync::Mutex<()>,
}

impl DirectScheduler {
    async fn is_cached(&self, digest: &Digest) -> bool {
        matches!(self.store.stat(digest).await, Ok(s) if s.state == BlobState::Cached)
    }

    async fn fetch(&self, namespace: &Namespace, digest: &Digest) -> Result<()> {
        let name = digest.to_string();
        let data = match read_all(self.backend.as_ref(), namespace, &name).await {
            Err(e) if e.is_not_found() => return Err(Error::NotFound(*digest)),
            other => other?,
        };
        let id = self.store.create_upload().await?;
        self.store.append_upload(&id, 0, data.clone()).await?;
        self.store
            .commit_upload(&id, digest, &PieceLengths::default())
            .await?;
        if self.counts_bytes {
            self.bytes_in
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[async_trait]
impl Scheduler for DirectScheduler {
    async fn download(&self, namespace: &Namespace, digest: &Digest) -> Result<()> {
        let _one_at_a_time = self.fetching.lock().await;
        if self.is_cached(digest).await {
            return Ok(());
        }
        self.fetch(namespace, digest).await
    }

    async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> Result<BlobStream> {
        self.download(namespace, digest).await?;
        let reader = self.store.open(digest).await?;
        let length = reader.len();
        let Some(range) = range.resolve(length) else {
            return Err(Error::RangeNotSatisfiable {
                start: length,
                end: length,
                length,
            });
        };
        let body = read_range(reader, range.clone(), 4096);
        Ok(BlobStream {
            length,
            range,
            body,
        })
    }

    async fn seed(&self, _namespace: &Namespace, digest: &Digest) -> Result<()> {
        if self.is_cached(digest).await {
            Ok(())
        } else {
            Err(Error::NotFound(*digest))
        }
    }

    fn cancel(&self, _digest: &Digest) {}

    fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            ..Default::default()
        }
    }
}

struct DirectHarness {
    scheduler: Arc<DirectScheduler>,
    _dir: tempfile::TempDir,
}

impl DirectHarness {
    async fn new(counts_bytes: bool) -> Self {
        let (dir, store) = temp_disk_store().await;
        let scheduler = DirectScheduler {
            backend: Arc::new(MemoryBackend::new()),
            store,
            counts_bytes,
            bytes_in: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(()),
        };
        DirectHarness {
            scheduler: Arc::new(scheduler),
            _dir: dir,
        }
    }
}

#[async_trait]
impl SchedulerHarness for DirectHarness {
    fn scheduler(&self) -> Arc<dyn Scheduler> {
        self.scheduler.clone()
    }

    fn store(&self) -> Arc<dyn BlobStore> {
        self.scheduler.store.clone()
    }

    async fn publish(&self, namespace: &Namespace, data: Bytes) -> Digest {
        let digest = Digest::sha256_of(&data);
        self.scheduler
            .backend
            .insert(namespace, &digest.to_string(), data);
        digest
    }
}

#[tokio::test]
async fn scheduler_suite_passes_a_correct_scheduler() {
    scheduler_suite(&DirectHarness::new(true).await).await;
}

#[tokio::test]
async fn scheduler_suite_fails_a_scheduler_without_stats() {
    let harness = DirectHarness::new(false).await;
    expect_failure("scheduler_suite/bytes_in", scheduler_suite(&harness)).await;
}
