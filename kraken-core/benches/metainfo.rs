//! How fast kraken-rs turns a blob into its metainfo.
//!
//! Every blob an origin accepts is hashed twice in one pass: SHA-256 per
//! piece and the whole-blob digest. Three benchmarks separate the costs:
//!
//! - `piece_hashes`: SHA-256 over the default pieces on one thread, the floor set
//!   by the hash itself; compare it with `openssl speed -evp sha256`;
//! - `of_bytes`: [`MetaInfo::of_bytes`] on an in-memory blob, which runs the
//!   digest and the piece hashes on two threads;
//! - `from_file`: [`MetaInfo::from_file`] on a file already in the page
//!   cache, the path an origin takes after an upload lands on disk.
//!
//! `bench/metainfo.sh` runs this next to openssl and prints both.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use kraken_core::{Algorithm, MetaInfo, PieceLengths};
use sha2::{Digest as _, Sha256};

const BLOB_LEN: usize = 256 << 20;

/// The piece length the default table picks for the benchmark's blob.
fn piece_len() -> usize {
    PieceLengths::default().piece_length_for(BLOB_LEN as u64) as usize
}

/// Deterministic, incompressible-looking bytes; SHA-256 speed does not
/// depend on content, but a buffer of zeros could hide a lazy allocation.
fn blob() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut data = Vec::with_capacity(BLOB_LEN);
    while data.len() < BLOB_LEN {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data
}

/// Each iteration hashes 256 MiB, so a few flat samples are plenty.
fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(BLOB_LEN as u64));
    group
}

fn piece_hashes(c: &mut Criterion, data: &[u8]) {
    group(c, "metainfo").bench_function("piece_hashes", |b| {
        b.iter(|| {
            let hashes: Vec<[u8; 32]> = data
                .chunks(piece_len())
                .map(|p| Sha256::digest(p).into())
                .collect();
            black_box(hashes)
        })
    });
}

fn of_bytes(c: &mut Criterion, data: &[u8]) {
    let lengths = PieceLengths::default();
    group(c, "metainfo").bench_function("of_bytes", |b| {
        b.iter(|| MetaInfo::of_bytes(black_box(data), Algorithm::Sha256, &lengths))
    });
}

fn from_file(c: &mut Criterion, data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(data).expect("write blob");
    file.flush().expect("flush blob");
    let lengths = PieceLengths::default();
    // One untimed pass so the benchmark starts with the file in the page
    // cache and the result can be checked against the in-memory path.
    let expected = MetaInfo::of_bytes(data, Algorithm::Sha256, &lengths);
    let first = MetaInfo::from_file(file.path(), Algorithm::Sha256, &lengths).expect("hash file");
    assert_eq!(first, expected);

    group(c, "metainfo").bench_function("from_file", |b| {
        b.iter(|| MetaInfo::from_file(file.path(), Algorithm::Sha256, &lengths).expect("hash file"))
    });
}

fn main() {
    let data = blob();
    let mut c = Criterion::default().configure_from_args();
    piece_hashes(&mut c, &data);
    of_bytes(&mut c, &data);
    from_file(&mut c, &data);
    c.final_summary();
}
