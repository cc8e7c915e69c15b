//! A durable task queue: jobs written to an embedded database before they
//! are acknowledged, retried with backoff until they succeed, and kept
//! across restarts.
//!
//! The origin's write-back, build-index's tag write-back and its
//! cross-cluster replication are such queues. Each is a table of one
//! [`Database`] (an embedded [redb](https://docs.rs/redb) file), so a
//! component with several queues and some state of its own keeps them in
//! one file. A job is identified by its [`Job::key`]: queuing a job whose
//! key is pending replaces it and keeps the earlier of the two due times.
//! A [`Worker`] runs due jobs, a bounded number at once; a failure is
//! retried after an exponential, jittered backoff that honours a backend's
//! `Retry-After`, forever: a job leaves the queue only when the worker says
//! it is done or that it can never succeed.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use kraken_core::{Error, Result};
use rand::Rng;
use redb::{ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// An embedded database file holding queues and other small tables.
/// Cheap to clone; clones share the file, which one process at a time may
/// hold open.
#[derive(Clone)]
pub struct Database {
    db: Arc<redb::Database>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the database at `path`, creating it and its directory when
    /// missing.
    ///
    /// # Errors
    ///
    /// `Io` naming the file when it cannot be created or opened (another
    /// process holds it, it is corrupt).
    pub async fn open(path: &Path) -> Result<Database> {
        let path = path.to_owned();
        let db = tokio::task::spawn_blocking(move || -> Result<redb::Database> {
            if let Some(parent) = path.parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent)?;
            }
            redb::Database::create(&path)
                .map_err(|e| db_error(format_args!("opening {}: {e}", path.display())))
        })
        .await
        .map_err(db_error)??;
        Ok(Database { db: Arc::new(db) })
    }

    /// Reads every row of `table` (created when missing), in key order.
    ///
    /// # Errors
    ///
    /// `Io` when the database cannot be read.
    pub async fn rows(&self, table: &'static str) -> Result<Vec<(String, Vec<u8>)>> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(db_error)?;
            let mut rows = Vec::new();
            {
                let table = txn.open_table(definition(table)).map_err(db_error)?;
                for row in table.iter().map_err(db_error)? {
                    let (k, v) = row.map_err(db_error)?;
                    rows.push((k.value().to_owned(), v.value().to_vec()));
                }
            }
            txn.commit().map_err(db_error)?;
            Ok(rows)
        })
        .await
    }

    /// Writes `value` under `key` in `table`, durably.
    ///
    /// # Errors
    ///
    /// `Io` when the database cannot be written.
    pub async fn put(&self, table: &'static str, key: String, value: Vec<u8>) -> Result<()> {
        self.write(table, key, Some(value)).await
    }

    /// Removes `key` from `table`, durably; absent keys are no error.
    ///
    /// # Errors
    ///
    /// `Io` when the database cannot be written.
    pub async fn remove(&self, table: &'static str, key: String) -> Result<()> {
        self.write(table, key, None).await
    }

    async fn write(&self, table: &'static str, key: String, value: Option<Vec<u8>>) -> Result<()> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(db_error)?;
            {
                let mut table = txn.open_table(definition(table)).map_err(db_error)?;
                match &value {
                    Some(value) => table.insert(key.as_str(), value.as_slice()).map(drop),
                    None => table.remove(key.as_str()).map(drop),
                }
                .map_err(db_error)?;
            }
            txn.commit().map_err(db_error)
        })
        .await
    }
}

fn definition(table: &str) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(table)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(db_error)?
}

fn db_error(e: impl fmt::Display) -> Error {
    Error::Io(io::Error::other(format!("database: {e}")))
}

/// Worker concurrency and retries of a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Jobs run at once.
    pub workers: usize,
    /// Wait after the first failure; doubles with each further failure.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How often the queue looks for jobs that became due.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            workers: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl QueueConfig {
    /// Checks the settings; `section` names them in the message (say
    /// `writeback`).
    ///
    /// # Errors
    ///
    /// A message naming the first bad setting.
    pub fn validate(&self, section: &str) -> std::result::Result<(), String> {
        if self.workers == 0 {
            return Err(format!("{section}.workers must be at least 1"));
        }
        if self.initial_backoff.is_zero() || self.poll_interval.is_zero() {
            return Err(format!(
                "{section}.initial_backoff and poll_interval must be positive"
            ));
        }
        if self.max_backoff < self.initial_backoff {
            return Err(format!(
                "{section}.max_backoff must not be below initial_backoff"
            ));
        }
        Ok(())
    }
}

