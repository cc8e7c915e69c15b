//! `DiskStore`, the default [`BlobStore`]: blobs as files under one root
//! directory, with a byte-capacity LRU and time-based cleanup.
//!
//! # Layout
//!
//! ```text
//! <root>/
//!   cache/<alg>/<hex[0..2]>/<hex[2..4]>/<hex>/     complete, verified blobs
//!       data       the blob
//!       meta       its metainfo, `MetaInfo::to_bytes`
//!       pinned     present when pinned (empty file)
//!       access     last access, 8 big-endian bytes of Unix seconds
//!   download/<alg>/<hex[0..2]>/<hex[2..4]>/<hex>/  blobs arriving piece by piece
//!       data       sparse file of the blob's full length
//!       meta       the metainfo the pieces are checked against
//!       bitfield   packed bitfield of the pieces written
//!       pinned, access   as above
//!   upload/<upload id>/data                         bytes a client is pushing
//!   tmp/                                            scratch, emptied at open
//! ```
//!
//! `<alg>` is `sha256` or `sha512`. Every path is built from a validated
//! [`Digest`] or [`UploadId`], never from other input, and the store
//! touches nothing under the root but these four directories.
//!
//! # Crash safety
//!
//! An entry becomes visible in `cache/` only by renaming a whole directory
//! whose data was verified against the digest and synced first, so after a
//! crash at any point `cache/` holds complete blobs or nothing. New
//! downloads are built in `tmp/` and renamed into `download/`; removals
//! rename into `tmp/` before deleting. At open the store rebuilds its index
//! from the disk, trusting nothing: entries that do not parse are removed,
//! and each piece a download's bitfield claims is re-read and checked
//! against its hash, so a restart resumes with only the missing pieces.
//!
//! Uploads survive a restart with the bytes they hold, so a client can ask
//! for the upload's size and carry on; `upload_ttl` removes those nobody
//! returns to.
//!
//! # Limitations
//!
//! Cached blobs are not re-hashed at open; a blob damaged on disk after it
//! was verified is served as is. A root is locked (`<root>/lock`) while a
//! store has it open, so a second store on the same root, in this process
//! or another, is refused rather than left to clear the first one's files.

mod cleanup;
mod index;
mod layout;
mod ops;
mod options;
mod reader;
mod recover;

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::{
    Bitfield, BlobReader, BlobStat, BlobStore, Digest, Error, MetaInfo, PieceIndex, PieceLengths,
    Result, UploadId,
};
pub use cleanup::CleanupReport;
use index::Gates;
use layout::Layout;
use ops::{Inner, live, stat_of};
pub use options::{DiskStoreOptions, DiskStoreOptionsError};

/// A [`BlobStore`] that keeps blobs in files under one root directory.
///
/// Filesystem work runs on tokio's blocking pool, at most
/// `max_blocking` operations at a time. Cached blobs are read through a
/// memory map, so reads copy nothing.
pub struct DiskStore {
    inner: Arc<Inner>,
    blocking: Arc<Semaphore>,
}

impl DiskStore {
    /// Opens the store at `options.root`, creating it when missing, and
    /// rebuilds its index from what is on disk.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] of kind `InvalidInput` wrapping a
    /// [`DiskStoreOptionsError`] when the options do not validate;
    /// [`Error::Io`] when the root cannot be created or read, and of kind
    /// `WouldBlock` when another store has it open; each names the root.
    pub async fn open(options: DiskStoreOptions) -> Result<Self> {
        options
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let layout = Layout::new(&options.root);
        let scan = layout.clone();
        let (index, lock) = tokio::task::spawn_blocking(move || recover::recover(&scan))
            .await
            .map_err(io::Error::other)?
            .map_err(|e| in_root(&options.root, &e))?;
        let capacity = options.capacity.as_u64();
        info!(
            root = %options.root.display(),
            blobs = index.blobs.len(),
            uploads = index.uploads.len(),
            used = index.used,
            capacity,
            "disk store opened"
        );
        if index.used > capacity {
            warn!(
                used = index.used,
                capacity, "store holds more than its capacity"
            );
        }
        let blocking = Arc::new(Semaphore::new(options.max_blocking));
        let inner = Inner {
            _lock: lock,
            options,
            layout,
            index: Mutex::new(index),
            gates: Gates::default(),
        };
        Ok(DiskStore {
            inner: Arc::new(inner),
            blocking,
        })
    }

