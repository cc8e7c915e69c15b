//! Read, delete, pin and list checks of the blob store suite.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{PIECE, blob, expect_blob, piece, put, unknown_digest};
use crate::testkit::{assert_err, ok, random_bytes};
use crate::{BlobState, BlobStore, Digest, Error, MetaInfo, PieceIndex, Result, read_range};

pub(super) async fn suite(store: &dyn BlobStore) {
    reads(store).await;
    range_streams(store).await;
    delete(store).await;
    delete_keeps_readers(store).await;
    pins(store).await;
    list(store).await;
}

async fn reads(store: &dyn BlobStore) {
    let check = "blob_store_suite/read_at";
    let data = random_bytes(100);
    let meta = put(check, store, &data).await;
    let reader = ok(check, store.open(meta.digest()).await);
    for (offset, len) in [(0, 100), (10, 20), (99, 1), (100, 0), (0, 0)] {
        let got = ok(check, reader.read_at(offset, len).await);
        let expected = data.slice(offset as usize..offset as usize + len);
        assert_eq!(got, expected, "{check}: {len} bytes at {offset}");
    }
    for (offset, len) in [(95u64, 10usize), (100, 1), (200, 1)] {
        let result = reader.read_at(offset, len).await;
        let end = offset + len as u64;
        assert_err!(
            check,
            result,
            Error::RangeNotSatisfiable { start, end: e, length: 100 } if start == offset && e == end
        );
    }
}

async fn range_streams(store: &dyn BlobStore) {
    let check = "blob_store_suite/read_range";
    let data = random_bytes(100);
    let meta = put(check, store, &data).await;
    let reader = ok(check, store.open(meta.digest()).await);
    let (whole, error) = drain(read_range(reader.clone(), 10..90, 7)).await;
    assert!(error.is_none(), "{check}: 10..90 failed: {error:?}");
    assert_eq!(whole, data.slice(10..90), "{check}: bytes of 10..90");
    let (empty, error) = drain(read_range(reader.clone(), 5..5, 7)).await;
    assert!(
        empty.is_empty() && error.is_none(),
        "{check}: an empty range yields nothing"
    );

    for range in [90..110, 150..160] {
        let (got, error) = drain(read_range(reader.clone(), range.clone(), 7)).await;
        assert!(
            matches!(error, Some(Error::RangeNotSatisfiable { .. })),
            "{check}: {range:?} of 100 bytes must end in RangeNotSatisfiable, got {error:?}"
        );
        let start = range.start.min(100) as usize;
        assert!(
            data[start..].starts_with(&got),
            "{check}: {range:?} yielded wrong bytes first"
        );
    }
}

/// Collects a stream's bytes up to its first error, checking nothing
/// follows the error.
async fn drain(
    mut stream: futures::stream::BoxStream<'static, Result<Bytes>>,
) -> (Bytes, Option<Error>) {
    let mut data = BytesMut::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(e) => {
                let rest = stream.next().await;
                assert!(
                    rest.is_none(),
                    "blob_store_suite/read_range: items after an error"
                );
                return (data.freeze(), Some(e));
            }
        }
    }
    (data.freeze(), None)
}

async fn delete(store: &dyn BlobStore) {
    let check = "blob_store_suite/delete cached";
    let data = random_bytes(40);
    let meta = put(check, store, &data).await;
    let digest = meta.digest();
    ok(check, store.delete(digest).await);
    expect_gone(check, store, digest).await;
    assert_err!(check, store.delete(digest).await, Error::NotFound(_));
    put(&format!("{check}: store again after delete"), store, &data).await;
    expect_blob(check, store, digest, &data).await;

    let check = "blob_store_suite/delete download";
    let (data, meta) = blob(3 * PIECE as usize);
    start_partial(check, store, &meta, &data).await;
    ok(check, store.delete(meta.digest()).await);
    expect_gone(check, store, meta.digest()).await;
    let write = store
        .write_piece(meta.digest(), PieceIndex(1), piece(&meta, &data, 1))
        .await;
    assert_err!(check, write, Error::NotFound(_));

    let check = "blob_store_suite/delete unknown";
    let digest = unknown_digest();
    assert_err!(check, store.delete(&digest).await, Error::NotFound(d) if d == digest);
}

