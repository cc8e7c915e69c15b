//! Holds `DiskStore` against an in-memory reference model over random
//! operation sequences, including closing and reopening the store in the
//! middle of uploads and downloads.
//!
//! The model is the contract of `BlobStore` written as plainly as
//! possible; every result, `Ok` value or error variant with its fields,
//! must match it. Capacity is large enough that eviction never happens
//! here: `disk_bad_input.rs` covers it with fixed scenarios.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tempfile::TempDir;

use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_core::{
    Algorithm, Bitfield, BlobState, BlobStore, Digest, Error, MetaInfo, PieceIndex, PieceLengths,
    Result, UploadId,
};

/// How a download's metainfo relates to the blob's real bytes.
const GOOD: usize = 0;
/// Same digest, another piece length: a conflicting but honest metainfo.
const ALT: usize = 1;
/// Same digest, piece hashes of other bytes: pieces verify, the digest won't.
const LIAR: usize = 2;

/// One blob of the test's pool and the metainfo variants a download of it
/// may be started with; `sources[v]` are the bytes whose pieces match
/// `metas[v]`.
#[derive(Debug)]
struct Blob {
    data: Vec<u8>,
    lengths: PieceLengths,
    metas: [MetaInfo; 3],
    sources: [Vec<u8>; 3],
}

impl Blob {
    fn new(algorithm: Algorithm, piece_length: u64, data: Vec<u8>) -> Blob {
        let lengths = PieceLengths::fixed(piece_length).unwrap();
        let good = MetaInfo::of_bytes(&data, algorithm, &lengths);
        let alt_lengths = PieceLengths::fixed(piece_length + 1).unwrap();
        let alt = MetaInfo::of_bytes(&data, algorithm, &alt_lengths);
        let mut other = data.clone();
        match other.last_mut() {
            Some(b) => *b ^= 0xff,
            None => other.push(0),
        }
        let other_meta = MetaInfo::of_bytes(&other, algorithm, &lengths);
        let hashes = (0..other_meta.piece_count())
            .map(|i| *other_meta.piece_hash(PieceIndex(i)).unwrap())
            .collect();
        let liar = MetaInfo::new(*good.digest(), other.len() as u64, piece_length, hashes).unwrap();
        Blob {
            sources: [data.clone(), data.clone(), other],
            data,
            lengths,
            metas: [good, alt, liar],
        }
    }

    fn digest(&self) -> Digest {
        *self.metas[GOOD].digest()
    }
}

#[derive(Debug, Clone, Copy)]
enum Corruption {
    Flip,
    Short,
    Long,
}

#[derive(Debug, Clone)]
enum Op {
    CreateUpload,
    Append {
        upload: usize,
        blob: usize,
        len: usize,
        junk: bool,
        delta: i8,
    },
    UploadSize {
        upload: usize,
    },
    CommitUpload {
        upload: usize,
        blob: usize,
    },
    AbortUpload {
        upload: usize,
    },
    StartDownload {
        blob: usize,
        variant: usize,
    },
    WritePiece {
        blob: usize,
        piece: u32,
        corrupt: Option<Corruption>,
    },
    WriteAll {
        blob: usize,
    },
    ReadPiece {
        blob: usize,
        piece: u32,
    },
    Bitfield {
        blob: usize,
    },
    CommitDownload {
        blob: usize,
    },
    Read {
        blob: usize,
        offset: u16,
        len: u16,
    },
    Stat {
        blob: usize,
    },
    MetaInfo {
        blob: usize,
    },
    Delete {
        blob: usize,
    },
    Pin {
        blob: usize,
    },
    Unpin {
        blob: usize,
    },
    List,
    Reopen,
}

/// The model's view of one blob.
#[derive(Debug, Clone)]
struct Entry {
    variant: usize,
    cached: bool,
    have: Bitfield,
    pinned: bool,
}

#[derive(Debug, Default)]
struct Model {
    blobs: BTreeMap<usize, Entry>,
    uploads: HashMap<UploadId, Vec<u8>>,
}

struct Harness {
    dir: TempDir,
    store: Option<DiskStore>,
    pool: Vec<Blob>,
    model: Model,
    ids: Vec<UploadId>,
    unknown: UploadId,
}

fn pick(pool: &[Blob], k: usize) -> (usize, &Blob) {
    let b = k % pool.len();
    (b, &pool[b])
}

fn not_found(blob: &Blob) -> Error {
    Error::NotFound(blob.digest())
}