/// What a queue holds: serializable, and identified by a key.
pub trait Job: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static {
    /// The job's identity. Keys sort the queue, so a common prefix groups
    /// related jobs (see [`DurableQueue::has_prefix`]).
    fn key(&self) -> String;
}

/// How a job attempt ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text says how, for the log.
    Done(&'static str),
    /// It can never succeed (what it needed is gone); the job is dropped
    /// and the reason logged as an error.
    Abandon(String),
}

/// Runs jobs of a queue.
#[async_trait]
pub trait Worker<J: Job>: Send + Sync + 'static {
    /// Attempts `job` once. An error is logged and retried after a backoff;
    /// a backend error's `Retry-After` makes it at least that long.
    async fn run(&self, job: &J) -> Result<Outcome>;

    /// Called once `job` left the queue (done or abandoned).
    async fn finished(&self, _job: &J) {}
}

/// A job and its retry state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task<J> {
    /// The job.
    pub job: J,
    /// Failed attempts so far.
    pub attempts: u32,
    /// No attempt before this time (milliseconds since the Unix epoch).
    pub not_before: u64,
    /// When the job was first queued (milliseconds since the Unix epoch).
    pub enqueued: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// How many times the job was queued; tells a job queued again while
    /// it ran from the one that ran.
    #[serde(default)]
    pub queued: u64,
}

/// A durable queue of jobs of type `J`. Cheap to clone; clones share the
/// queue.
pub struct DurableQueue<J> {
    inner: Arc<Inner<J>>,
}

impl<J> Clone for DurableQueue<J> {
    fn clone(&self) -> Self {
        DurableQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<J: Job> fmt::Debug for DurableQueue<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableQueue")
            .field("table", &self.inner.table)
            .field("pending", &self.len())
            .finish_non_exhaustive()
    }
}

struct Inner<J> {
    config: QueueConfig,
    db: Database,
    table: &'static str,
    /// The table's rows, by key, so reads never touch the disk.
    tasks: Mutex<BTreeMap<String, Task<J>>>,
    /// Keys being attempted now.
    running: Mutex<HashSet<String>>,
    /// Held while a task is read, written to the table and put back in
    /// memory (push, finish, retry), so a job queued while an attempt
    /// finishes is neither removed with it nor overwritten by it.
    edits: tokio::sync::Mutex<()>,
    wake: Notify,
}

