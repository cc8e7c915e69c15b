//! The durable write-back queue: blobs an origin committed that the backend
//! must receive.
//!
//! Each job (namespace, digest) is a row of a [`DurableQueue`] written
//! before the upload is acknowledged, so a crash or restart never loses
//! one. A blob stays pinned in the store while any job for it is pending,
//! so eviction cannot take the only copy before the backend has it. Jobs
//! are retried until the backend holds the blob, or until the store no
//! longer does (then nothing is left to write, which is logged as an
//! error).

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use kraken_core::{Backend, BlobStore, Digest, Error, Namespace, Result, read_range};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::queue::{Database, DurableQueue, Job, Outcome, QueueConfig, Task, Worker};

/// The table of the origin's database that holds the queue.
const TABLE: &str = "writeback";

/// Bytes read from the store per chunk of a backend upload.
const UPLOAD_CHUNK: usize = 1024 * 1024;

/// Write-back concurrency and retries.
pub type WriteBackConfig = QueueConfig;

/// One blob the backend must receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBackJob {
    /// Where the blob goes in the backend.
    pub namespace: Namespace,
    /// The blob.
    pub digest: Digest,
}

impl Job for WriteBackJob {
    /// `"<digest> <namespace>"`, so a blob's jobs sort together.
    fn key(&self) -> String {
        format!("{} {}", self.digest, self.namespace)
    }
}

/// A pending write-back and its retry state.
pub type WriteBackTask = Task<WriteBackJob>;

/// The queue. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct WriteBack {
    queue: DurableQueue<WriteBackJob>,
    uploader: Arc<Uploader>,
}

/// Runs write-back jobs: uploads a blob unless the backend has it, and
/// unpins it once no namespace waits for it.
#[derive(Debug)]
struct Uploader {
    store: Arc<dyn BlobStore>,
    backend: Arc<dyn Backend>,
    queue: DurableQueue<WriteBackJob>,
}

impl WriteBack {
    /// Opens (or creates) the queue in the database at `path` and pins
    /// every blob it still holds jobs for.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the config does not validate; `Io` when the
    /// database cannot be opened or read (another process holding it, a
    /// corrupt file).
    pub async fn open(
        path: &Path,
        config: WriteBackConfig,
        store: Arc<dyn BlobStore>,
        backend: Arc<dyn Backend>,
    ) -> Result<WriteBack> {
        config
            .validate("writeback")
            .map_err(|m| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, m)))?;
        let db = Database::open(path).await?;
        let queue: DurableQueue<WriteBackJob> = DurableQueue::open(&db, TABLE, config).await?;
        let digests: HashSet<Digest> = queue.pending().iter().map(|t| t.job.digest).collect();
        for digest in &digests {
            match store.pin(digest).await {
                Ok(()) => {}
                Err(Error::NotFound(_)) => {
                    tracing::error!(%digest, "blob pending write-back is gone from the store");
                }
                Err(e) => return Err(e),
            }
        }
        let uploader = Arc::new(Uploader {
            store,
            backend,
            queue: queue.clone(),
        });
        Ok(WriteBack { queue, uploader })
    }

    /// Queues `digest` for the backend under `namespace`, first attempt
    /// after `delay`, and pins the blob. Queuing a pending job again only
    /// brings its next attempt forward when `delay` ends sooner.
    ///
    /// Returns once the job is on disk.
    ///
    /// # Errors
    ///
    /// `Io` when the database cannot be written; `NotFound` when the store
    /// lacks the blob (the job is then not kept).
    pub async fn enqueue(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        delay: Duration,
    ) -> Result<()> {
        self.uploader.store.pin(digest).await?;
        let job = WriteBackJob {
            namespace: namespace.clone(),
            digest: *digest,
        };
        self.queue.push(job, delay).await
    }

    /// Every pending job, ordered by digest.
    pub fn pending(&self) -> Vec<WriteBackTask> {
        self.queue.pending()
    }

    /// Pending jobs.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether any job for `digest` is pending.
    pub fn is_pending(&self, digest: &Digest) -> bool {
        self.queue.has_prefix(&format!("{digest} "))
    }

    /// Runs the workers until `shutdown` is cancelled; attempts in flight
    /// finish first.
    pub fn start(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        self.queue.start(self.uploader.clone(), shutdown)
    }

    /// Attempts every pending job once now, whatever its backoff, and
    /// returns how many remain.
    pub async fn flush(&self) -> usize {
        self.queue.flush(&*self.uploader).await
    }
}

