//! Metainfo: the piece layout of a blob and the hash of every piece.
//!
//! Peers exchange a blob as pieces of `piece_length` bytes (the last may be
//! shorter) and check each against its SHA-256 before it counts, so a lying
//! peer is caught after one piece rather than after the whole blob. The
//! torrent's identity, its [`InfoHash`], is the SHA-256 of the canonical
//! binary encoding produced by [`MetaInfo::to_bytes`]; equal metainfo always
//! encodes to equal bytes.
//!
//! Generation reads the blob once and uses two threads: one computes the
//! blob's digest, the other the piece hashes, so both cores of a small host
//! hash at once.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::{Algorithm, Digest, InfoHash, PieceIndex};

/// The most pieces one blob may have; bounds decoding and allocation.
pub const MAX_PIECES: u32 = 1 << 20;

/// The largest piece length accepted.
pub const MAX_PIECE_LENGTH: u64 = 1 << 30;

const MAGIC: &[u8; 4] = b"KRMI";
const VERSION: u8 = 1;
const PIECE_HASH_LEN: usize = 32;

/// Why a metainfo could not be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaInfoError {
    /// The encoding ends before its declared content.
    #[error("metainfo is truncated")]
    Truncated,
    /// The encoding does not start with the metainfo magic.
    #[error("not a metainfo encoding (bad magic)")]
    BadMagic,
    /// The encoding has a version this build cannot read.
    #[error("unsupported metainfo version {0}")]
    UnsupportedVersion(u8),
    /// The digest algorithm code is unknown.
    #[error("unknown digest algorithm code {0}")]
    UnknownAlgorithm(u8),
    /// The piece length is zero or larger than [`MAX_PIECE_LENGTH`].
    #[error("piece length {0} is out of range (1 B to 1 GiB)")]
    BadPieceLength(u64),
    /// The blob would have more than [`MAX_PIECES`] pieces.
    #[error("blob of {length} bytes in pieces of {piece_length} has too many pieces")]
    TooManyPieces {
        /// Blob length in bytes.
        length: u64,
        /// Piece length in bytes.
        piece_length: u64,
    },
    /// The number of piece hashes does not match length and piece length.
    #[error("expected {expected} piece hashes, found {found}")]
    PieceCountMismatch {
        /// Pieces implied by the lengths.
        expected: u32,
        /// Hashes present.
        found: u32,
    },
    /// Bytes follow the last piece hash.
    #[error("metainfo has {0} trailing bytes")]
    TrailingBytes(usize),
}

/// The piece layout and piece hashes of one blob.
#[derive(Clone, PartialEq, Eq)]
pub struct MetaInfo {
    digest: Digest,
    length: u64,
    piece_length: u64,
    piece_hashes: Vec<[u8; PIECE_HASH_LEN]>,
    info_hash: InfoHash,
}

impl MetaInfo {
    /// Assembles a metainfo from its parts.
    ///
    /// # Errors
    ///
    /// When the piece length is out of range or the number of hashes does
    /// not fit the blob length.
    pub fn new(
        digest: Digest,
        length: u64,
        piece_length: u64,
        piece_hashes: Vec<[u8; 32]>,
    ) -> Result<Self, MetaInfoError> {
        let expected = piece_count(length, piece_length)?;
        let found = u32::try_from(piece_hashes.len()).unwrap_or(u32::MAX);
        if expected != found {
            return Err(MetaInfoError::PieceCountMismatch { expected, found });
        }
        let mut info = MetaInfo {
            digest,
            length,
            piece_length,
            piece_hashes,
            info_hash: InfoHash::from_bytes([0; 32]),
        };
        info.info_hash = InfoHash::from_bytes(sha2::Sha256::digest(info.to_bytes()).into());
        Ok(info)
    }

    /// Returns the digest of the whole blob.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Returns the blob's length in bytes.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Returns the length of every piece but the last.
    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    /// Returns the number of pieces; zero for an empty blob.
    pub fn piece_count(&self) -> u32 {
        self.piece_hashes.len() as u32
    }