async fn expect_gone(check: &str, store: &dyn BlobStore, digest: &Digest) {
    assert_err!(check, store.stat(digest).await, Error::NotFound(_));
    assert_err!(check, store.open(digest).await, Error::NotFound(_));
    assert_err!(check, store.metainfo(digest).await, Error::NotFound(_));
    assert_err!(check, store.bitfield(digest).await, Error::NotFound(_));
}

/// Starts a download of `meta` holding only its first piece.
async fn start_partial(check: &str, store: &dyn BlobStore, meta: &MetaInfo, data: &Bytes) {
    ok(check, store.start_download(meta).await);
    ok(
        check,
        store
            .write_piece(meta.digest(), PieceIndex(0), piece(meta, data, 0))
            .await,
    );
}

async fn delete_keeps_readers(store: &dyn BlobStore) {
    let check = "blob_store_suite/reader outlives delete";
    let data = random_bytes(64);
    let meta = put(check, store, &data).await;
    let reader = ok(check, store.open(meta.digest()).await);
    ok(check, store.delete(meta.digest()).await);
    assert_err!(check, store.open(meta.digest()).await, Error::NotFound(_));
    let got = ok(check, reader.read_at(0, data.len()).await);
    assert_eq!(
        got, data,
        "{check}: an open reader still reads the deleted blob"
    );
}

async fn pins(store: &dyn BlobStore) {
    let check = "blob_store_suite/pin cached";
    let data = random_bytes(30);
    let meta = put(check, store, &data).await;
    pin_cycle(check, store, meta.digest()).await;

    let check = "blob_store_suite/pin download";
    let (data, meta) = blob(2 * PIECE as usize);
    start_partial(check, store, &meta, &data).await;
    pin_cycle(check, store, meta.digest()).await;

    let check = "blob_store_suite/pin unknown";
    let digest = unknown_digest();
    assert_err!(check, store.pin(&digest).await, Error::NotFound(_));
    assert_err!(check, store.unpin(&digest).await, Error::NotFound(_));
}

/// Pins twice, fails to delete, unpins twice, then deletes.
async fn pin_cycle(check: &str, store: &dyn BlobStore, digest: &Digest) {
    ok(check, store.pin(digest).await);
    ok(&format!("{check}: pin twice"), store.pin(digest).await);
    assert!(
        ok(check, store.stat(digest).await).pinned,
        "{check}: stat shows the pin"
    );
    assert_err!(check, store.delete(digest).await, Error::Pinned(d) if d == *digest);
    ok(
        &format!("{check}: pinned blob survives delete"),
        store.stat(digest).await,
    );
    ok(check, store.unpin(digest).await);
    ok(&format!("{check}: unpin twice"), store.unpin(digest).await);
    assert!(
        !ok(check, store.stat(digest).await).pinned,
        "{check}: stat shows no pin"
    );
    ok(
        &format!("{check}: delete after unpin"),
        store.delete(digest).await,
    );
}

async fn list(store: &dyn BlobStore) {
    let check = "blob_store_suite/list";
    let first = put(check, store, &random_bytes(10)).await;
    let second = put(check, store, &random_bytes(11)).await;
    let (data, partial) = blob(2 * PIECE as usize);
    start_partial(check, store, &partial, &data).await;

    let listed = ok(check, store.list().await);
    assert!(
        listed.windows(2).all(|w| w[0].digest < w[1].digest),
        "{check}: entries are not in strictly increasing digest order"
    );
    let state_of = |digest: &Digest| {
        let entry = listed.iter().find(|s| s.digest == *digest);
        entry.map(|s| (s.length, s.state))
    };
    assert_eq!(
        state_of(first.digest()),
        Some((10, BlobState::Cached)),
        "{check}: cached blob"
    );
    assert_eq!(
        state_of(second.digest()),
        Some((11, BlobState::Cached)),
        "{check}: cached blob"
    );
    let downloading = BlobState::Downloading { have: 1, pieces: 2 };
    assert_eq!(
        state_of(partial.digest()),
        Some((2 * PIECE, downloading)),
        "{check}: download in progress"
    );
}
