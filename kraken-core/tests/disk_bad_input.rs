//! `DiskStore` under bad input, full disks, damaged state and concurrency:
//! the cases where a store that merely works on the happy path would
//! serve or keep something it must not.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use bytesize::ByteSize;
use tempfile::TempDir;

use kraken_core::disk::{CleanupReport, DiskStore, DiskStoreOptions};
use kraken_core::{
    Algorithm, Bitfield, BlobState, BlobStore, Digest, Error, MetaInfo, PieceIndex, PieceLengths,
};

fn lengths(piece: u64) -> PieceLengths {
    PieceLengths::fixed(piece).unwrap()
}

/// Deterministic bytes that differ per `seed`.
fn blob(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn options(root: &Path) -> DiskStoreOptions {
    DiskStoreOptions::new(root)
}

async fn open(root: &Path) -> DiskStore {
    DiskStore::open(options(root)).await.unwrap()
}

/// Pushes `data` through an upload and commits it.
async fn put(store: &DiskStore, data: &[u8], algorithm: Algorithm) -> MetaInfo {
    let id = store.create_upload().await.unwrap();
    store
        .append_upload(&id, 0, Bytes::copy_from_slice(data))
        .await
        .unwrap();
    let digest = Digest::of(algorithm, data);
    store
        .commit_upload(&id, &digest, &lengths(16))
        .await
        .unwrap()
}

fn piece(meta: &MetaInfo, data: &[u8], i: u32) -> Bytes {
    let r = meta.piece_range(PieceIndex(i)).unwrap();
    Bytes::copy_from_slice(&data[r.start as usize..r.end as usize])
}

async fn download(store: &DiskStore, data: &[u8], piece_len: u64) -> MetaInfo {
    let meta = MetaInfo::of_bytes(data, Algorithm::Sha256, &lengths(piece_len));
    store.start_download(&meta).await.unwrap();
    meta
}

/// Writes `pieces` of `data` into the download of `meta`, in that order.
async fn write_pieces(
    store: &DiskStore,
    meta: &MetaInfo,
    data: &[u8],
    pieces: impl IntoIterator<Item = u32>,
) {
    for i in pieces {
        store
            .write_piece(meta.digest(), PieceIndex(i), piece(meta, data, i))
            .await
            .unwrap();
    }
}

async fn read_all(store: &DiskStore, digest: &Digest) -> Vec<u8> {
    let reader = store.open(digest).await.unwrap();
    reader
        .read_at(0, reader.len() as usize)
        .await
        .unwrap()
        .to_vec()
}

/// Lists every file and symlink under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir).unwrap() {
        let path = item.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::NotFound(_))
}

#[tokio::test]
async fn wrong_piece_is_rejected_and_nothing_is_stored() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let data = blob(1, 100);
    let meta = download(&store, &data, 16).await;
    let d = *meta.digest();

    let short = piece(&meta, &data, 2).slice(1..);
    let mut flipped = piece(&meta, &data, 2).to_vec();
    flipped[3] ^= 0x40;
    let last_too_long = [piece(&meta, &data, 6).to_vec(), vec![0]].concat();
    for (i, bad) in [(2, short), (2, flipped.into()), (6, last_too_long.into())] {
        let err = store.write_piece(&d, PieceIndex(i), bad).await.unwrap_err();
        assert!(matches!(err, Error::PieceMismatch { index: PieceIndex(n), .. } if n == i));
    }
    assert_eq!(store.bitfield(&d).await.unwrap(), Bitfield::new(7));
    let err = store.read_piece(&d, PieceIndex(2)).await.unwrap_err();
    assert!(matches!(err, Error::PieceMissing { .. }), "{err:?}");

    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(
        store.bitfield(&d).await.unwrap().count(),
        0,
        "nothing persisted either"
    );
}