    /// Returns the torrent identity: the SHA-256 of [`MetaInfo::to_bytes`].
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Returns the byte range piece `i` covers, or `None` past the last piece.
    pub fn piece_range(&self, i: PieceIndex) -> Option<Range<u64>> {
        if i.0 >= self.piece_count() {
            return None;
        }
        let start = u64::from(i.0) * self.piece_length;
        Some(start..(start + self.piece_length).min(self.length))
    }

    /// Returns the length of piece `i`, or `None` past the last piece.
    pub fn piece_len(&self, i: PieceIndex) -> Option<u64> {
        self.piece_range(i).map(|r| r.end - r.start)
    }

    /// Returns the SHA-256 of piece `i`, or `None` past the last piece.
    pub fn piece_hash(&self, i: PieceIndex) -> Option<&[u8; 32]> {
        self.piece_hashes.get(i.as_usize())
    }

    /// Returns true when `data` is exactly piece `i`: the right length and
    /// the right SHA-256.
    pub fn verify_piece(&self, i: PieceIndex, data: &[u8]) -> bool {
        match (self.piece_len(i), self.piece_hash(i)) {
            (Some(len), Some(hash)) => len == data.len() as u64 && &sha256(data) == hash,
            _ => false,
        }
    }

    /// Returns the pieces that hold the bytes of `range`, clamped to the
    /// blob; empty when the range is empty or starts past the end.
    pub fn pieces_for(&self, range: Range<u64>) -> Range<u32> {
        let end = range.end.min(self.length);
        if range.start >= end {
            return 0..0;
        }
        let first = range.start / self.piece_length;
        let last = (end - 1) / self.piece_length;
        first as u32..last as u32 + 1
    }

