//! Behaviour suites for the four extension traits, and the test doubles
//! their users need.
//!
//! Every implementation of [`Backend`](crate::Backend),
//! [`BlobStore`](crate::BlobStore), [`PeerStore`](crate::PeerStore) and
//! [`Scheduler`](crate::Scheduler), in this workspace or in a plugin, runs
//! the matching suite in its tests. The suites check the contracts written
//! on the traits and nothing more, so a backend written next year is held
//! to the same rules as the first one, and a contract change shows up as a
//! suite change that every implementation must pass.
//!
//! Each suite is an `async fn` that panics with a message naming the
//! failed check, such as `backend_suite/ranged download: ...`. The suites
//! draw random namespaces, names, info hashes and content on every run, so
//! they can run against shared servers (a real S3 bucket, a Redis) without
//! cleaning up between runs or colliding with each other.
//!
//! The doubles are [`MemoryBackend`], a complete in-memory `Backend`, and
//! [`FaultyBackend`], which wraps any backend to inject outages, errors,
//! latency and lying downloads while counting calls; [`temp_disk_store`]
//! opens a throwaway [`DiskStore`] for tests that need a local store.
//!
//! The suites use real time (`tokio::time::sleep` and `timeout`): run them
//! on a runtime with time enabled and not paused, since external stores
//! such as Redis expire entries by the wall clock.

mod backend;
mod blob_store;
mod faulty;
mod memory;
mod peer_store;
mod scheduler;

pub use backend::backend_suite;
pub use blob_store::blob_store_suite;
pub use faulty::{DownloadFault, Faults, FaultyBackend, Operation};
pub use memory::MemoryBackend;
pub use peer_store::peer_store_suite;
pub use scheduler::{SchedulerHarness, scheduler_suite};

use std::sync::Arc;

use bytes::Bytes;
use rand::Rng;

use crate::Namespace;
use crate::disk::{DiskStore, DiskStoreOptions};

/// Opens a [`DiskStore`] with default options in a fresh temporary
/// directory, for tests that need a real local store, such as a
/// [`SchedulerHarness`]. The directory is removed when the returned guard
/// drops, so keep it as long as the store.
///
/// # Panics
///
/// When the directory or the store cannot be created.
pub async fn temp_disk_store() -> (tempfile::TempDir, Arc<DiskStore>) {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = DiskStore::open(DiskStoreOptions::new(dir.path())).await;
    (dir, Arc::new(store.expect("open a disk store")))
}

/// Returns `len` random bytes, so blobs of different runs never share a
/// digest.
fn random_bytes(len: usize) -> Bytes {
    let mut data = vec![0; len];
    rand::rng().fill(&mut data[..]);
    Bytes::from(data)
}

/// Returns a short random lowercase hex token for names and namespaces.
fn token() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// Returns a namespace no other run uses, under a recognisable prefix.
fn random_namespace(label: &str) -> Namespace {
    Namespace::new(format!("testkit-{label}-{}", token())).expect("valid namespace")
}

/// Fails the calling check unless `$result` is an `Err` matching `$pat`.
///
/// The first argument is the check's label, used as the panic message's
/// prefix.
macro_rules! assert_err {
    ($check:expr, $result:expr, $pat:pat $(if $guard:expr)?) => {
        match $result {
            Err($pat) $(if $guard)? => {}
            other => panic!(
                "{}: expected Err({}), got {:?}",
                $check,
                stringify!($pat $(if $guard)?),
                other
            ),
        }
    };
}
pub(crate) use assert_err;

/// Unwraps `result`, or fails `check` with the error.
#[track_caller]
fn ok<T, E: std::fmt::Debug>(check: &str, result: Result<T, E>) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{check}: unexpected error: {e:?}"),
    }
}