    /// Returns the options the store was opened with.
    pub fn options(&self) -> &DiskStoreOptions {
        &self.inner.options
    }

    /// Runs one cleanup pass: removes cached blobs idle past `cache_tti` or
    /// older than `cache_ttl`, downloads without a piece written for
    /// `download_ttl` and uploads without an append for `upload_ttl`.
    /// Pinned blobs, open blobs and anything an operation is using are
    /// skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the blocking task fails; files that cannot be
    /// removed are logged and skipped.
    pub async fn cleanup(&self) -> Result<CleanupReport> {
        let report = self.run(|inner| Ok(inner.cleanup())).await?;
        if report.is_empty() {
            debug!("cleanup removed nothing");
        } else {
            let CleanupReport {
                cached,
                downloads,
                uploads,
                bytes,
            } = report;
            info!(
                cached,
                downloads, uploads, bytes, "cleanup removed expired content"
            );
        }
        Ok(report)
    }

    /// Starts a task that runs [`cleanup`](Self::cleanup) every
    /// `cleanup_interval`, first one interval from now. The task stops when
    /// the returned handle is dropped or the store is.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn_cleanup(self: Arc<Self>) -> CleanupTask {
        let period = self.inner.options.cleanup_interval;
        let store = Arc::downgrade(&self);
        drop(self);
        let handle = tokio::spawn(cleanup_loop(store, period));
        CleanupTask { handle }
    }

    /// Runs `op` on the blocking pool once a permit is free. The permit and
    /// everything `op` captures stay with it until it ends, even when the
    /// caller stops waiting.
    async fn run<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.blocking)
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let inner = Arc::clone(&self.inner);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            op(&inner)
        });
        task.await.map_err(io::Error::other)?
    }

    fn entry<T>(&self, digest: &Digest, f: impl FnOnce(&index::Entry) -> T) -> Result<T> {
        let index = self.inner.index();
        index
            .blobs
            .get(digest)
            .map(f)
            .ok_or(Error::NotFound(*digest))
    }
}

async fn cleanup_loop(store: Weak<DiskStore>, period: std::time::Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else { return };
        if let Err(error) = store.cleanup().await {
            warn!(%error, "cleanup pass failed");
        }
    }
}

/// The periodic cleanup started by [`DiskStore::spawn_cleanup`]; dropping
/// it stops the task.
#[derive(Debug)]
pub struct CleanupTask {
    handle: JoinHandle<()>,
}

