#![cfg(feature = "testkit")]
//! Runs the `BlobStore` behaviour suite from the testkit against a fresh
//! `DiskStore`. Needs `cargo test -p kraken-core --features testkit`.

use std::sync::Arc;

use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_core::testkit::blob_store_suite;

#[tokio::test]
async fn disk_store_passes_the_blob_store_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = DiskStore::open(DiskStoreOptions::new(dir.path()))
        .await
        .unwrap();
    blob_store_suite(Arc::new(store)).await;
}