/// Compares results by value, and errors by their debug form, which
/// includes the variant and all its fields.
fn check<T: Debug + PartialEq>(op: &Op, actual: Result<T>, expected: Result<T>) {
    match (actual, expected) {
        (Ok(a), Ok(e)) => assert_eq!(a, e, "{op:?}: values differ"),
        (Err(a), Err(e)) => assert_eq!(format!("{a:?}"), format!("{e:?}"), "{op:?}"),
        (a, e) => panic!("{op:?}: store returned {a:?}, model {e:?}"),
    }
}

impl Harness {
    async fn new(pool: Vec<Blob>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(options(&dir)).await.unwrap();
        let unknown = UploadId::random();
        Harness {
            dir,
            store: Some(store),
            pool,
            model: Model::default(),
            ids: vec![],
            unknown,
        }
    }

    fn store(&self) -> &DiskStore {
        self.store.as_ref().unwrap()
    }

    fn upload_id(&self, k: usize) -> UploadId {
        match self.ids.len() {
            0 => self.unknown.clone(),
            n => self.ids[k % n].clone(),
        }
    }

    fn meta_of(&self, b: usize) -> Option<&MetaInfo> {
        self.model
            .blobs
            .get(&b)
            .map(|e| &self.pool[b].metas[e.variant])
    }

    async fn apply(&mut self, op: &Op) {
        match *op {
            Op::CreateUpload => {
                let id = self.store().create_upload().await.unwrap();
                assert!(!self.model.uploads.contains_key(&id), "upload id reused");
                self.model.uploads.insert(id.clone(), Vec::new());
                self.ids.push(id);
            }
            Op::Append {
                upload,
                blob,
                len,
                junk,
                delta,
            } => self.append(op, upload, blob, len, junk, delta).await,
            Op::UploadSize { upload } => {
                let id = self.upload_id(upload);
                let expected = self.model.uploads.get(&id).map(|u| u.len() as u64);
                let expected = expected.ok_or(Error::UploadNotFound(id.clone()));
                check(op, self.store().upload_size(&id).await, expected);
            }
            Op::CommitUpload { upload, blob } => self.commit_upload(op, upload, blob).await,
            Op::AbortUpload { upload } => {
                let id = self.upload_id(upload);
                let expected = match self.model.uploads.remove(&id) {
                    Some(_) => Ok(()),
                    None => Err(Error::UploadNotFound(id.clone())),
                };
                check(op, self.store().abort_upload(&id).await, expected);
            }
            Op::StartDownload { blob, variant } => self.start_download(op, blob, variant).await,
            Op::WritePiece {
                blob,
                piece,
                corrupt,
            } => self.write_piece(op, blob, piece, corrupt).await,
            Op::WriteAll { blob } => {
                let (b, _) = pick(&self.pool, blob);
                let count = self.meta_of(b).map_or(0, MetaInfo::piece_count);
                for i in 0..count {
                    self.write_piece(op, blob, i, None).await;
                }
            }
            Op::ReadPiece { blob, piece } => self.read_piece(op, blob, piece).await,
            Op::Bitfield { blob } => {
                let (b, pool) = pick(&self.pool, blob);
                let expected = match self.model.blobs.get(&b) {
                    Some(e) => Ok(e.have.clone()),
                    None => Err(not_found(pool)),
                };
                check(op, self.store().bitfield(&pool.digest()).await, expected);
            }
            Op::CommitDownload { blob } => self.commit_download(op, blob).await,
            Op::Read { blob, offset, len } => self.read(op, blob, offset, len).await,
            Op::Stat { blob } => {
                let (b, pool) = pick(&self.pool, blob);
                let actual = self
                    .store()
                    .stat(&pool.digest())
                    .await
                    .map(|s| (s.digest, s.length, s.state, s.pinned));
                check(op, actual, self.model_stat(b).ok_or(not_found(pool)));
            }
            Op::MetaInfo { blob } => {
                let (b, pool) = pick(&self.pool, blob);
                let expected = self.meta_of(b).cloned().ok_or(not_found(pool));
                check(op, self.store().metainfo(&pool.digest()).await, expected);
            }
            Op::Delete { blob } => {
                let (b, pool) = pick(&self.pool, blob);
                let expected = match self.model.blobs.get(&b) {
                    None => Err(not_found(pool)),
                    Some(e) if e.pinned => Err(Error::Pinned(pool.digest())),
                    Some(_) => Ok(()),
                };
                if expected.is_ok() {
                    self.model.blobs.remove(&b);
                }
                check(op, self.store().delete(&pool.digest()).await, expected);
            }
            Op::Pin { blob } => self.set_pin(op, blob, true).await,
            Op::Unpin { blob } => self.set_pin(op, blob, false).await,
            Op::List => {
                let actual = self.store().list().await.map(|list| {
                    list.into_iter()
                        .map(|s| (s.digest, s.length, s.state, s.pinned))
                        .collect()
                });
                let mut expected: Vec<_> = self
                    .model
                    .blobs
                    .keys()
                    .filter_map(|&b| self.model_stat(b))
                    .collect();
                expected.sort_by_key(|s| s.0);
                check(op, actual, Ok(expected));
            }
            Op::Reopen => {
                drop(self.store.take());
                self.store = Some(DiskStore::open(options(&self.dir)).await.unwrap());
            }
        }
    }