#[async_trait]
impl Worker<WriteBackJob> for Uploader {
    async fn run(&self, job: &WriteBackJob) -> Result<Outcome> {
        let name = job.digest.to_string();
        let stat = match self.store.stat(&job.digest).await {
            Ok(stat) => stat,
            Err(Error::NotFound(_)) => {
                return Ok(Outcome::Abandon(
                    "blob left the store before it reached the backend".into(),
                ));
            }
            Err(e) => return Err(e),
        };
        match self.backend.stat(&job.namespace, &name).await {
            Ok(info) if info.size == stat.length => {
                return Ok(Outcome::Done("already in the backend"));
            }
            Ok(_) | Err(_) => {}
        }
        let reader = self.store.open(&job.digest).await?;
        let length = reader.len();
        let body = read_range(reader, 0..length, UPLOAD_CHUNK)
            .map_err(io::Error::other)
            .boxed();
        self.backend
            .upload(&job.namespace, &name, length, body)
            .await?;
        Ok(Outcome::Done("uploaded"))
    }

    /// Unpins the blob unless another namespace still waits for it.
    async fn finished(&self, job: &WriteBackJob) {
        if self.queue.has_prefix(&format!("{} ", job.digest)) {
            return;
        }
        match self.store.unpin(&job.digest).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(digest = %job.digest, error = %e, "cannot unpin a written-back blob")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kraken_core::disk::{DiskStore, DiskStoreOptions};
    use kraken_core::testkit::{FaultyBackend, MemoryBackend};
    use kraken_core::{BlobState, PieceLengths};

    use crate::queue::Worker;

    use super::*;

    fn ns() -> Namespace {
        Namespace::new("library/app").unwrap()
    }

    fn fast() -> WriteBackConfig {
        WriteBackConfig {
            workers: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            poll_interval: Duration::from_millis(10),
        }
    }

    async fn disk_store(dir: &tempfile::TempDir) -> Arc<dyn BlobStore> {
        Arc::new(
            DiskStore::open(DiskStoreOptions::new(dir.path().join("store")))
                .await
                .unwrap(),
        )
    }

    async fn cached(store: &Arc<dyn BlobStore>, data: &'static [u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let id = store.create_upload().await.unwrap();
        store
            .append_upload(&id, 0, Bytes::from_static(data))
            .await
            .unwrap();
        store
            .commit_upload(&id, &digest, &PieceLengths::default())
            .await
            .unwrap();
        digest
    }

    async fn pinned(store: &Arc<dyn BlobStore>, digest: &Digest) -> bool {
        store.stat(digest).await.unwrap().pinned
    }

    #[tokio::test]
    async fn a_task_uploads_unpins_and_leaves_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let store = disk_store(&dir).await;
        let backend = Arc::new(MemoryBackend::new());
        let digest = cached(&store, b"write me back").await;
        let queue = WriteBack::open(
            &dir.path().join("q.redb"),
            fast(),
            store.clone(),
            backend.clone(),
        )
        .await
        .unwrap();
        queue.enqueue(&ns(), &digest, Duration::ZERO).await.unwrap();
        queue.enqueue(&ns(), &digest, Duration::ZERO).await.unwrap();
        assert_eq!(queue.len(), 1);
        assert!(queue.is_pending(&digest));
        assert!(pinned(&store, &digest).await);
        assert_eq!(queue.flush().await, 0);
        assert!(!pinned(&store, &digest).await);
        assert_eq!(
            backend.stat(&ns(), &digest.to_string()).await.unwrap().size,
            13
        );
        assert!(queue.is_empty());
        assert_eq!(store.stat(&digest).await.unwrap().state, BlobState::Cached);
    }