impl<J: Job> DurableQueue<J> {
    /// Opens the queue kept in `table` of `db` and loads what it holds.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the config does not validate; `Io` when the
    /// database cannot be read. Rows that do not parse are logged and
    /// skipped.
    pub async fn open(db: &Database, table: &'static str, config: QueueConfig) -> Result<Self> {
        config
            .validate(table)
            .map_err(|m| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, m)))?;
        let mut tasks = BTreeMap::new();
        for (key, value) in db.rows(table).await? {
            match serde_json::from_slice::<Task<J>>(&value) {
                Ok(task) => {
                    tasks.insert(key, task);
                }
                Err(e) => {
                    tracing::error!(table, key, error = %e, "unreadable queued job skipped");
                }
            }
        }
        if !tasks.is_empty() {
            tracing::info!(table, pending = tasks.len(), "queue reopened");
        }
        Ok(DurableQueue {
            inner: Arc::new(Inner {
                config,
                db: db.clone(),
                table,
                tasks: Mutex::new(tasks),
                running: Mutex::new(HashSet::new()),
                edits: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
            }),
        })
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Task<J>>> {
        // Entries are replaced whole; a panic cannot leave one half-written.
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn store(&self, key: &str, task: &Task<J>) -> Result<()> {
        let value = serde_json::to_vec(task).map_err(db_error)?;
        self.inner
            .db
            .put(self.inner.table, key.to_owned(), value)
            .await
    }

    /// Queues `job`, first attempt after `delay`, and returns once it is on
    /// disk. A pending job of the same key is replaced by `job` and keeps
    /// its attempts; its next attempt moves earlier when `delay` ends
    /// sooner, never later.
    ///
    /// # Errors
    ///
    /// `Io` when the database cannot be written; the job is then not queued.
    pub async fn push(&self, job: J, delay: Duration) -> Result<()> {
        let now = now_millis();
        let not_before = now.saturating_add(millis(delay));
        let key = job.key();
        let _editing = self.inner.edits.lock().await;
        let task = match self.tasks().get(&key) {
            Some(existing) => Task {
                job,
                not_before: existing.not_before.min(not_before),
                queued: existing.queued.wrapping_add(1),
                ..existing.clone()
            },
            None => Task {
                job,
                attempts: 0,
                not_before,
                enqueued: now,
                last_error: None,
                queued: 0,
            },
        };
        self.store(&key, &task).await?;
        self.tasks().insert(key, task);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Every pending task, in key order.
    pub fn pending(&self) -> Vec<Task<J>> {
        self.tasks().values().cloned().collect()
    }

    /// Pending jobs.
    pub fn len(&self) -> usize {
        self.tasks().len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.tasks().is_empty()
    }

    /// Whether a job with this key is pending.
    pub fn contains(&self, key: &str) -> bool {
        self.tasks().contains_key(key)
    }

    /// Whether any pending job's key starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tasks()
            .range(prefix.to_owned()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(prefix))
    }

    /// Runs due jobs with `worker` until `shutdown` is cancelled; attempts
    /// in flight finish first.
    pub fn start(&self, worker: Arc<dyn Worker<J>>, shutdown: CancellationToken) -> JoinHandle<()> {
        let this = self.clone();
        let span = tracing::info_span!("queue", table = self.inner.table);
        tokio::spawn(async move { this.run(worker, shutdown).await }.instrument(span))
    }

    async fn run(self, worker: Arc<dyn Worker<J>>, shutdown: CancellationToken) {
        let mut workers = JoinSet::new();
        loop {
            while workers.len() < self.inner.config.workers {
                let Some((key, task)) = self.next_due() else {
                    break;
                };
                let (this, worker) = (self.clone(), worker.clone());
                workers.spawn(async move { this.attempt(&*worker, key, task).await });
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
    fn next_due(&self) -> Option<(String, Task<J>)> {
        let now = now_millis();
        let tasks = self.tasks();
        let mut running = self.running();
        let (key, task) = tasks
            .iter()
            .filter(|(k, t)| t.not_before <= now && !running.contains(*k))
            .min_by_key(|(_, t)| t.not_before)
            .map(|(k, t)| (k.clone(), t.clone()))?;
        running.insert(key.clone());
        Some((key, task))
    }

    /// Attempts every pending job once now, whatever its backoff, and
    /// returns how many remain (failed again, or being attempted by the
    /// workers meanwhile).
    pub async fn flush(&self, worker: &dyn Worker<J>) -> usize {
        let claimed: Vec<(String, Task<J>)> = {
            let tasks = self.tasks();
            let mut running = self.running();
            tasks
                .iter()
                .filter(|(k, _)| running.insert((*k).clone()))
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect()
        };
        futures::stream::iter(claimed)
            .for_each_concurrent(self.inner.config.workers, |(key, task)| {
                self.attempt(worker, key, task)
            })
            .await;
        self.len()
    }

    /// Tries one claimed task and records the outcome.
    async fn attempt(&self, worker: &dyn Worker<J>, key: String, task: Task<J>) {
        let span = tracing::info_span!("job", key = %key);
        let outcome = worker.run(&task.job).instrument(span.clone()).await;
        match outcome {
            Ok(Outcome::Done(how)) => {
                tracing::info!(parent: &span, attempts = task.attempts + 1, how, "job done");
                self.finish(worker, &key, &task).await;
            }
            Ok(Outcome::Abandon(why)) => {
                tracing::error!(parent: &span, reason = %why, "job abandoned");
                self.finish(worker, &key, &task).await;
            }
            Err(error) => {
                let _enter = span.enter();
                self.retry_later(&key, task, &error).await;
            }
        }
        self.running().remove(&key);
    }

    async fn retry_later(&self, key: &str, task: Task<J>, error: &Error) {
        let attempts = task.attempts.saturating_add(1);
        let mut wait = self.backoff(attempts);
        if let Error::Backend(e) = error
            && let Some(after) = e.retry_after()
        {
            wait = wait.max(after);
        }
        tracing::warn!(%error, attempts, retry_in = ?wait, "job failed");
        let retry = Task {
            attempts,
            not_before: now_millis().saturating_add(millis(wait)),
            last_error: Some(error.to_string()),
            ..task
        };
        let _editing = self.inner.edits.lock().await;
        // A job queued again while it ran is new work: it keeps its
        // content and due time, and only learns of the failure.
        let recorded = {
            let mut tasks = self.tasks();
            match tasks.get_mut(key) {
                Some(current) if current.queued != retry.queued => {
                    current.attempts = retry.attempts;
                    current.last_error = retry.last_error;
                    current.clone()
                }
                Some(current) => {
                    *current = retry;
                    current.clone()
                }
                None => return,
            }
        };
        if let Err(e) = self.store(key, &recorded).await {
            tracing::error!(error = %e, "cannot record the failed attempt; retried as before");
        }
    }

    /// Removes a finished job, unless it was queued again while it ran.
    async fn finish(&self, worker: &dyn Worker<J>, key: &str, task: &Task<J>) {
        {
            let _editing = self.inner.edits.lock().await;
            let requeued = self
                .tasks()
                .get(key)
                .is_some_and(|t| t.queued != task.queued);
            if requeued {
                return;
            }
            if let Err(e) = self.inner.db.remove(self.inner.table, key.to_owned()).await {
                // The row comes back after a restart; the job then runs
                // again, which every worker here tolerates.
                tracing::error!(error = %e, "cannot remove a finished job");
            }
            self.tasks().remove(key);
        }
        worker.finished(&task.job).await;
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let config = &self.inner.config;
        let exp = attempts.saturating_sub(1).min(30);
        let base = config
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(config.max_backoff);
        // Up to a quarter either way, so components that failed together
        // do not retry together.
        let jitter = rand::rng().random_range(0.75..=1.25);
        base.mul_f64(jitter).min(config.max_backoff)
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Note {
        name: String,
        body: u32,
    }

    impl Job for Note {
        fn key(&self) -> String {
            self.name.clone()
        }
    }

    /// Fails the first `failures` attempts, then records what it ran.
    #[derive(Default)]
    struct Flaky {
        failures: AtomicU32,
        ran: Mutex<Vec<Note>>,
        finished: AtomicU32,
    }

    #[async_trait]
    impl Worker<Note> for Flaky {
        async fn run(&self, job: &Note) -> Result<Outcome> {
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(Error::Io(io::Error::other("not yet")));
            }
            self.ran.lock().unwrap().push(job.clone());
            Ok(Outcome::Done("ran"))
        }

        async fn finished(&self, _job: &Note) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn fast() -> QueueConfig {
        QueueConfig {
            workers: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            poll_interval: Duration::from_millis(10),
        }
    }

    fn note(name: &str, body: u32) -> Note {
        Note {
            name: name.into(),
            body,
        }
    }

    #[tokio::test]
    async fn jobs_survive_a_reopen_and_failures_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        {
            let db = Database::open(&path).await.unwrap();
            let queue = DurableQueue::<Note>::open(&db, "notes", fast())
                .await
                .unwrap();
            queue.push(note("a", 1), Duration::ZERO).await.unwrap();
            let worker = Flaky {
                failures: AtomicU32::new(1),
                ..Flaky::default()
            };
            assert_eq!(queue.flush(&worker).await, 1);
            let task = &queue.pending()[0];
            assert_eq!(task.attempts, 1);
            assert_eq!(task.last_error.as_deref(), Some("i/o error: not yet"));
        }
        let db = Database::open(&path).await.unwrap();
        let queue = DurableQueue::<Note>::open(&db, "notes", fast())
            .await
            .unwrap();
        assert_eq!(queue.pending()[0].attempts, 1, "the failure was recorded");
        let worker = Arc::new(Flaky::default());
        let stop = CancellationToken::new();
        let task = queue.start(worker.clone(), stop.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !queue.is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the job never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert_eq!(*worker.ran.lock().unwrap(), vec![note("a", 1)]);
        assert_eq!(worker.finished.load(Ordering::SeqCst), 1);
        let reopened = DurableQueue::<Note>::open(&db, "notes", fast())
            .await
            .unwrap();
        assert!(reopened.is_empty(), "a finished job left the table");
    }

    #[tokio::test]
    async fn a_requeued_job_replaces_the_pending_one_and_keeps_the_earlier_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("q.redb")).await.unwrap();
        let queue = DurableQueue::<Note>::open(&db, "notes", fast())
            .await
            .unwrap();
        queue
            .push(note("a", 1), Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(queue.next_due().is_none());
        queue.push(note("a", 2), Duration::ZERO).await.unwrap();
        let (_, due) = queue.next_due().unwrap();
        assert_eq!(due.job, note("a", 2));
        queue.running().clear();
        queue
            .push(note("a", 3), Duration::from_secs(3600))
            .await
            .unwrap();
        let (_, due) = queue.next_due().unwrap();
        assert_eq!(due.job.body, 3, "content replaced, due time kept");
        assert_eq!(queue.len(), 1);
    }

    #[tokio::test]
    async fn a_job_queued_again_while_it_runs_runs_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("q.redb")).await.unwrap();
        let queue = DurableQueue::<Note>::open(&db, "notes", fast())
            .await
            .unwrap();
        queue.push(note("a", 1), Duration::ZERO).await.unwrap();
        let (key, claimed) = queue.next_due().unwrap();
        queue.push(note("a", 2), Duration::ZERO).await.unwrap();
        let worker = Flaky::default();
        queue.attempt(&worker, key, claimed).await;
        assert_eq!(queue.pending()[0].job, note("a", 2), "the newer job stays");
        assert_eq!(queue.flush(&worker).await, 0);
        assert_eq!(
            *worker.ran.lock().unwrap(),
            vec![note("a", 1), note("a", 2)]
        );
    }

    #[tokio::test]
    async fn prefixes_group_keys_and_tables_are_separate() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("q.redb")).await.unwrap();
        let first = DurableQueue::<Note>::open(&db, "first", fast())
            .await
            .unwrap();
        let second = DurableQueue::<Note>::open(&db, "second", fast())
            .await
            .unwrap();
        first.push(note("blob a", 1), Duration::ZERO).await.unwrap();
        assert!(first.has_prefix("blob "));
        assert!(!first.has_prefix("blob b"));
        assert!(first.contains("blob a"));
        assert!(second.is_empty());
        db.put("plain", "k".into(), b"v".to_vec()).await.unwrap();
        assert_eq!(
            db.rows("plain").await.unwrap(),
            vec![("k".into(), b"v".to_vec())]
        );
        db.remove("plain", "k".into()).await.unwrap();
        assert!(db.rows("plain").await.unwrap().is_empty());
    }

    /// Records the last body run per key, and takes a moment, so pushes
    /// land while attempts finish.
    #[derive(Default)]
    struct Last {
        ran: Mutex<BTreeMap<String, u32>>,
    }

    #[async_trait]
    impl Worker<Note> for Last {
        async fn run(&self, job: &Note) -> Result<Outcome> {
            tokio::task::yield_now().await;
            self.ran.lock().unwrap().insert(job.name.clone(), job.body);
            Ok(Outcome::Done("ran"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_queued_while_an_attempt_finishes_is_never_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let db = Database::open(&path).await.unwrap();
        let queue = DurableQueue::<Note>::open(&db, "notes", fast())
            .await
            .unwrap();
        let worker = Arc::new(Last::default());
        let stop = CancellationToken::new();
        let task = queue.start(worker.clone(), stop.clone());
        let rounds = 300;
        for body in 0..rounds {
            queue.push(note("a", body), Duration::ZERO).await.unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while worker.ran.lock().unwrap().get("a") != Some(&(rounds - 1)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the last job was lost; ran {:?}, pending {:?}",
                worker.ran.lock().unwrap(),
                queue.pending()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        task.await.unwrap();
        assert!(queue.is_empty());
        let reopened = DurableQueue::<Note>::open(&db, "notes", fast())
            .await
            .unwrap();
        assert!(reopened.is_empty(), "memory and table agree");
    }

    #[test]
    fn config_is_checked() {
        assert_eq!(QueueConfig::default().validate("q"), Ok(()));
        let bad = QueueConfig {
            workers: 0,
            ..QueueConfig::default()
        };
        assert!(
            bad.validate("writeback")
                .unwrap_err()
                .contains("writeback.workers")
        );
        let bad = QueueConfig {
            max_backoff: Duration::from_millis(1),
            ..QueueConfig::default()
        };
        assert!(bad.validate("q").unwrap_err().contains("max_backoff"));
    }
}