    /// Encodes the metainfo canonically.
    ///
    /// Layout, integers big-endian: magic `KRMI`, version byte (1), digest
    /// algorithm byte (1 = sha256, 2 = sha512), digest hash, length (u64),
    /// piece length (u64), piece count (u32), then 32 bytes per piece.
    pub fn to_bytes(&self) -> Vec<u8> {
        let hash = self.digest.as_bytes();
        let mut out =
            Vec::with_capacity(4 + 2 + hash.len() + 20 + self.piece_hashes.len() * PIECE_HASH_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.digest.algorithm().code());
        out.extend_from_slice(hash);
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&self.piece_length.to_be_bytes());
        out.extend_from_slice(&self.piece_count().to_be_bytes());
        for piece in &self.piece_hashes {
            out.extend_from_slice(piece);
        }
        out
    }

    /// Decodes the canonical encoding, checking every length first.
    ///
    /// # Errors
    ///
    /// A [`MetaInfoError`] for anything malformed; never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetaInfoError> {
        let mut r = ByteReader(bytes);
        if r.take(4)? != MAGIC {
            return Err(MetaInfoError::BadMagic);
        }
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(MetaInfoError::UnsupportedVersion(version));
        }
        let code = r.take(1)?[0];
        let algorithm = Algorithm::from_code(code).ok_or(MetaInfoError::UnknownAlgorithm(code))?;
        let digest = Digest::from_bytes(algorithm, r.take(algorithm.hash_len())?)
            .expect("took exactly the hash length");
        let length = r.u64()?;
        let piece_length = r.u64()?;
        let found = r.u32()?;
        let expected = piece_count(length, piece_length)?;
        if found != expected {
            return Err(MetaInfoError::PieceCountMismatch { expected, found });
        }
        let hashes = r.take(found as usize * PIECE_HASH_LEN)?;
        if !r.0.is_empty() {
            return Err(MetaInfoError::TrailingBytes(r.0.len()));
        }
        let piece_hashes = hashes
            .chunks_exact(PIECE_HASH_LEN)
            .map(|c| c.try_into().expect("exact chunk"))
            .collect();
        MetaInfo::new(digest, length, piece_length, piece_hashes)
    }

    /// Builds the metainfo of an in-memory blob, hashing the digest and the
    /// pieces on two threads.
    ///
    /// # Panics
    ///
    /// When `lengths` cuts the blob into more than [`MAX_PIECES`] pieces,
    /// which takes a table of tiny pieces meant for tests; use
    /// [`MetaInfo::try_of_bytes`] where the table comes from outside.
    pub fn of_bytes(data: &[u8], algorithm: Algorithm, lengths: &PieceLengths) -> Self {
        Self::try_of_bytes(data, algorithm, lengths).expect("piece count within MAX_PIECES")
    }

    /// Builds the metainfo of an in-memory blob, hashing the digest and the
    /// pieces on two threads.
    ///
    /// # Errors
    ///
    /// [`MetaInfoError::TooManyPieces`] when `lengths` cuts the blob into
    /// more than [`MAX_PIECES`] pieces.
    pub fn try_of_bytes(
        data: &[u8],
        algorithm: Algorithm,
        lengths: &PieceLengths,
    ) -> Result<Self, MetaInfoError> {
        let length = data.len() as u64;
        let piece_length = lengths.piece_length_for(length);
        piece_count(length, piece_length)?;
        let (digest, piece_hashes) = thread::scope(|s| {
            let whole = s.spawn(|| Digest::of(algorithm, data));
            let pieces = data.chunks(piece_length as usize).map(sha256).collect();
            (whole.join().expect("digest thread panicked"), pieces)
        });
        Self::new(digest, length, piece_length, piece_hashes)
    }

    /// Builds the metainfo of a file in one pass over a memory map.
    ///
    /// Blocking: call it from `spawn_blocking` in async code.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened, mapped or read, or the table cuts it
    /// into more than [`MAX_PIECES`] pieces.
    pub fn from_file(
        path: &Path,
        algorithm: Algorithm,
        lengths: &PieceLengths,
    ) -> io::Result<Self> {
        let file = File::open(path)?;
        let length = file.metadata()?.len();
        if length == 0 {
            return Ok(Self::of_bytes(&[], algorithm, lengths));
        }
        // SAFETY: the map is read-only and private to this call. Blobs are
        // written once and published by rename, so nothing writes to a file
        // while its metainfo is built; callers hash only files they own.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Self::try_of_bytes(&map, algorithm, lengths).map_err(io::Error::other)
    }

    /// Builds the metainfo of the `length` bytes `reader` yields, in one pass.
    ///
    /// Blocking: call it from `spawn_blocking` in async code.
    ///
    /// # Errors
    ///
    /// When reading fails, or with [`io::ErrorKind::InvalidData`] when the
    /// reader yields fewer or more than `length` bytes.
    pub fn from_reader(
        mut reader: impl Read,
        length: u64,
        algorithm: Algorithm,
        lengths: &PieceLengths,
    ) -> io::Result<Self> {
        let piece_length = lengths.piece_length_for(length);
        let count = piece_count(length, piece_length).map_err(io::Error::other)?;
        let mut whole = algorithm.hasher();
        let pieces = thread::scope(|s| -> io::Result<_> {
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
            let hasher = s.spawn(move || rx.into_iter().map(|p| sha256(&p)).collect::<Vec<_>>());
            let mut remaining = length;
            for _ in 0..count {
                let piece = read_piece(&mut reader, piece_length.min(remaining))?;
                remaining -= piece.len() as u64;
                whole.update(&piece);
                if tx.send(piece).is_err() {
                    break;
                }
            }
            drop(tx);
            Ok(hasher.join().expect("piece hasher panicked"))
        })?;
        if reader.read(&mut [0])? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "blob is longer than stated",
            ));
        }
        Self::new(whole.finish(), length, piece_length, pieces).map_err(io::Error::other)
    }
}

fn sha256(data: &[u8]) -> [u8; PIECE_HASH_LEN] {
    sha2::Sha256::digest(data).into()
}