#[tokio::test]
async fn piece_index_past_the_end_is_out_of_range() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let data = blob(2, 40);
    let meta = download(&store, &data, 16).await;
    let d = *meta.digest();
    for i in [3, 4, u32::MAX] {
        let err = store
            .write_piece(&d, PieceIndex(i), Bytes::from_static(b"x"))
            .await;
        assert!(matches!(err, Err(Error::PieceOutOfRange { .. })), "{err:?}");
        let err = store.read_piece(&d, PieceIndex(i)).await;
        assert!(matches!(err, Err(Error::PieceOutOfRange { .. })), "{err:?}");
    }
    let unknown = Digest::sha256_of(b"unknown");
    let err = store
        .write_piece(&unknown, PieceIndex(0), Bytes::new())
        .await
        .unwrap_err();
    assert!(is_not_found(&err));
}

#[tokio::test]
async fn commit_of_wrong_bytes_discards_the_upload() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let id = store.create_upload().await.unwrap();
    store
        .append_upload(&id, 0, Bytes::from(blob(3, 50)))
        .await
        .unwrap();
    let claimed = Digest::sha256_of(b"something else");

    let err = store
        .commit_upload(&id, &claimed, &lengths(16))
        .await
        .unwrap_err();
    let Error::DigestMismatch { expected, actual } = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        (expected, actual),
        (claimed, Digest::sha256_of(&blob(3, 50)))
    );
    assert!(is_not_found(&store.stat(&claimed).await.unwrap_err()));
    assert!(
        is_not_found(&store.stat(&actual).await.unwrap_err()),
        "not kept under its own name"
    );
    assert!(matches!(
        store.upload_size(&id).await,
        Err(Error::UploadNotFound(_))
    ));
    assert!(walk(&dir.path().join("upload")).is_empty());
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn append_at_the_wrong_offset_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let id = store.create_upload().await.unwrap();
    store
        .append_upload(&id, 0, Bytes::from_static(b"abc"))
        .await
        .unwrap();
    for offset in [0, 2, 4, u64::MAX] {
        let err = store
            .append_upload(&id, offset, Bytes::from_static(b"zz"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UploadOffset { expected: 3, actual } if actual == offset));
    }
    assert_eq!(store.upload_size(&id).await.unwrap(), 3);
    let meta = store
        .commit_upload(&id, &Digest::sha256_of(b"abc"), &lengths(2))
        .await
        .unwrap();
    assert_eq!(read_all(&store, meta.digest()).await, b"abc");
}

#[tokio::test]
async fn incomplete_download_does_not_commit() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let data = blob(4, 64);
    let meta = download(&store, &data, 16).await;
    let d = *meta.digest();
    store
        .write_piece(&d, PieceIndex(1), piece(&meta, &data, 1))
        .await
        .unwrap();

    let err = store.commit_download(&d).await.unwrap_err();
    assert!(
        matches!(err, Error::Incomplete { missing: 3, .. }),
        "{err:?}"
    );
    assert!(is_not_found(&store.open(&d).await.unwrap_err()));
    let state = store.stat(&d).await.unwrap().state;
    assert_eq!(state, BlobState::Downloading { have: 1, pieces: 4 });

    for i in [0, 2, 3] {
        store
            .write_piece(&d, PieceIndex(i), piece(&meta, &data, i))
            .await
            .unwrap();
    }
    store.commit_download(&d).await.unwrap();
    assert_eq!(read_all(&store, &d).await, data);
}

