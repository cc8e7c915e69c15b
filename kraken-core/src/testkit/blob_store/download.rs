//! Download checks of the blob store suite: pieces in any order, each
//! verified on write, the whole digest verified on commit.

use bytes::{Bytes, BytesMut};

use super::{PIECE, blob, blob_with, expect_blob, fetch, lengths, piece, unknown_digest};
use crate::testkit::{assert_err, ok};
use crate::{Algorithm, Bitfield, BlobState, BlobStore, Digest, Error, MetaInfo, PieceIndex};

pub(super) async fn suite(store: &dyn BlobStore) {
    lifecycle(store).await;
    unknown(store).await;
    digest_mismatch(store).await;
    sha512(store).await;
    zero_length(store).await;
}

async fn lifecycle(store: &dyn BlobStore) {
    let check = "blob_store_suite/download lifecycle";
    let (data, meta) = blob(5 * PIECE as usize + 7);
    let digest = meta.digest();
    let bitfield = ok(check, store.start_download(&meta).await);
    assert_eq!(
        bitfield,
        Bitfield::new(6),
        "{check}: a new download has no pieces"
    );
    expect_downloading(check, store, &meta, 0).await;
    assert_err!(check, store.open(digest).await, Error::NotFound(_));

    for i in [3, 0, 4] {
        ok(
            check,
            store
                .write_piece(digest, PieceIndex(i), piece(&meta, &data, i))
                .await,
        );
    }
    let partial = ok(check, store.bitfield(digest).await);
    let present: Vec<_> = partial.present().map(|i| i.0).collect();
    assert_eq!(
        present,
        [0, 3, 4],
        "{check}: bitfield after out-of-order writes"
    );
    expect_downloading(check, store, &meta, 3).await;

    bad_pieces(store, &meta, &data, &partial).await;
    partial_reads(store, &meta, &data).await;
    resume_and_conflict(store, &meta, &partial).await;
    finish(store, &meta, &data).await;
}

async fn expect_downloading(check: &str, store: &dyn BlobStore, meta: &MetaInfo, have: u32) {
    let stat = ok(check, store.stat(meta.digest()).await);
    let pieces = meta.piece_count();
    assert_eq!(
        stat.state,
        BlobState::Downloading { have, pieces },
        "{check}: stat state"
    );
    assert_eq!(stat.length, meta.length(), "{check}: stat length");
    assert_eq!(
        ok(check, store.metainfo(meta.digest()).await),
        *meta,
        "{check}: metainfo"
    );
}

/// Checks wrong pieces are refused and leave the bitfield as it was.
async fn bad_pieces(store: &dyn BlobStore, meta: &MetaInfo, data: &Bytes, before: &Bitfield) {
    let check = "blob_store_suite/bad piece";
    let digest = meta.digest();
    let good = piece(meta, data, 1);
    let mut flipped = BytesMut::from(&good[..]);
    flipped[7] ^= 0x01;
    let mut longer = BytesMut::from(&good[..]);
    longer.extend_from_slice(b"!");
    let mut padded_last = BytesMut::from(&piece(meta, data, 5)[..]);
    padded_last.resize(PIECE as usize, 0);
    let cases = [
        (1, flipped.freeze()),
        (1, longer.freeze()),
        (1, good.slice(..good.len() - 1)),
        (1, Bytes::new()),
        (2, good.clone()),
        (5, padded_last.freeze()),
        (5, good),
    ];
    for (i, bytes) in cases {
        let result = store.write_piece(digest, PieceIndex(i), bytes).await;
        assert_err!(
            check,
            result,
            Error::PieceMismatch { digest: d, index } if d == *digest && index == PieceIndex(i)
        );
    }
    for i in [6, 1000] {
        let result = store
            .write_piece(digest, PieceIndex(i), piece(meta, data, 0))
            .await;
        assert_err!(check, result, Error::PieceOutOfRange { index, .. } if index == PieceIndex(i));
    }
    let again = store
        .write_piece(digest, PieceIndex(3), piece(meta, data, 3))
        .await;
    ok(&format!("{check}: rewriting a present piece"), again);
    let after = ok(check, store.bitfield(digest).await);
    assert_eq!(
        after, *before,
        "{check}: refused pieces leave the bitfield unchanged"
    );
}