fn read_piece(reader: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    let mut piece = Vec::with_capacity(len as usize);
    reader.take(len).read_to_end(&mut piece)?;
    if piece.len() as u64 != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "blob is shorter than stated",
        ));
    }
    Ok(piece)
}
fn piece_count(length: u64, piece_length: u64) -> Result<u32, MetaInfoError> {
    if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
        return Err(MetaInfoError::BadPieceLength(piece_length));
    }
    match u32::try_from(length.div_ceil(piece_length)) {
        Ok(n) if n <= MAX_PIECES => Ok(n),
        _ => Err(MetaInfoError::TooManyPieces {
            length,
            piece_length,
        }),
    }
}

struct ByteReader<'a>(&'a [u8]);

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MetaInfoError> {
        if self.0.len() < n {
            return Err(MetaInfoError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, MetaInfoError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, MetaInfoError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

impl std::fmt::Debug for MetaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaInfo")
            .field("digest", &self.digest)
            .field("length", &self.length)
            .field("piece_length", &self.piece_length)
            .field("pieces", &self.piece_count())
            .field("info_hash", &self.info_hash)
            .finish()
    }
}

/// The table that picks a piece length from a blob's size.
///
/// Each row maps a minimum blob size to a piece length; the row with the
/// largest minimum not above the blob's size wins.
///
/// What matters for a swarm is the piece *count*: a piece must arrive whole
/// before its receiver can pass it on, so each hop costs one piece's time,
/// and with few pieces that is a large share of the whole. Measured in
/// process (20 agents at 50 Mbit/s, a 200 MiB blob; `BENCHMARKS.md`), the
/// last agent reached 0.51 of line rate with 4 MiB pieces (50 pieces), 0.75
/// with 1 MiB, 0.90 with 256 KiB and 0.92 with 128 KiB. The default
/// therefore uses 128 KiB pieces up to 256 MiB and doubles the piece length
/// with each doubling of size after that: 1,024 to 2,048 pieces from
/// 128 MiB up to 128 GiB (64 MiB pieces), more beyond.
///
/// In config it is a map of human sizes: `{ "0" = "128KiB", "1GiB" = "1MiB" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<ByteSize, ByteSize>",
    into = "BTreeMap<ByteSize, ByteSize>"
)]
pub struct PieceLengths {
    rows: Vec<(u64, u64)>,
}

/// Why a piece length table is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceLengthsError {
    /// No row starts at size zero, so small blobs would have no length.
    #[error("piece length table needs a row for size 0")]
    NoZeroRow,
    /// A row's piece length is zero or above 1 GiB.
    #[error("piece length {0} is out of range (1 B to 1 GiB)")]
    BadLength(u64),
}

impl PieceLengths {
    /// Builds a table from `(minimum blob size, piece length)` rows.
    ///
    /// # Errors
    ///
    /// When no row starts at zero or a piece length is out of range.
    pub fn new(rows: impl IntoIterator<Item = (u64, u64)>) -> Result<Self, PieceLengthsError> {
        let mut rows: Vec<_> = rows.into_iter().collect();
        rows.sort_unstable();
        rows.dedup_by_key(|r| r.0);
        if rows.first().is_none_or(|r| r.0 != 0) {
            return Err(PieceLengthsError::NoZeroRow);
        }
        if let Some(&(_, bad)) = rows.iter().find(|r| r.1 == 0 || r.1 > MAX_PIECE_LENGTH) {
            return Err(PieceLengthsError::BadLength(bad));
        }
        Ok(PieceLengths { rows })
    }

    /// A table with one piece length for every size; handy in tests.
    pub fn fixed(piece_length: u64) -> Result<Self, PieceLengthsError> {
        Self::new([(0, piece_length)])
    }

    /// Returns the piece length for a blob of `size` bytes.
    pub fn piece_length_for(&self, size: u64) -> u64 {
        self.rows
            .iter()
            .rev()
            .find(|r| r.0 <= size)
            .expect("row for zero")
            .1
    }
}

impl Default for PieceLengths {
    fn default() -> Self {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        // 128 KiB pieces up to 256 MiB, then the piece length doubles with
        // the size: 1,024 to 2,048 pieces from 128 MiB to 128 GiB.
        let mut rows = vec![(0, 128 * KIB)];
        let mut size = 256 * MIB;
        while size <= 64 * GIB {
            rows.push((size, size / 1024));
            size *= 2;
        }
        PieceLengths::new(rows).expect("default table is valid")
    }
}