impl Drop for CleanupTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStore")
            .field("root", &self.inner.options.root)
            .field("capacity", &self.inner.options.capacity)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl BlobStore for DiskStore {
    async fn create_upload(&self) -> Result<UploadId> {
        self.run(|inner| inner.create_upload()).await
    }

    async fn append_upload(&self, id: &UploadId, offset: u64, data: Bytes) -> Result<u64> {
        let mut upload = self.inner.upload(id)?.lock_owned().await;
        let id = id.clone();
        self.run(move |inner| inner.append_upload(&id, &mut upload, offset, &data))
            .await
    }

    async fn upload_size(&self, id: &UploadId) -> Result<u64> {
        let upload = self.inner.upload(id)?;
        let upload = upload.lock().await;
        live(id, &upload)?;
        Ok(upload.size)
    }

    async fn commit_upload(
        &self,
        id: &UploadId,
        digest: &Digest,
        lengths: &PieceLengths,
    ) -> Result<MetaInfo> {
        let upload = self.inner.upload(id)?.lock_owned().await;
        let (hash_id, digest, lengths) = (id.clone(), *digest, lengths.clone());
        let (upload, meta) = self
            .run(move |inner| {
                let mut upload = upload;
                let meta = inner.hash_upload(&hash_id, &mut upload, &digest, &lengths)?;
                Ok((upload, meta))
            })
            .await?;
        let gate = self.inner.gates.write(&digest).await;
        let id = id.clone();
        self.run(move |inner| {
            let (_gate, mut upload) = (gate, upload);
            inner.publish_upload(&id, &mut upload, meta)
        })
        .await
    }

    async fn abort_upload(&self, id: &UploadId) -> Result<()> {
        let mut upload = self.inner.upload(id)?.lock_owned().await;
        let id = id.clone();
        self.run(move |inner| inner.abort_upload(&id, &mut upload))
            .await
    }

    async fn start_download(&self, meta: &MetaInfo) -> Result<Bitfield> {
        let gate = self.inner.gates.write(meta.digest()).await;
        let meta = meta.clone();
        self.run(move |inner| {
            let _gate = gate;
            inner.start_download(&meta)
        })
        .await
    }

    async fn write_piece(&self, digest: &Digest, index: PieceIndex, data: Bytes) -> Result<()> {
        let gate = self.inner.gates.read(digest).await;
        let digest = *digest;
        self.run(move |inner| {
            let _gate = gate;
            inner.write_piece(&digest, index, &data)
        })
        .await
    }

    async fn bitfield(&self, digest: &Digest) -> Result<Bitfield> {
        self.entry(digest, index::Entry::bitfield)
    }

    async fn read_piece(&self, digest: &Digest, index: PieceIndex) -> Result<Bytes> {
        let gate = self.inner.gates.read(digest).await;
        let digest = *digest;
        self.run(move |inner| {
            let _gate = gate;
            inner.read_piece(&digest, index)
        })
        .await
    }

    async fn commit_download(&self, digest: &Digest) -> Result<()> {
        let digest = *digest;
        // The hash runs outside the gate; only the publish excludes readers.
        let checked = self.run(move |inner| inner.check_download(&digest)).await;
        let gate = self.inner.gates.write(&digest).await;
        self.run(move |inner| {
            let _gate = gate;
            match checked {
                Ok(Some(files)) => inner.commit_checked(&digest, &files),
                Ok(None) => Ok(()),
                Err(Error::DigestMismatch { expected, actual }) => {
                    inner.discard_mismatch(&expected, &actual);
                    Err(Error::DigestMismatch { expected, actual })
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    async fn metainfo(&self, digest: &Digest) -> Result<MetaInfo> {
        self.entry(digest, |e| (*e.meta).clone())
    }

    async fn open(&self, digest: &Digest) -> Result<Arc<dyn BlobReader>> {
        let gate = self.inner.gates.read(digest).await;
        let digest = *digest;
        let reader = self
            .run(move |inner| {
                let _gate = gate;
                inner.open(&digest)
            })
            .await?;
        Ok(Arc::new(reader))
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        self.entry(digest, |e| stat_of(digest, e))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        let gate = self.inner.gates.write(digest).await;
        let digest = *digest;
        self.run(move |inner| {
            let _gate = gate;
            inner.delete(&digest)
        })
        .await
    }

    async fn pin(&self, digest: &Digest) -> Result<()> {
        self.set_pinned(digest, true).await
    }

    async fn unpin(&self, digest: &Digest) -> Result<()> {
        self.set_pinned(digest, false).await
    }

    async fn list(&self) -> Result<Vec<BlobStat>> {
        let index = self.inner.index();
        Ok(index.blobs.iter().map(|(d, e)| stat_of(d, e)).collect())
    }
}

impl DiskStore {
    async fn set_pinned(&self, digest: &Digest, pinned: bool) -> Result<()> {
        let gate = self.inner.gates.write(digest).await;
        let digest = *digest;
        self.run(move |inner| {
            let _gate = gate;
            inner.set_pinned(&digest, pinned)
        })
        .await
    }
}

/// Names the store's root in an error from opening it.
fn in_root(root: &std::path::Path, e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("disk store at {}: {e}", root.display()))
}
