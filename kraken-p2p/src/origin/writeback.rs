//! The durable write-back queue: blobs an origin committed that the backend
//! must receive.
//!
//! Each task (namespace, digest) is a row of an embedded
//! [redb](https://docs.rs/redb) database written before the upload is
//! acknowledged, so a crash or restart never loses one. A blob stays pinned
//! in the store while any task for it is pending, so eviction cannot take
//! the only copy before the backend has it. Workers retry failures with
//! exponential backoff and jitter, honour a backend's `Retry-After`, and
//! never give up: a task leaves the queue when the backend holds the blob,
//! or when the store no longer does (then nothing is left to write, which is
//! logged as an error).

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use kraken_core::{Backend, BlobStore, Digest, Error, Namespace, Result, read_range};
use rand::Rng;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Rows keyed by `"<digest> <namespace>"`, valued by a JSON [`WriteBackTask`].
const TASKS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("writeback_tasks");

/// Bytes read from the store per chunk of a backend upload.
const UPLOAD_CHUNK: usize = 1024 * 1024;

/// Write-back concurrency and retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteBackConfig {
    /// Uploads to the backend at once.
    pub workers: usize,
    /// Wait after the first failure; doubles with each further failure.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How often the queue looks for tasks that became due.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for WriteBackConfig {
    fn default() -> Self {
        WriteBackConfig {
            workers: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl WriteBackConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A message naming the first bad setting.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.workers == 0 {
            return Err("writeback.workers must be at least 1".into());
        }
        if self.initial_backoff.is_zero() || self.poll_interval.is_zero() {
            return Err("writeback.initial_backoff and poll_interval must be positive".into());
        }
        if self.max_backoff < self.initial_backoff {
            return Err("writeback.max_backoff must not be below initial_backoff".into());
        }
        Ok(())
    }
}

/// One blob the backend must receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBackTask {
    /// Where the blob goes in the backend.
    pub namespace: Namespace,
    /// The blob.
    pub digest: Digest,
    /// Failed attempts so far.
    pub attempts: u32,
    /// No attempt before this time (milliseconds since the Unix epoch).
    pub not_before: u64,
    /// When the task was first queued (milliseconds since the Unix epoch).
    pub enqueued: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl WriteBackTask {
    fn key(&self) -> String {
        key(&self.digest, &self.namespace)
    }
}

