//! The behaviour suite every `BlobStore` implementation runs.
//!
//! Blobs are small and random, cut into pieces of a few bytes with
//! [`PieceLengths::fixed`], so every piece boundary case is cheap to reach
//! and no two runs share a digest. The one exception is the zero-length
//! blob, whose digest is the same everywhere.

mod download;
mod manage;
mod upload;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{ok, random_bytes};
use crate::{Algorithm, BlobStore, Digest, MetaInfo, PieceIndex, PieceLengths, read_range};

/// The piece length of the suite's blobs.
const PIECE: u64 = 16;

/// Checks `store` against the contract of [`BlobStore`].
///
/// - uploads: created empty; appended in chunks; a chunk at the wrong
///   offset fails with `UploadOffset` and writes nothing; commit returns
///   the metainfo [`MetaInfo::of_bytes`] builds, ends the upload and
///   publishes a cached blob; committing a digest already cached succeeds
///   and keeps the first metainfo; a wrong digest fails with
///   `DigestMismatch`, ends the upload and publishes nothing; abort ends an
///   upload; unknown ids fail with `UploadNotFound`;
/// - downloads: start with an empty bitfield and resume with the pieces
///   present; pieces land in any order; a piece of the wrong hash or length
///   fails with `PieceMismatch` and changes nothing; an index past the end
///   fails with `PieceOutOfRange`; rewriting a present piece succeeds;
///   present pieces are readable before the blob completes and missing ones
///   fail with `PieceMissing`; a downloading blob cannot be opened;
///   committing with pieces missing fails with `Incomplete`; pieces that
///   match their hashes but not the digest fail with `DigestMismatch` and
///   the download is discarded; a full commit publishes the blob; starting
///   a cached blob returns a full bitfield; a different metainfo for the
///   same digest fails with `MetaInfoConflict`; unknown digests fail with
///   `NotFound`;
/// - reads: `read_at` and [`read_range`] return the right bytes and fail
///   with `RangeNotSatisfiable` past the end;
/// - `stat` reports length, state and pin; `delete` removes cached blobs
///   and downloads, fails with `NotFound` for unknown ones and leaves open
///   readers working; pins block deletion with `Pinned`, pin and unpin are
///   idempotent, and both fail with `NotFound` for unknown digests;
/// - `list` holds every blob in digest order with its state;
/// - SHA-512 digests and zero-length blobs work end to end.
///
/// # Panics
///
/// On the first broken contract, with a message naming the check.
pub async fn blob_store_suite(store: Arc<dyn BlobStore>) {
    let store = store.as_ref();
    upload::suite(store).await;
    download::suite(store).await;
    manage::suite(store).await;
}

/// The piece length table of the suite's blobs.
fn lengths() -> PieceLengths {
    PieceLengths::fixed(PIECE).expect("valid piece length")
}

/// A random blob of `len` bytes and its SHA-256 metainfo.
fn blob(len: usize) -> (Bytes, MetaInfo) {
    blob_with(len, Algorithm::Sha256)
}

fn blob_with(len: usize, algorithm: Algorithm) -> (Bytes, MetaInfo) {
    let data = random_bytes(len);
    let meta = MetaInfo::of_bytes(&data, algorithm, &lengths());
    (data, meta)
}

/// A digest nothing in any store has.
fn unknown_digest() -> Digest {
    Digest::sha256_of(&random_bytes(32))
}

/// Returns the bytes of piece `i` of `data` under `meta`.
fn piece(meta: &MetaInfo, data: &Bytes, i: u32) -> Bytes {
    let range = meta.piece_range(PieceIndex(i)).expect("piece in range");
    data.slice(range.start as usize..range.end as usize)
}

/// Uploads `data` in one chunk and commits it under its SHA-256 digest.
async fn put(check: &str, store: &dyn BlobStore, data: &Bytes) -> MetaInfo {
    let digest = Digest::sha256_of(data);
    put_as(check, store, data, &digest).await
}

async fn put_as(check: &str, store: &dyn BlobStore, data: &Bytes, digest: &Digest) -> MetaInfo {
    let id = ok(check, store.create_upload().await);
    ok(check, store.append_upload(&id, 0, data.clone()).await);
    ok(check, store.commit_upload(&id, digest, &lengths()).await)
}

/// Downloads every piece of `data` and commits it.
async fn fetch(check: &str, store: &dyn BlobStore, meta: &MetaInfo, data: &Bytes) {
    ok(check, store.start_download(meta).await);
    for i in 0..meta.piece_count() {
        ok(
            check,
            store
                .write_piece(meta.digest(), PieceIndex(i), piece(meta, data, i))
                .await,
        );
    }
    ok(check, store.commit_download(meta.digest()).await);
}

/// Opens a cached blob and checks it reads back as `data`.
async fn expect_blob(check: &str, store: &dyn BlobStore, digest: &Digest, data: &Bytes) {
    let reader = ok(&format!("{check}: open"), store.open(digest).await);
    assert_eq!(reader.len(), data.len() as u64, "{check}: reader length");
    let mut stream = read_range(reader, 0..data.len() as u64, 5);
    let mut got = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&ok(&format!("{check}: read"), chunk));
    }
    assert!(
        got == data,
        "{check}: blob reads back other bytes than were stored"
    );
}