    fn model_stat(&self, b: usize) -> Option<(Digest, u64, BlobState, bool)> {
        let e = self.model.blobs.get(&b)?;
        let meta = &self.pool[b].metas[e.variant];
        let state = if e.cached {
            BlobState::Cached
        } else {
            BlobState::Downloading {
                have: e.have.count(),
                pieces: e.have.len(),
            }
        };
        Some((*meta.digest(), meta.length(), state, e.pinned))
    }

    async fn append(
        &mut self,
        op: &Op,
        upload: usize,
        blob: usize,
        len: usize,
        junk: bool,
        delta: i8,
    ) {
        let id = self.upload_id(upload);
        let (_, pool) = pick(&self.pool, blob);
        let size = self.model.uploads.get(&id).map_or(0, Vec::len);
        let data: Vec<u8> = if junk {
            vec![0xa5; len % 7 + 1]
        } else {
            pool.data.iter().skip(size).take(len).copied().collect()
        };
        let offset = (size as i64 + i64::from(delta)).max(0) as u64;
        let expected = match self.model.uploads.get_mut(&id) {
            None => Err(Error::UploadNotFound(id.clone())),
            Some(u) if offset != u.len() as u64 => Err(Error::UploadOffset {
                expected: u.len() as u64,
                actual: offset,
            }),
            Some(u) => {
                u.extend_from_slice(&data);
                Ok(u.len() as u64)
            }
        };
        let actual = self
            .store()
            .append_upload(&id, offset, Bytes::from(data))
            .await;
        check(op, actual, expected);
    }

    async fn commit_upload(&mut self, op: &Op, upload: usize, blob: usize) {
        let id = self.upload_id(upload);
        let (b, pool) = pick(&self.pool, blob);
        let (digest, lengths) = (pool.digest(), pool.lengths.clone());
        let expected = match self.model.uploads.remove(&id) {
            None => Err(Error::UploadNotFound(id.clone())),
            Some(bytes) => {
                let actual = Digest::of(digest.algorithm(), &bytes);
                if actual != digest {
                    Err(Error::DigestMismatch {
                        expected: digest,
                        actual,
                    })
                } else {
                    Ok(self.model_publish_upload(b))
                }
            }
        };
        let actual = self.store().commit_upload(&id, &digest, &lengths).await;
        check(op, actual, expected);
    }

    /// A verified upload replaces a download of the same digest, keeping
    /// its pin, and leaves a cached blob as it is.
    fn model_publish_upload(&mut self, b: usize) -> MetaInfo {
        let count = self.pool[b].metas[GOOD].piece_count();
        let entry = self.model.blobs.entry(b).or_insert(Entry {
            variant: GOOD,
            cached: true,
            have: Bitfield::full(count),
            pinned: false,
        });
        if !entry.cached {
            *entry = Entry {
                variant: GOOD,
                cached: true,
                have: Bitfield::full(count),
                ..*entry
            };
        }
        self.pool[b].metas[entry.variant].clone()
    }

    async fn start_download(&mut self, op: &Op, blob: usize, variant: usize) {
        let (b, pool) = pick(&self.pool, blob);
        let meta = pool.metas[variant].clone();
        let expected = match self.model.blobs.get(&b) {
            Some(e) if e.variant != variant => Err(Error::MetaInfoConflict(pool.digest())),
            Some(e) => Ok(e.have.clone()),
            None => {
                let have = Bitfield::new(meta.piece_count());
                let entry = Entry {
                    variant,
                    cached: false,
                    have: have.clone(),
                    pinned: false,
                };
                self.model.blobs.insert(b, entry);
                Ok(have)
            }
        };
        check(op, self.store().start_download(&meta).await, expected);
    }