    #[tokio::test]
    async fn failures_back_off_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let store = disk_store(&dir).await;
        let memory = Arc::new(MemoryBackend::new());
        let (faulty, faults) = FaultyBackend::wrap(memory.clone());
        faults.set_outage(true);
        let digest = cached(&store, b"pending while the backend is down").await;
        {
            let queue = WriteBack::open(&path, fast(), store.clone(), faulty.clone())
                .await
                .unwrap();
            queue.enqueue(&ns(), &digest, Duration::ZERO).await.unwrap();
            assert_eq!(queue.flush().await, 1);
            let task = &queue.pending()[0];
            assert_eq!(task.attempts, 1);
            assert!(task.last_error.is_some());
        }
        // As after a restart: a fresh store pin state and a new queue.
        store.unpin(&digest).await.unwrap();
        faults.set_outage(false);
        let queue = WriteBack::open(&path, fast(), store.clone(), faulty.clone())
            .await
            .unwrap();
        assert_eq!(queue.len(), 1);
        assert!(pinned(&store, &digest).await, "reopening pins again");
        let stop = CancellationToken::new();
        let task = queue.start(stop.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !queue.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "write-back never landed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert!(memory.stat(&ns(), &digest.to_string()).await.is_ok());
        assert!(!pinned(&store, &digest).await);
    }

    #[tokio::test]
    async fn a_blob_gone_from_the_store_drops_its_task() {
        let dir = tempfile::tempdir().unwrap();
        let store = disk_store(&dir).await;
        let backend = Arc::new(MemoryBackend::new());
        let digest = cached(&store, b"evicted").await;
        let queue = WriteBack::open(
            &dir.path().join("q.redb"),
            fast(),
            store.clone(),
            backend.clone(),
        )
        .await
        .unwrap();
        queue.enqueue(&ns(), &digest, Duration::ZERO).await.unwrap();
        store.unpin(&digest).await.unwrap();
        store.delete(&digest).await.unwrap();
        assert_eq!(queue.flush().await, 0);
        assert!(backend.stat(&ns(), &digest.to_string()).await.is_err());
    }

    #[tokio::test]
    async fn two_namespaces_keep_the_pin_until_both_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = disk_store(&dir).await;
        let backend = Arc::new(MemoryBackend::new());
        let digest = cached(&store, b"shared layer").await;
        let other = Namespace::new("library/other").unwrap();
        let queue = WriteBack::open(
            &dir.path().join("q.redb"),
            fast(),
            store.clone(),
            backend.clone(),
        )
        .await
        .unwrap();
        queue.enqueue(&ns(), &digest, Duration::ZERO).await.unwrap();
        queue
            .enqueue(&other, &digest, Duration::from_secs(3600))
            .await
            .unwrap();
        let delayed = queue
            .pending()
            .into_iter()
            .find(|t| t.job.namespace == other)
            .unwrap();
        assert!(
            delayed.not_before > delayed.enqueued,
            "the second job waits"
        );
        queue
            .uploader
            .run(&WriteBackJob {
                namespace: ns(),
                digest,
            })
            .await
            .unwrap();
        queue
            .uploader
            .finished(&WriteBackJob {
                namespace: ns(),
                digest,
            })
            .await;
        assert!(
            pinned(&store, &digest).await,
            "the other namespace still waits"
        );
        assert_eq!(queue.len(), 2);
        assert!(pinned(&store, &digest).await);
        assert_eq!(queue.flush().await, 0);
        assert!(!pinned(&store, &digest).await);
    }
}