fn key(digest: &Digest, namespace: &Namespace) -> String {
    format!("{digest} {namespace}")
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn db_error(e: impl std::fmt::Display) -> Error {
    Error::Io(io::Error::other(format!("write-back queue: {e}")))
}

/// The queue. Cheap to clone; clones share the database.
#[derive(Debug, Clone)]
pub struct WriteBack {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: WriteBackConfig,
    db: Arc<Database>,
    store: Arc<dyn BlobStore>,
    backend: Arc<dyn Backend>,
    /// The database's rows, by key, so reads never touch the disk.
    tasks: Mutex<BTreeMap<String, WriteBackTask>>,
    /// Keys being attempted now.
    running: Mutex<HashSet<String>>,
    wake: Notify,
}

impl WriteBack {
    /// Opens (or creates) the queue at `path` and pins every blob it still
    /// holds tasks for.
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
            .validate()
            .map_err(|m| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, m)))?;
        let path = path.to_owned();
        let (db, tasks) = tokio::task::spawn_blocking(move || -> Result<_> {
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            let db = Database::create(&path)
                .map_err(|e| db_error(format_args!("opening {}: {e}", path.display())))?;
            let txn = db.begin_write().map_err(db_error)?;
            let mut tasks = BTreeMap::new();
            {
                let table = txn.open_table(TASKS).map_err(db_error)?;
                for row in table.iter().map_err(db_error)? {
                    let (k, v) = row.map_err(db_error)?;
                    match serde_json::from_slice::<WriteBackTask>(v.value()) {
                        Ok(task) => {
                            tasks.insert(k.value().to_owned(), task);
                        }
                        Err(e) => {
                            tracing::error!(key = k.value(), error = %e, "unreadable write-back task skipped");
                        }
                    }
                }
            }
            txn.commit().map_err(db_error)?;
            Ok((db, tasks))
        })
        .await
        .map_err(|e| db_error(format_args!("open task failed: {e}")))??;
        let digests: HashSet<Digest> = tasks.values().map(|t| t.digest).collect();
        for digest in &digests {
            match store.pin(digest).await {
                Ok(()) => {}
                Err(Error::NotFound(_)) => {
                    tracing::error!(%digest, "blob pending write-back is gone from the store");
                }
                Err(e) => return Err(e),
            }
        }
        if !tasks.is_empty() {
            tracing::info!(pending = tasks.len(), "write-back queue reopened");
        }
        Ok(WriteBack {
            inner: Arc::new(Inner {
                config,
                db: Arc::new(db),
                store,
                backend,
                tasks: Mutex::new(tasks),
                running: Mutex::new(HashSet::new()),
                wake: Notify::new(),
            }),
        })
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WriteBackTask>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn put(&self, task: &WriteBackTask) -> Result<()> {
        let db = self.inner.db.clone();
        let (key, value) = (task.key(), serde_json::to_vec(task).map_err(db_error)?);
        tokio::task::spawn_blocking(move || -> Result<()> {
            let txn = db.begin_write().map_err(db_error)?;
            txn.open_table(TASKS)
                .map_err(db_error)?
                .insert(key.as_str(), value.as_slice())
                .map_err(db_error)?;
            txn.commit().map_err(db_error)
        })
        .await
        .map_err(db_error)?
    }

    async fn remove_row(&self, key: String) -> Result<()> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let txn = db.begin_write().map_err(db_error)?;
            txn.open_table(TASKS)
                .map_err(db_error)?
                .remove(key.as_str())
                .map_err(db_error)?;
            txn.commit().map_err(db_error)
        })
        .await
        .map_err(db_error)?
    }

    /// Queues `digest` for the backend under `namespace`, first attempt
    /// after `delay`, and pins the blob. Queuing a pending task again only
    /// brings its next attempt forward when `delay` ends sooner.
    ///
    /// Returns once the task is on disk.
    ///
    /// # Errors
    ///
    /// `Io` when the database cannot be written; `NotFound` when the store
    /// lacks the blob (the task is then not kept).
    pub async fn enqueue(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        delay: Duration,
    ) -> Result<()> {
        let now = now_millis();
        let not_before = now.saturating_add(millis(delay));
        let k = key(digest, namespace);
        let task = {
            let tasks = self.tasks();
            match tasks.get(&k) {
                Some(existing) if existing.not_before <= not_before => None,
                Some(existing) => Some(WriteBackTask {
                    not_before,
                    ..existing.clone()
                }),
                None => Some(WriteBackTask {
                    namespace: namespace.clone(),
                    digest: *digest,
                    attempts: 0,
                    not_before,
                    enqueued: now,
                    last_error: None,
                }),
            }
        };
        self.inner.store.pin(digest).await?;
        let Some(task) = task else {
            return Ok(());
        };
        self.put(&task).await?;
        self.tasks().insert(k, task);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Every pending task, ordered by digest.
    pub fn pending(&self) -> Vec<WriteBackTask> {
        self.tasks().values().cloned().collect()
    }

    /// Pending tasks.
    pub fn len(&self) -> usize {
        self.tasks().len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.tasks().is_empty()
    }

    /// Whether any task for `digest` is pending.
    pub fn is_pending(&self, digest: &Digest) -> bool {
        let prefix = format!("{digest} ");
        self.tasks()
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Runs the workers until `shutdown` is cancelled; attempts in flight
    /// finish first.
    pub fn start(&self, shutdown: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(
            async move { this.run(shutdown).await }.instrument(tracing::info_span!("writeback")),
        )
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut workers = JoinSet::new();
        loop {
            while workers.len() < self.inner.config.workers {
                let Some(task) = self.next_due() else { break };
                let this = self.clone();
                workers.spawn(async move { this.attempt(task).await });
            }
            let poll = tokio::time::sleep(self.inner.config.poll_interval);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.inner.wake.notified() => {}
                () = poll => {}
                Some(_) = workers.join_next(), if !workers.is_empty() => {}
            }
        }
        while workers.join_next().await.is_some() {}
    }

    /// Claims the due task that waited longest.
    fn next_due(&self) -> Option<WriteBackTask> {
        let now = now_millis();
        let tasks = self.tasks();
        let mut running = self.running();
        let task = tasks
            .iter()
            .filter(|(k, t)| t.not_before <= now && !running.contains(*k))
            .min_by_key(|(_, t)| t.not_before)
            .map(|(_, t)| t.clone())?;
        running.insert(task.key());
        Some(task)
    }

    /// Attempts every pending task once now, whatever its backoff, and
    /// returns how many remain (failed again, or being attempted by the
    /// workers meanwhile).
    pub async fn flush(&self) -> usize {
        let claimed: Vec<WriteBackTask> = {
            let tasks = self.tasks();
            let mut running = self.running();
            tasks
                .iter()
                .filter(|(k, _)| running.insert((*k).clone()))
                .map(|(_, t)| t.clone())
                .collect()
        };
        futures::stream::iter(claimed)
            .for_each_concurrent(self.inner.config.workers, |task| self.attempt(task))
            .await;
        self.len()
    }

    /// Tries one task and records the outcome; the task was claimed.
    async fn attempt(&self, task: WriteBackTask) {
        let k = task.key();
        let span =
            tracing::info_span!("write_back", namespace = %task.namespace, digest = %task.digest);
        let outcome = self.write(&task).instrument(span.clone()).await;
        let _enter = span.enter();
        match outcome {
            Ok(how) => {
                tracing::info!(attempts = task.attempts + 1, how, "written back");
                self.finish(&k, &task.digest).await;
            }
            Err(Error::NotFound(_)) => {
                tracing::error!(
                    "blob left the store before it reached the backend; the task is dropped"
                );
                self.finish(&k, &task.digest).await;
            }
            Err(error) => {
                let attempts = task.attempts.saturating_add(1);
                let mut wait = self.backoff(attempts);
                if let Error::Backend(e) = &error
                    && let Some(after) = e.retry_after()
                {
                    wait = wait.max(after);
                }
                tracing::warn!(%error, attempts, retry_in = ?wait, "write-back failed");
                let retry = WriteBackTask {
                    attempts,
                    not_before: now_millis().saturating_add(millis(wait)),
                    last_error: Some(error.to_string()),
                    ..task
                };
                if let Err(e) = self.put(&retry).await {
                    tracing::error!(error = %e, "cannot record the failed attempt; retried as before");
                }
                self.tasks().insert(k.clone(), retry);
            }
        }
        self.running().remove(&k);
    }

    /// Uploads the blob unless the backend already holds it; returns how.
    async fn write(&self, task: &WriteBackTask) -> Result<&'static str> {
        let name = task.digest.to_string();
        let stat = self.inner.store.stat(&task.digest).await?;
        match self.inner.backend.stat(&task.namespace, &name).await {
            Ok(info) if info.size == stat.length => return Ok("already in the backend"),
            Ok(_) | Err(_) => {}
        }
        let reader = self.inner.store.open(&task.digest).await?;
        let length = reader.len();
        let body = read_range(reader, 0..length, UPLOAD_CHUNK)
            .map_err(io::Error::other)
            .boxed();
        self.inner
            .backend
            .upload(&task.namespace, &name, length, body)
            .await?;
        Ok("uploaded")
    }

    /// Removes a done task and unpins its blob unless another namespace
    /// still waits for it.
    async fn finish(&self, k: &str, digest: &Digest) {
        if let Err(e) = self.remove_row(k.to_owned()).await {
            // The row comes back after a restart; its blob is then found
            // in the backend and the task ends at the cost of a stat.
            tracing::error!(error = %e, "cannot remove a finished write-back task");
        }
        self.tasks().remove(k);
        if !self.is_pending(digest) {
            match self.inner.store.unpin(digest).await {
                Ok(()) | Err(Error::NotFound(_)) => {}
                Err(e) => tracing::warn!(%digest, error = %e, "cannot unpin a written-back blob"),
            }
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let config = &self.inner.config;
        let exp = attempts.saturating_sub(1).min(30);
        let base = config
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(config.max_backoff);
        // Up to a quarter either way, so origins that failed together do
        // not retry together.
        let jitter = rand::rng().random_range(0.75..=1.25);
        base.mul_f64(jitter).min(config.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kraken_core::disk::{DiskStore, DiskStoreOptions};
    use kraken_core::testkit::{FaultyBackend, MemoryBackend};
    use kraken_core::{BlobState, PieceLengths};

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
    async fn a_delayed_task_waits_and_a_later_enqueue_brings_it_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = disk_store(&dir).await;
        let backend = Arc::new(MemoryBackend::new());
        let digest = cached(&store, b"replica copy").await;
        let queue = WriteBack::open(
            &dir.path().join("q.redb"),
            fast(),
            store.clone(),
            backend.clone(),
        )
        .await
        .unwrap();
        queue
            .enqueue(&ns(), &digest, Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(queue.next_due().is_none());
        queue.enqueue(&ns(), &digest, Duration::ZERO).await.unwrap();
        let due = queue.next_due().unwrap();
        assert_eq!(due.digest, digest);
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
        let first = queue.next_due().unwrap();
        queue.attempt(first).await;
        assert_eq!(queue.len(), 1);
        assert!(pinned(&store, &digest).await);
        assert_eq!(queue.flush().await, 0);
        assert!(!pinned(&store, &digest).await);
    }

    #[test]
    fn config_is_checked() {
        assert_eq!(WriteBackConfig::default().validate(), Ok(()));
        let bad = WriteBackConfig {
            workers: 0,
            ..WriteBackConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("workers"));
        let bad = WriteBackConfig {
            max_backoff: Duration::from_millis(1),
            ..WriteBackConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_backoff"));
    }
}