    async fn write_piece(&mut self, op: &Op, blob: usize, piece: u32, corrupt: Option<Corruption>) {
        let (b, pool) = pick(&self.pool, blob);
        let digest = pool.digest();
        let Some(entry) = self.model.blobs.get_mut(&b) else {
            let actual = self
                .store()
                .write_piece(&digest, PieceIndex(0), Bytes::new())
                .await;
            return check(op, actual, Err(Error::NotFound(digest)));
        };
        let meta = &pool.metas[entry.variant];
        let i = PieceIndex(piece % (meta.piece_count() + 2));
        let mut data = match meta.piece_range(i) {
            Some(r) => pool.sources[entry.variant][r.start as usize..r.end as usize].to_vec(),
            None => vec![1, 2, 3],
        };
        match corrupt {
            Some(Corruption::Flip) => data[0] ^= 1,
            Some(Corruption::Short) => drop(data.pop()),
            Some(Corruption::Long) => data.push(7),
            None => {}
        }
        let expected = if i.0 >= meta.piece_count() {
            Err(Error::PieceOutOfRange { digest, index: i })
        } else if entry.cached || entry.have.has(i) {
            Ok(())
        } else if corrupt.is_some() {
            Err(Error::PieceMismatch { digest, index: i })
        } else {
            entry.have.set(i);
            Ok(())
        };
        check(
            op,
            self.store()
                .write_piece(&digest, i, Bytes::from(data))
                .await,
            expected,
        );
    }

    async fn read_piece(&mut self, op: &Op, blob: usize, piece: u32) {
        let (b, pool) = pick(&self.pool, blob);
        let digest = pool.digest();
        let (i, expected) = match self.model.blobs.get(&b) {
            None => (PieceIndex(piece), Err(Error::NotFound(digest))),
            Some(e) => {
                let meta = &pool.metas[e.variant];
                let i = PieceIndex(piece % (meta.piece_count() + 2));
                let expected = match meta.piece_range(i) {
                    None => Err(Error::PieceOutOfRange { digest, index: i }),
                    Some(_) if !e.have.has(i) => Err(Error::PieceMissing { digest, index: i }),
                    Some(r) => Ok(Bytes::copy_from_slice(
                        &pool.sources[e.variant][r.start as usize..r.end as usize],
                    )),
                };
                (i, expected)
            }
        };
        check(op, self.store().read_piece(&digest, i).await, expected);
    }

    async fn commit_download(&mut self, op: &Op, blob: usize) {
        let (b, pool) = pick(&self.pool, blob);
        let digest = pool.digest();
        let expected = match self.model.blobs.get_mut(&b) {
            None => Err(Error::NotFound(digest)),
            Some(e) if e.cached => Ok(()),
            Some(e) if !e.have.is_complete() => Err(Error::Incomplete {
                digest,
                missing: e.have.len() - e.have.count(),
            }),
            Some(e) if e.variant == LIAR => {
                let actual = Digest::of(digest.algorithm(), &pool.sources[LIAR]);
                self.model.blobs.remove(&b);
                Err(Error::DigestMismatch {
                    expected: digest,
                    actual,
                })
            }
            Some(e) => {
                e.cached = true;
                Ok(())
            }
        };
        check(op, self.store().commit_download(&digest).await, expected);
    }

    async fn read(&mut self, op: &Op, blob: usize, offset: u16, len: u16) {
        let (b, pool) = pick(&self.pool, blob);
        let digest = pool.digest();
        let entry = self.model.blobs.get(&b).filter(|e| e.cached);
        let Some(entry) = entry else {
            let actual = self.store().open(&digest).await.map(|_| ());
            return check(op, actual, Err(Error::NotFound(digest)));
        };
        let length = pool.metas[entry.variant].length();
        let offset = u64::from(offset) % (length + 4);
        let len = u64::from(len) % (length + 4);
        let end = offset + len;
        let expected = if end > length {
            Err(Error::RangeNotSatisfiable {
                start: offset,
                end,
                length,
            })
        } else {
            Ok(Bytes::copy_from_slice(
                &pool.data[offset as usize..end as usize],
            ))
        };
        let reader = self.store().open(&digest).await.unwrap();
        assert_eq!(reader.len(), length, "{op:?}");
        check(op, reader.read_at(offset, len as usize).await, expected);
    }