/// Checks present pieces are readable before the blob is complete.
async fn partial_reads(store: &dyn BlobStore, meta: &MetaInfo, data: &Bytes) {
    let check = "blob_store_suite/read piece of a partial download";
    let digest = meta.digest();
    for i in [0, 3, 4] {
        let got = ok(check, store.read_piece(digest, PieceIndex(i)).await);
        assert_eq!(got, piece(meta, data, i), "{check}: piece {i}");
    }
    for i in [1, 5] {
        let missing = store.read_piece(digest, PieceIndex(i)).await;
        assert_err!(check, missing, Error::PieceMissing { index, .. } if index == PieceIndex(i));
    }
    let past = store.read_piece(digest, PieceIndex(6)).await;
    assert_err!(check, past, Error::PieceOutOfRange { index, .. } if index == PieceIndex(6));
}

async fn resume_and_conflict(store: &dyn BlobStore, meta: &MetaInfo, partial: &Bitfield) {
    let check = "blob_store_suite/resume download";
    let resumed = ok(check, store.start_download(meta).await);
    assert_eq!(
        resumed, *partial,
        "{check}: start_download returns the pieces present"
    );
    let check = "blob_store_suite/metainfo conflict";
    let other = relayout(meta, PIECE * 2);
    let conflict = store.start_download(&other).await;
    assert_err!(check, conflict, Error::MetaInfoConflict(d) if d == *meta.digest());
    let still = ok(check, store.metainfo(meta.digest()).await);
    assert_eq!(
        still, *meta,
        "{check}: the conflicting metainfo changed nothing"
    );
}

/// Checks an incomplete commit is refused, then completes the download.
async fn finish(store: &dyn BlobStore, meta: &MetaInfo, data: &Bytes) {
    let check = "blob_store_suite/commit download";
    let digest = meta.digest();
    let early = store.commit_download(digest).await;
    assert_err!(check, early, Error::Incomplete { digest: d, missing: 3 } if d == *digest);
    expect_downloading(check, store, meta, 3).await;

    for i in [5, 1, 2] {
        ok(
            check,
            store
                .write_piece(digest, PieceIndex(i), piece(meta, data, i))
                .await,
        );
    }
    ok(check, store.commit_download(digest).await);
    ok(
        &format!("{check}: committing again"),
        store.commit_download(digest).await,
    );
    let stat = ok(check, store.stat(digest).await);
    assert_eq!(
        stat.state,
        BlobState::Cached,
        "{check}: committed blob is cached"
    );
    expect_blob(check, store, digest, data).await;
    let cached = ok(check, store.read_piece(digest, PieceIndex(5)).await);
    assert_eq!(
        cached,
        piece(meta, data, 5),
        "{check}: read piece of a cached blob"
    );

    let check = "blob_store_suite/start download of a cached blob";
    let full = ok(check, store.start_download(meta).await);
    assert_eq!(full, Bitfield::full(6), "{check}: full bitfield");
    assert_eq!(
        ok(check, store.stat(digest).await).state,
        BlobState::Cached,
        "{check}: unchanged"
    );
    let other = relayout(meta, PIECE * 2);
    assert_err!(
        check,
        store.start_download(&other).await,
        Error::MetaInfoConflict(_)
    );
}

/// Returns a metainfo of the same digest and length as `meta` but another
/// layout. Its piece hashes are dummies: a store must refuse it before any
/// piece arrives.
fn relayout(meta: &MetaInfo, piece_length: u64) -> MetaInfo {
    let count = meta.length().div_ceil(piece_length) as usize;
    MetaInfo::new(
        *meta.digest(),
        meta.length(),
        piece_length,
        vec![[0; 32]; count],
    )
    .expect("valid layout")
}