impl TryFrom<BTreeMap<ByteSize, ByteSize>> for PieceLengths {
    type Error = PieceLengthsError;

    fn try_from(map: BTreeMap<ByteSize, ByteSize>) -> Result<Self, Self::Error> {
        PieceLengths::new(map.into_iter().map(|(k, v)| (k.as_u64(), v.as_u64())))
    }
}

impl From<PieceLengths> for BTreeMap<ByteSize, ByteSize> {
    fn from(table: PieceLengths) -> Self {
        table
            .rows
            .into_iter()
            .map(|(k, v)| (ByteSize(k), ByteSize(v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn blob(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn layout_of_a_blob_with_a_short_last_piece() {
        let data = blob(10);
        let meta = MetaInfo::of_bytes(&data, Algorithm::Sha256, &PieceLengths::fixed(4).unwrap());
        assert_eq!(meta.digest(), &Digest::sha256_of(&data));
        assert_eq!(
            (meta.length(), meta.piece_length(), meta.piece_count()),
            (10, 4, 3)
        );
        assert_eq!(meta.piece_range(PieceIndex(2)), Some(8..10));
        assert_eq!(meta.piece_range(PieceIndex(3)), None);
        assert!(meta.verify_piece(PieceIndex(1), &data[4..8]));
        assert!(meta.verify_piece(PieceIndex(2), &data[8..]));
        assert!(
            !meta.verify_piece(PieceIndex(2), &data[8..9]),
            "short piece must fail"
        );
        assert!(
            !meta.verify_piece(PieceIndex(0), &data[4..8]),
            "wrong piece must fail"
        );
        assert!(!meta.verify_piece(PieceIndex(9), &data[..4]));
        assert_eq!(meta.pieces_for(3..9), 0..3);
        assert_eq!(meta.pieces_for(4..8), 1..2);
        assert_eq!(meta.pieces_for(9..100), 2..3);
        assert_eq!(meta.pieces_for(10..20), 0..0);
    }

    #[test]
    fn empty_blob_has_no_pieces() {
        let meta = MetaInfo::of_bytes(b"", Algorithm::Sha512, &PieceLengths::default());
        assert_eq!(meta.piece_count(), 0);
        assert_eq!(meta.digest(), &Digest::of(Algorithm::Sha512, b""));
        assert_eq!(MetaInfo::from_bytes(&meta.to_bytes()).unwrap(), meta);
    }

    #[test]
    fn reader_file_and_bytes_agree() {
        let data = blob(100_000);
        let lengths = PieceLengths::fixed(16 * 1024).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, &data).unwrap();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let from_bytes = MetaInfo::of_bytes(&data, algorithm, &lengths);
            let from_file = MetaInfo::from_file(&path, algorithm, &lengths).unwrap();
            assert_eq!(from_bytes, from_file);
            assert_eq!(from_bytes.info_hash(), from_file.info_hash());
        }
    }

    #[test]
    fn reader_with_wrong_length_is_invalid_data() {
        let data = blob(100);
        let lengths = PieceLengths::fixed(32).unwrap();
        for stated in [99, 101, 0, 64] {
            let err = MetaInfo::from_reader(&data[..], stated, Algorithm::Sha256, &lengths)
                .expect_err("length mismatch must fail");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "stated {stated}");
        }
    }

    #[test]
    fn default_table_keeps_piece_counts_low() {
        let table = PieceLengths::default();
        assert_eq!(table.piece_length_for(0), 128 << 10);
        assert_eq!(table.piece_length_for(300 << 20), 256 << 10);
        assert_eq!(table.piece_length_for(64 << 30), 64 << 20);
        for size in [
            128u64 << 20,
            200 << 20,
            1 << 30,
            10 << 30,
            100 << 30,
            (128 << 30) - 1,
        ] {
            let pieces = size.div_ceil(table.piece_length_for(size));
            assert!(
                (1024..=2048).contains(&pieces),
                "{size} bytes gives {pieces} pieces"
            );
        }
    }

    #[test]
    fn table_from_config_with_human_sizes() {
        let json = r#"{"0": "1MiB", "2GiB": "4MiB"}"#;
        let table: PieceLengths = serde_json::from_str(json).unwrap();
        assert_eq!(table.piece_length_for(2 << 30), 4 << 20);
        assert_eq!(table.piece_length_for((2 << 30) - 1), 1 << 20);
        assert!(serde_json::from_str::<PieceLengths>(r#"{"1MiB": "1MiB"}"#).is_err());
        assert!(serde_json::from_str::<PieceLengths>(r#"{"0": "0B"}"#).is_err());
    }

    #[test]
    fn decoding_rejects_malformed_encodings() {
        let meta = MetaInfo::of_bytes(
            &blob(50),
            Algorithm::Sha256,
            &PieceLengths::fixed(8).unwrap(),
        );
        let good = meta.to_bytes();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        assert_eq!(
            MetaInfo::from_bytes(&bad_magic),
            Err(MetaInfoError::BadMagic)
        );
        let mut bad_version = good.clone();
        bad_version[4] = 9;
        assert_eq!(
            MetaInfo::from_bytes(&bad_version),
            Err(MetaInfoError::UnsupportedVersion(9))
        );
        let mut bad_algorithm = good.clone();
        bad_algorithm[5] = 7;
        assert_eq!(
            MetaInfo::from_bytes(&bad_algorithm),
            Err(MetaInfoError::UnknownAlgorithm(7))
        );
        assert_eq!(
            MetaInfo::from_bytes(&good[..good.len() - 1]),
            Err(MetaInfoError::Truncated)
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            MetaInfo::from_bytes(&trailing),
            Err(MetaInfoError::TrailingBytes(1))
        );
        let count_at = 4 + 2 + 32 + 16;
        let mut huge_count = good.clone();
        huge_count[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            MetaInfo::from_bytes(&huge_count),
            Err(MetaInfoError::PieceCountMismatch { .. })
        ));
        let mut zero_piece = good;
        zero_piece[count_at - 8..count_at].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(
            MetaInfo::from_bytes(&zero_piece),
            Err(MetaInfoError::BadPieceLength(0))
        );
    }

    #[test]
    fn too_many_pieces_is_rejected() {
        let err = MetaInfo::new(Digest::sha256_of(b""), u64::MAX, 1, Vec::new()).unwrap_err();
        assert!(matches!(err, MetaInfoError::TooManyPieces { .. }));
    }

    proptest! {
        #[test]
        fn encoding_round_trips(len in 0usize..2000, piece in 1u64..300, sha512 in any::<bool>()) {
            let algorithm = if sha512 { Algorithm::Sha512 } else { Algorithm::Sha256 };
            let data = blob(len);
            let meta = MetaInfo::of_bytes(&data, algorithm, &PieceLengths::fixed(piece).unwrap());
            let bytes = meta.to_bytes();
            let decoded = MetaInfo::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&decoded, &meta);
            prop_assert_eq!(decoded.to_bytes(), bytes);
            let total: u64 = (0..meta.piece_count())
                .map(|i| meta.piece_len(PieceIndex(i)).unwrap())
                .sum();
            prop_assert_eq!(total, len as u64);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MetaInfo::from_bytes(&bytes);
        }

        #[test]
        fn info_hash_changes_with_any_field(len in 1usize..500, piece in 1u64..64) {
            let data = blob(len);
            let lengths = PieceLengths::fixed(piece).unwrap();
            let meta = MetaInfo::of_bytes(&data, Algorithm::Sha256, &lengths);
            let other = MetaInfo::of_bytes(&data, Algorithm::Sha256, &PieceLengths::fixed(piece + 1).unwrap());
            prop_assert_ne!(meta.info_hash(), other.info_hash());
            let mut changed = data;
            changed[0] ^= 1;
            prop_assert_ne!(meta.info_hash(), MetaInfo::of_bytes(&changed, Algorithm::Sha256, &lengths).info_hash());
        }
    }
}