    async fn set_pin(&mut self, op: &Op, blob: usize, pinned: bool) {
        let (b, pool) = pick(&self.pool, blob);
        let digest = pool.digest();
        let expected = match self.model.blobs.get_mut(&b) {
            None => Err(Error::NotFound(digest)),
            Some(e) => {
                e.pinned = pinned;
                Ok(())
            }
        };
        let actual = match pinned {
            true => self.store().pin(&digest).await,
            false => self.store().unpin(&digest).await,
        };
        check(op, actual, expected);
    }
}

fn options(dir: &TempDir) -> DiskStoreOptions {
    DiskStoreOptions {
        capacity: bytesize::ByteSize::gib(1),
        max_blocking: 4,
        ..DiskStoreOptions::new(dir.path().join("store"))
    }
}

/// Three distinct blobs of 0 to 300 bytes, each with its own algorithm and
/// piece length.
fn pool() -> impl Strategy<Value = Vec<Blob>> {
    let blob = (
        any::<bool>(),
        1u64..=64,
        proptest::collection::vec(any::<u8>(), 0..=300),
    );
    proptest::collection::vec(blob, 3).prop_map(|specs| {
        let mut pool: Vec<Blob> = Vec::new();
        for (i, (sha512, piece_length, mut data)) in specs.into_iter().enumerate() {
            if pool.iter().any(|b| b.data == data) {
                data.push(i as u8);
            }
            let algorithm = if sha512 {
                Algorithm::Sha512
            } else {
                Algorithm::Sha256
            };
            pool.push(Blob::new(algorithm, piece_length, data));
        }
        pool
    })
}

fn op() -> impl Strategy<Value = Op> {
    let k = || 0usize..8;
    let corruption = prop_oneof![
        Just(Corruption::Flip),
        Just(Corruption::Short),
        Just(Corruption::Long)
    ];
    let variant = prop_oneof![6 => Just(GOOD), 1 => Just(ALT), 2 => Just(LIAR)];
    let delta = prop_oneof![6 => Just(0i8), 1 => -3i8..=3];
    prop_oneof![
        3 => Just(Op::CreateUpload),
        6 => (k(), k(), 0usize..=400, proptest::bool::weighted(0.1), delta).prop_map(
            |(upload, blob, len, junk, delta)| Op::Append { upload, blob, len, junk, delta }
        ),
        1 => k().prop_map(|upload| Op::UploadSize { upload }),
        4 => (k(), k()).prop_map(|(upload, blob)| Op::CommitUpload { upload, blob }),
        1 => k().prop_map(|upload| Op::AbortUpload { upload }),
        5 => (k(), variant).prop_map(|(blob, variant)| Op::StartDownload { blob, variant }),
        8 => (k(), any::<u32>(), proptest::option::weighted(0.2, corruption))
            .prop_map(|(blob, piece, corrupt)| Op::WritePiece { blob, piece, corrupt }),
        2 => k().prop_map(|blob| Op::WriteAll { blob }),
        3 => (k(), any::<u32>()).prop_map(|(blob, piece)| Op::ReadPiece { blob, piece }),
        1 => k().prop_map(|blob| Op::Bitfield { blob }),
        4 => k().prop_map(|blob| Op::CommitDownload { blob }),
        3 => (k(), any::<u16>(), any::<u16>())
            .prop_map(|(blob, offset, len)| Op::Read { blob, offset, len }),
        2 => k().prop_map(|blob| Op::Stat { blob }),
        1 => k().prop_map(|blob| Op::MetaInfo { blob }),
        2 => k().prop_map(|blob| Op::Delete { blob }),
        2 => k().prop_map(|blob| Op::Pin { blob }),
        2 => k().prop_map(|blob| Op::Unpin { blob }),
        1 => Just(Op::List),
        3 => Just(Op::Reopen),
    ]
}

async fn run(pool: Vec<Blob>, ops: Vec<Op>) {
    let mut harness = Harness::new(pool).await;
    for op in &ops {
        harness.apply(op).await;
    }
    harness.apply(&Op::List).await;
    harness.apply(&Op::Reopen).await;
    harness.apply(&Op::List).await;
}

proptest! {
    // Failures are recorded next to the crate's other regressions; cargo
    // runs integration tests from the package root.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(
            FileFailurePersistence::Direct("proptest-regressions/disk_model.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn disk_store_matches_model(pool in pool(), ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(pool, ops));
    }
}