async fn unknown(store: &dyn BlobStore) {
    let check = "blob_store_suite/unknown digest";
    let digest = unknown_digest();
    let write = store
        .write_piece(&digest, PieceIndex(0), Bytes::from_static(b"x"))
        .await;
    assert_err!(check, write, Error::NotFound(d) if d == digest);
    assert_err!(check, store.bitfield(&digest).await, Error::NotFound(_));
    assert_err!(
        check,
        store.read_piece(&digest, PieceIndex(0)).await,
        Error::NotFound(_)
    );
    assert_err!(
        check,
        store.commit_download(&digest).await,
        Error::NotFound(_)
    );
    assert_err!(check, store.metainfo(&digest).await, Error::NotFound(_));
    assert_err!(check, store.open(&digest).await, Error::NotFound(_));
    assert_err!(check, store.stat(&digest).await, Error::NotFound(_));
}

/// Checks pieces that match their hashes but not the blob's digest are
/// never published.
async fn digest_mismatch(store: &dyn BlobStore) {
    let check = "blob_store_suite/download digest mismatch";
    let (data, real) = blob(3 * PIECE as usize);
    let hashes = (0..real.piece_count()).map(|i| *real.piece_hash(PieceIndex(i)).unwrap());
    let claimed = unknown_digest();
    let meta = MetaInfo::new(claimed, real.length(), PIECE, hashes.collect()).expect("valid");
    ok(check, store.start_download(&meta).await);
    for i in 0..meta.piece_count() {
        ok(
            check,
            store
                .write_piece(&claimed, PieceIndex(i), piece(&meta, &data, i))
                .await,
        );
    }
    let result = store.commit_download(&claimed).await;
    let actual_digest = Digest::sha256_of(&data);
    assert_err!(
        check,
        result,
        Error::DigestMismatch { expected, actual } if expected == claimed && actual == actual_digest
    );
    assert_err!(check, store.stat(&claimed).await, Error::NotFound(_));
    assert_err!(check, store.open(&claimed).await, Error::NotFound(_));
}

async fn sha512(store: &dyn BlobStore) {
    let check = "blob_store_suite/sha512 download";
    let (data, meta) = blob_with(3 * PIECE as usize + 1, Algorithm::Sha512);
    fetch(check, store, &meta, &data).await;
    assert_eq!(
        ok(check, store.metainfo(meta.digest()).await),
        meta,
        "{check}: metainfo"
    );
    expect_blob(check, store, meta.digest(), &data).await;
}

async fn zero_length(store: &dyn BlobStore) {
    let check = "blob_store_suite/zero-length download";
    let meta = MetaInfo::of_bytes(&[], Algorithm::Sha256, &lengths());
    // The upload checks cached the empty blob; remove it to take the
    // download path. A shared store may have pinned it: then only check
    // that starting it reports it complete.
    match store.delete(meta.digest()).await {
        Ok(()) | Err(Error::NotFound(_)) => {}
        Err(Error::Pinned(_)) => {
            let kept = ok(check, store.metainfo(meta.digest()).await);
            return expect_complete(check, store, &kept).await;
        }
        Err(e) => panic!("{check}: delete: {e:?}"),
    }
    expect_complete(check, store, &meta).await;
    ok(check, store.commit_download(meta.digest()).await);
    let stat = ok(check, store.stat(meta.digest()).await);
    assert_eq!(
        (stat.length, stat.state),
        (0, BlobState::Cached),
        "{check}: stat"
    );
    expect_blob(check, store, meta.digest(), &Bytes::new()).await;
}

async fn expect_complete(check: &str, store: &dyn BlobStore, meta: &MetaInfo) {
    let bitfield = ok(check, store.start_download(meta).await);
    assert!(
        bitfield.is_empty() && bitfield.is_complete(),
        "{check}: bitfield {bitfield:?}"
    );
}