#[tokio::test]
async fn full_store_fails_when_nothing_can_be_evicted() {
    let dir = TempDir::new().unwrap();
    let opts = DiskStoreOptions {
        capacity: ByteSize(100),
        ..options(dir.path())
    };
    let store = DiskStore::open(opts).await.unwrap();
    let pinned = put(&store, &blob(5, 60), Algorithm::Sha256).await;
    store.pin(pinned.digest()).await.unwrap();
    let open = put(&store, &blob(6, 30), Algorithm::Sha256).await;
    let reader = store.open(open.digest()).await.unwrap();

    let id = store.create_upload().await.unwrap();
    let err = store
        .append_upload(&id, 0, Bytes::from(blob(7, 20)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StoreFull {
                needed: 20,
                capacity: 100
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.upload_size(&id).await.unwrap(), 0, "nothing written");
    store
        .append_upload(&id, 0, Bytes::from(blob(7, 10)))
        .await
        .unwrap();

    let big = MetaInfo::of_bytes(&blob(8, 11), Algorithm::Sha256, &lengths(16));
    let err = store.start_download(&big).await.unwrap_err();
    assert!(
        matches!(err, Error::StoreFull { needed: 11, .. }),
        "{err:?}"
    );
    assert!(is_not_found(&store.stat(big.digest()).await.unwrap_err()));

    assert_eq!(store.list().await.unwrap().len(), 2, "nothing evicted");
    assert_eq!(reader.read_at(0, 30).await.unwrap(), blob(6, 30));
    drop(reader);
    store.start_download(&big).await.unwrap();
    assert!(
        is_not_found(&store.stat(open.digest()).await.unwrap_err()),
        "evicted once closed"
    );
}

#[tokio::test]
async fn eviction_takes_least_recently_used_never_pinned_or_open() {
    let dir = TempDir::new().unwrap();
    let opts = DiskStoreOptions {
        capacity: ByteSize(100),
        ..options(dir.path())
    };
    let store = DiskStore::open(opts).await.unwrap();
    let mut metas = Vec::new();
    for seed in 10..14 {
        metas.push(put(&store, &blob(seed, 25), Algorithm::Sha256).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let [a, b, c, d] = [0, 1, 2, 3].map(|i| *metas[i].digest());
    store.pin(&a).await.unwrap();
    drop(store.open(&d).await.unwrap());
    tokio::time::sleep(Duration::from_millis(2)).await;
    let reader_b = store.open(&b).await.unwrap();

    put(&store, &blob(20, 25), Algorithm::Sha256).await;
    assert!(
        is_not_found(&store.stat(&c).await.unwrap_err()),
        "least recently used goes"
    );
    let c_dir = dir.path().join("cache/sha256").join(&c.hex()[..2]);
    assert!(walk(&c_dir).is_empty(), "its files too");
    for kept in [a, b, d] {
        store.stat(&kept).await.unwrap();
    }

    store.delete(&b).await.unwrap();
    assert_eq!(
        reader_b.read_at(5, 10).await.unwrap(),
        blob(11, 25)[5..15],
        "reader survives"
    );
    drop(reader_b);
    put(&store, &blob(21, 25), Algorithm::Sha256).await;
    put(&store, &blob(22, 25), Algorithm::Sha256).await;
    assert!(is_not_found(&store.stat(&d).await.unwrap_err()));
    assert!(
        store.stat(&a).await.unwrap().pinned,
        "pinned blob never evicted"
    );
}

#[tokio::test]
async fn lru_order_is_read_back_after_reopen() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let old = *put(&store, &blob(30, 40), Algorithm::Sha256).await.digest();
    let new = *put(&store, &blob(31, 40), Algorithm::Sha256).await.digest();
    drop(store);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (digest, age) in [(old, 1000), (new, 10)] {
        let hex = digest.hex();
        let path = dir
            .path()
            .join("cache/sha256")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(&hex);
        fs::write(path.join("access"), (now - age).to_be_bytes()).unwrap();
    }
    // Written in the other order, so the on-disk access times must win.
    let opts = DiskStoreOptions {
        capacity: ByteSize(100),
        ..options(dir.path())
    };
    let store = DiskStore::open(opts).await.unwrap();
    let old_access = store.stat(&old).await.unwrap().last_access;
    assert_eq!(old_access, UNIX_EPOCH + Duration::from_secs(now - 1000));
    put(&store, &blob(32, 40), Algorithm::Sha256).await;
    assert!(is_not_found(&store.stat(&old).await.unwrap_err()));
    store.stat(&new).await.unwrap();
}

#[tokio::test]
async fn sha512_blobs_work_end_to_end() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let data = blob(40, 77);
    let meta = put(&store, &data, Algorithm::Sha512).await;
    assert_eq!(meta.digest().algorithm(), Algorithm::Sha512);
    assert_eq!(read_all(&store, meta.digest()).await, data);
    assert!(
        walk(dir.path())
            .iter()
            .any(|p| p.to_string_lossy().contains("/cache/sha512/"))
    );

    let other = blob(41, 50);
    let dl = MetaInfo::of_bytes(&other, Algorithm::Sha512, &lengths(8));
    let d = *dl.digest();
    store.start_download(&dl).await.unwrap();
    for i in (0..dl.piece_count()).rev() {
        store
            .write_piece(&d, PieceIndex(i), piece(&dl, &other, i))
            .await
            .unwrap();
    }
    drop(store);
    let store = open(dir.path()).await;
    assert!(store.bitfield(&d).await.unwrap().is_complete());
    store.commit_download(&d).await.unwrap();
    assert_eq!(read_all(&store, &d).await, other);
    assert_eq!(store.metainfo(&d).await.unwrap(), dl);
}

#[tokio::test]
async fn zero_length_blob_works_both_ways() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let meta = MetaInfo::of_bytes(b"", Algorithm::Sha256, &lengths(16));
    let d = *meta.digest();
    assert_eq!(store.start_download(&meta).await.unwrap(), Bitfield::new(0));
    store.commit_download(&d).await.unwrap();
    let reader = store.open(&d).await.unwrap();
    assert!(reader.is_empty());
    assert_eq!(reader.read_at(0, 0).await.unwrap(), Bytes::new());
    let err = reader.read_at(0, 1).await.unwrap_err();
    assert!(matches!(
        err,
        Error::RangeNotSatisfiable {
            start: 0,
            end: 1,
            length: 0
        }
    ));
    drop(reader);

    store.delete(&d).await.unwrap();
    assert_eq!(put(&store, b"", Algorithm::Sha256).await, meta);
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(read_all(&store, &d).await, b"");
}

/// The directory of a blob in `area`, as the module documents the layout.
fn blob_dir(root: &Path, area: &str, d: &Digest) -> PathBuf {
    let hex = d.hex();
    root.join(area)
        .join(d.algorithm().name())
        .join(&hex[..2])
        .join(&hex[2..4])
        .join(hex)
}

#[tokio::test]
async fn damaged_state_on_disk_is_cleaned_not_trusted() {
    let parent = TempDir::new().unwrap();
    let root = parent.path().join("store");
    let outside = parent.path().join("outside");
    fs::write(&outside, b"not the store's").unwrap();
    let store = open(&root).await;
    let good = put(&store, &blob(50, 40), Algorithm::Sha256).await;
    let bad_meta = put(&store, &blob(51, 40), Algorithm::Sha256).await;
    let short = put(&store, &blob(52, 40), Algorithm::Sha256).await;
    let linked = put(&store, &blob(53, 40), Algorithm::Sha256).await;
    let wrong_name = put(&store, &blob(54, 40), Algorithm::Sha256).await;
    let garbage_bits = download(&store, &blob(55, 40), 8).await;
    let lying_bits = download(&store, &blob(56, 40), 8).await;
    let kept_data = blob(57, 40);
    let kept_bits = download(&store, &kept_data, 8).await;
    for i in [0, 3] {
        let p = piece(&kept_bits, &kept_data, i);
        store
            .write_piece(kept_bits.digest(), PieceIndex(i), p)
            .await
            .unwrap();
    }
    drop(store);

    let cache = |m: &MetaInfo| blob_dir(&root, "cache", m.digest());
    let dl = |m: &MetaInfo| blob_dir(&root, "download", m.digest());
    fs::write(cache(&bad_meta).join("meta"), b"KRMI\x01\x01 truncated").unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(cache(&short).join("data"))
        .unwrap()
        .set_len(39)
        .unwrap();
    fs::remove_file(cache(&linked).join("data")).unwrap();
    std::os::unix::fs::symlink(&outside, cache(&linked).join("data")).unwrap();
    fs::copy(cache(&good).join("meta"), cache(&wrong_name).join("meta")).unwrap();
    fs::write(
        dl(&garbage_bits).join("bitfield"),
        b"\xff\xff\xff\xff\xff\xff\xff",
    )
    .unwrap();
    fs::write(dl(&lying_bits).join("bitfield"), [0xf8]).unwrap();
    let junk = [
        root.join("cache/md5/ab/cd/abcd"),
        root.join("cache/sha256/zz/00/zz00"),
        root.join("download/sha256/ab/cd/not-a-digest"),
        root.join("upload/not-an-upload-id"),
        root.join("tmp/half-built"),
    ];
    for path in &junk {
        fs::create_dir_all(path).unwrap();
        fs::write(path.join("data"), b"junk").unwrap();
    }
    let misplaced = root.join("cache/sha256/00/00").join(good.digest().hex());
    fs::create_dir_all(&misplaced).unwrap();
    for name in ["data", "meta"] {
        fs::copy(cache(&good).join(name), misplaced.join(name)).unwrap();
    }
    fs::write(root.join("cache/sha256/stray-file"), b"junk").unwrap();
    fs::write(root.join("operator-notes.txt"), b"left alone").unwrap();

    let store = open(&root).await;
    assert_eq!(read_all(&store, good.digest()).await, blob(50, 40));
    for gone in [&bad_meta, &short, &linked, &wrong_name] {
        let err = store.stat(gone.digest()).await.unwrap_err();
        assert!(is_not_found(&err), "{gone:?} should be gone");
        assert!(!cache(gone).exists());
    }
    assert_eq!(
        store.bitfield(garbage_bits.digest()).await.unwrap().count(),
        0
    );
    assert_eq!(
        store.bitfield(lying_bits.digest()).await.unwrap().count(),
        0,
        "zeros fail hashes"
    );
    let kept = store.bitfield(kept_bits.digest()).await.unwrap();
    assert_eq!(
        kept.present().collect::<Vec<_>>(),
        [PieceIndex(0), PieceIndex(3)]
    );
    for path in junk.iter().chain([&misplaced]) {
        assert!(!path.exists(), "{} should be removed", path.display());
    }
    assert!(!root.join("cache/sha256/stray-file").exists());
    assert_eq!(
        fs::read(root.join("operator-notes.txt")).unwrap(),
        b"left alone"
    );
    assert_eq!(
        fs::read(&outside).unwrap(),
        b"not the store's",
        "symlink target untouched"
    );
    assert_eq!(store.list().await.unwrap().len(), 4);
}

#[tokio::test]
async fn invalid_options_are_rejected_at_open() {
    let dir = TempDir::new().unwrap();
    let opts = DiskStoreOptions {
        capacity: ByteSize(0),
        ..options(dir.path())
    };
    let Err(Error::Io(err)) = DiskStore::open(opts).await else {
        panic!("opened")
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn cleanup_removes_idle_and_abandoned_content_only() {
    let dir = TempDir::new().unwrap();
    let ttl = Duration::from_millis(400);
    let opts = DiskStoreOptions {
        cache_tti: ttl,
        download_ttl: ttl,
        upload_ttl: ttl,
        ..options(dir.path())
    };
    let store = DiskStore::open(opts).await.unwrap();
    let idle = put(&store, &blob(60, 30), Algorithm::Sha256).await;
    let pinned = put(&store, &blob(61, 30), Algorithm::Sha256).await;
    store.pin(pinned.digest()).await.unwrap();
    let open = put(&store, &blob(62, 30), Algorithm::Sha256).await;
    let reader = store.open(open.digest()).await.unwrap();
    let abandoned = download(&store, &blob(63, 30), 8).await;
    let upload = store.create_upload().await.unwrap();
    store
        .append_upload(&upload, 0, Bytes::from(blob(64, 30)))
        .await
        .unwrap();

    assert_eq!(
        store.cleanup().await.unwrap(),
        CleanupReport::default(),
        "nothing expired yet"
    );
    tokio::time::sleep(ttl * 2).await;
    let report = store.cleanup().await.unwrap();
    assert_eq!(
        report,
        CleanupReport {
            cached: 1,
            downloads: 1,
            uploads: 1,
            bytes: 90
        }
    );

    assert!(is_not_found(&store.stat(idle.digest()).await.unwrap_err()));
    assert!(is_not_found(
        &store.stat(abandoned.digest()).await.unwrap_err()
    ));
    assert!(matches!(
        store.upload_size(&upload).await,
        Err(Error::UploadNotFound(_))
    ));
    store.stat(pinned.digest()).await.unwrap();
    assert_eq!(reader.read_at(0, 30).await.unwrap(), blob(62, 30));
    drop(reader);
    let report = store.cleanup().await.unwrap();
    assert_eq!(report.cached, 1, "the open blob goes once closed");
    assert_eq!(store.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn cleanup_by_age_and_the_periodic_task() {
    let dir = TempDir::new().unwrap();
    let opts = DiskStoreOptions {
        cache_ttl: Duration::from_millis(30),
        cleanup_interval: Duration::from_millis(20),
        ..options(dir.path())
    };
    let store = Arc::new(DiskStore::open(opts).await.unwrap());
    let meta = put(&store, &blob(70, 30), Algorithm::Sha256).await;
    let task = Arc::clone(&store).spawn_cleanup();
    for _ in 0..100 {
        if store.stat(meta.digest()).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(is_not_found(&store.stat(meta.digest()).await.unwrap_err()));

    drop(task);
    let kept = put(&store, &blob(71, 30), Algorithm::Sha256).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    store
        .stat(kept.digest())
        .await
        .expect("no cleanup after the task is dropped");
}

/// Writes `pieces` of `data` from one task each, all at once.
async fn write_concurrently(store: &Arc<DiskStore>, meta: &MetaInfo, data: &[u8], pieces: &[u32]) {
    let tasks = pieces.iter().map(|&i| {
        let (store, digest, bytes) = (store.clone(), *meta.digest(), piece(meta, data, i));
        tokio::spawn(async move { store.write_piece(&digest, PieceIndex(i), bytes).await })
    });
    for result in futures::future::join_all(tasks.collect::<Vec<_>>()).await {
        result.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_piece_writes_to_one_blob() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(open(dir.path()).await);
    let data = blob(80, 5000);
    let meta = download(&store, &data, 16).await;
    let d = *meta.digest();
    let (first, rest): (Vec<u32>, Vec<u32>) = (0..meta.piece_count()).partition(|i| i % 3 != 1);
    // Every piece twice, so duplicates race too.
    write_concurrently(
        &store,
        &meta,
        &data,
        &[first.clone(), first.clone()].concat(),
    )
    .await;
    drop(Arc::into_inner(store).expect("all tasks done"));

    let store = Arc::new(open(dir.path()).await);
    let present: Vec<u32> = store
        .bitfield(&d)
        .await
        .unwrap()
        .present()
        .map(|i| i.0)
        .collect();
    assert_eq!(
        present, first,
        "every bit persisted though neighbours share bytes"
    );
    write_concurrently(&store, &meta, &data, &rest).await;
    store.commit_download(&d).await.unwrap();
    assert_eq!(read_all(&store, &d).await, data);
}

#[tokio::test]
async fn nothing_is_written_outside_the_root() {
    let parent = TempDir::new().unwrap();
    let root = parent.path().join("store");
    let opts = DiskStoreOptions {
        capacity: ByteSize(200),
        ..options(&root)
    };
    let store = DiskStore::open(opts.clone()).await.unwrap();
    for seed in 90..100 {
        put(&store, &blob(seed, 50), Algorithm::Sha256).await;
    }
    let data = blob(100, 50);
    let meta = download(&store, &data, 16).await;
    write_pieces(&store, &meta, &data, 0..meta.piece_count()).await;
    store.commit_download(meta.digest()).await.unwrap();
    store.pin(meta.digest()).await.unwrap();
    let id = store.create_upload().await.unwrap();
    store
        .append_upload(&id, 0, Bytes::from_static(b"partial"))
        .await
        .unwrap();
    let err = store
        .commit_upload(&id, meta.digest(), &lengths(16))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }));
    store.cleanup().await.unwrap();
    drop(store);
    DiskStore::open(opts).await.unwrap();

    let files = walk(parent.path());
    assert!(!files.is_empty());
    for file in files {
        assert!(
            file.starts_with(&root),
            "{} is outside the root",
            file.display()
        );
    }
}

#[tokio::test]
async fn a_second_store_on_the_same_root_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path()).await;
    let data = blob(7, 1000);
    let meta = put(&first, &data, Algorithm::Sha256).await;
    let Err(Error::Io(err)) = DiskStore::open(options(dir.path())).await else {
        panic!("a second store on one root must be refused");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert!(
        first.stat(meta.digest()).await.is_ok(),
        "the first store is untouched"
    );
    drop(first);
    let again = open(dir.path()).await;
    assert!(again.stat(meta.digest()).await.is_ok());
}

#[tokio::test]
async fn opening_a_file_as_root_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let Err(err) = DiskStore::open(options(&file)).await else {
        panic!("a file is no root");
    };
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// The whole-blob digest is taken over the verified prefix as pieces
/// arrive; pieces in any order still add up, and pieces that each match a
/// lying metainfo's hashes are still refused when their bytes do not add up
/// to its digest, also when every piece came in order.
#[tokio::test]
async fn a_download_hashed_as_it_arrives_still_checks_its_digest() {
    let dir = TempDir::new().unwrap();
    let store = open(dir.path()).await;
    let data = blob(61, 1000);
    let meta = download(&store, &data, 64).await;
    write_pieces(
        &store,
        &meta,
        &data,
        (0..meta.piece_count()).rev().filter(|i| i % 3 != 0),
    )
    .await;
    write_pieces(
        &store,
        &meta,
        &data,
        (0..meta.piece_count()).filter(|i| i % 3 == 0),
    )
    .await;
    store.commit_download(meta.digest()).await.unwrap();
    assert_eq!(read_all(&store, meta.digest()).await, data);

    let honest = blob(62, 1000);
    let mut other = honest.clone();
    other[999] ^= 0xff;
    let other_meta = MetaInfo::of_bytes(&other, Algorithm::Sha256, &lengths(64));
    let hashes = (0..other_meta.piece_count())
        .map(|i| *other_meta.piece_hash(PieceIndex(i)).unwrap())
        .collect();
    let claimed = Digest::sha256_of(&honest);
    let liar = MetaInfo::new(claimed, other.len() as u64, 64, hashes).unwrap();
    store.start_download(&liar).await.unwrap();
    write_pieces(&store, &liar, &other, 0..liar.piece_count()).await;
    let err = store.commit_download(&claimed).await.unwrap_err();
    let Error::DigestMismatch { expected, actual } = err else {
        panic!("{err:?}")
    };
    assert_eq!((expected, actual), (claimed, Digest::sha256_of(&other)));
    assert!(is_not_found(&store.stat(&claimed).await.unwrap_err()));
}
