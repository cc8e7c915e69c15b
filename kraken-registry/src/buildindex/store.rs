//! Build-index's local state: tags, manifest records and the catalog, held
//! in memory and mirrored row by row in the database, so a lookup never
//! touches the disk and a restart loses nothing.
//!
//! Every write goes through [`Store::apply`], one writer at a time: it
//! queues the write-back job first, then writes the row, then updates
//! memory. The write-back worker reads what to write under the same lock
//! ([`Store::content`]), so it always writes the latest value: a job that
//! runs before the write it stands for finished cannot exist, and a write
//! made while a job runs queues the job again. Values read from the backend
//! enter through [`Store::cache`], which never overwrites what is here:
//! a push that lands while a fallback read is under way wins.
//!
//! Deleted tags and records stay as tombstones, so a deletion whose
//! write-back has not landed yet is not undone by a fallback read of the
//! backend's older value.

use std::collections::BTreeMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use bytes::Bytes;
use kraken_core::{Digest, Result};
use kraken_p2p::queue::{Database, DurableQueue, QueueConfig};

use super::ManifestRecord;
use super::layout;
use super::writeback::WriteBackJob;
use crate::reference::{RepoName, Tag};

/// `<repo>:<tag>` → digest text, empty when deleted.
const TAGS: &str = "buildindex_tags";
/// `<repo>@<digest>` → record JSON, empty when deleted.
const RECORDS: &str = "buildindex_manifests";
/// Repository name → nothing: the repositories of the catalog.
const CATALOG: &str = "buildindex_catalog";
/// Repository name → nothing: repositories whose backend listing has been
/// merged, plus [`CATALOG_LISTED`].
const LISTED: &str = "buildindex_listed";
/// The row of [`LISTED`] saying the catalog markers were merged; `@` is
/// never part of a repository name.
const CATALOG_LISTED: &str = "@catalog";
/// The write-back queue.
const WRITEBACK: &str = "buildindex_writeback";

/// What the local tables say about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup<T> {
    /// The current value.
    Found(T),
    /// Deleted here; authoritative.
    Deleted,
    /// Never seen here; the backend may know.
    Unknown,
}

/// One write to the local tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Points a tag at a digest, or deletes it (`None`).
    Tag {
        repo: RepoName,
        tag: Tag,
        digest: Option<Digest>,
    },
    /// Stores a record, or deletes it (`None`).
    Record {
        repo: RepoName,
        digest: Digest,
        record: Option<ManifestRecord>,
    },
    /// Adds a repository to the catalog.
    Catalog { repo: RepoName },
}

impl Change {
    fn job(&self) -> WriteBackJob {
        match self {
            Change::Tag { repo, tag, .. } => WriteBackJob::Tag {
                repo: repo.clone(),
                tag: tag.clone(),
            },
            Change::Record { repo, digest, .. } => WriteBackJob::Record {
                repo: repo.clone(),
                digest: *digest,
            },
            Change::Catalog { repo } => WriteBackJob::Catalog { repo: repo.clone() },
        }
    }

    fn row(&self) -> (&'static str, String, Bytes) {
        match self {
            Change::Tag { repo, tag, digest } => (
                TAGS,
                layout::tag_name(repo, tag),
                layout::encode_tag(digest.as_ref()),
            ),
            Change::Record {
                repo,
                digest,
                record,
            } => (
                RECORDS,
                layout::record_name(repo, digest),
                layout::encode_record(record.as_ref()),
            ),
            Change::Catalog { repo } => (CATALOG, repo.to_string(), Bytes::new()),
        }
    }
}

#[derive(Debug, Default)]
struct RepoState {
    tags: BTreeMap<Tag, Option<Digest>>,
    records: BTreeMap<Digest, Option<ManifestRecord>>,
    cataloged: bool,
    listed: bool,
}

impl RepoState {
    fn is_known(&self) -> bool {
        self.cataloged || !self.tags.is_empty() || !self.records.is_empty()
    }
}

#[derive(Debug, Default)]
struct State {
    repos: BTreeMap<RepoName, RepoState>,
    catalog_listed: bool,
}

impl State {
    fn repo(&mut self, repo: &RepoName) -> &mut RepoState {
        self.repos.entry(repo.clone()).or_default()
    }

    /// Whether `change` would leave the state as it is.
    fn holds(&self, change: &Change) -> bool {
        let repo = |r: &RepoName| self.repos.get(r);
        match change {
            Change::Tag {
                repo: r,
                tag,
                digest,
            } => repo(r).and_then(|s| s.tags.get(tag)) == Some(digest),
            Change::Record {
                repo: r,
                digest,
                record,
            } => repo(r).and_then(|s| s.records.get(digest)) == Some(record),
            Change::Catalog { repo: r } => repo(r).is_some_and(|s| s.cataloged),
        }
    }

    /// Whether the key `change` writes has any local value, tombstones
    /// included.
    fn has_key(&self, change: &Change) -> bool {
        let repo = |r: &RepoName| self.repos.get(r);
        match change {
            Change::Tag { repo: r, tag, .. } => repo(r).is_some_and(|s| s.tags.contains_key(tag)),
            Change::Record {
                repo: r, digest, ..
            } => repo(r).is_some_and(|s| s.records.contains_key(digest)),
            Change::Catalog { repo: r } => repo(r).is_some_and(|s| s.cataloged),
        }
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Tag { repo, tag, digest } => {
                self.repo(&repo).tags.insert(tag, digest);
            }
            Change::Record {
                repo,
                digest,
                record,
            } => {
                self.repo(&repo).records.insert(digest, record);
            }
            Change::Catalog { repo } => self.repo(&repo).cataloged = true,
        }
    }
}

/// The local tables and the write-back queue, in one database.
pub(crate) struct Store {
    db: Database,
    state: RwLock<State>,
    /// Held by every writer from queuing the job to updating memory, and
    /// by the write-back worker while it reads what to write.
    writes: tokio::sync::Mutex<()>,
    writeback: DurableQueue<WriteBackJob>,
}

impl Store {
    /// Loads the tables of `db` and opens the write-back queue in it. Rows
    /// that do not parse are logged and skipped.
    ///
    /// # Errors
    ///
    /// `Io` when the database cannot be read or the queue config is bad.
    pub(crate) async fn open(db: &Database, writeback: QueueConfig) -> Result<Store> {
        let mut state = State::default();
        for (name, value) in db.rows(TAGS).await? {
            match (layout::parse_tag_name(&name), layout::decode_tag(&value)) {
                (Some((repo, tag)), Ok(digest)) => state.apply(Change::Tag { repo, tag, digest }),
                _ => tracing::error!(row = %name, "unreadable tag row skipped"),
            }
        }
        for (name, value) in db.rows(RECORDS).await? {
            match (
                layout::parse_record_name(&name),
                layout::decode_record(&value),
            ) {
                (Some((repo, digest)), Ok(record)) => state.apply(Change::Record {
                    repo,
                    digest,
                    record,
                }),
                _ => tracing::error!(row = %name, "unreadable manifest record row skipped"),
            }
        }
        for (name, _) in db.rows(CATALOG).await? {
            if let Ok(repo) = RepoName::new(name) {
                state.repo(&repo).cataloged = true;
            }
        }
        for (name, _) in db.rows(LISTED).await? {
            if name == CATALOG_LISTED {
                state.catalog_listed = true;
            } else if let Ok(repo) = RepoName::new(name) {
                state.repo(&repo).listed = true;
            }
        }
        let writeback = DurableQueue::open(db, WRITEBACK, writeback).await?;
        Ok(Store {
            db: db.clone(),
            state: RwLock::new(state),
            writes: tokio::sync::Mutex::new(()),
            writeback,
        })
    }

    /// The write-back queue.
    pub(crate) fn writeback(&self) -> &DurableQueue<WriteBackJob> {
        &self.writeback
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Memory is changed one whole entry at a time, after its row is
        // written; a panic elsewhere cannot leave it half-updated.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The tag's local value.
    pub(crate) fn tag(&self, repo: &RepoName, tag: &Tag) -> Lookup<Digest> {
        match self.read().repos.get(repo).and_then(|s| s.tags.get(tag)) {
            Some(Some(digest)) => Lookup::Found(*digest),
            Some(None) => Lookup::Deleted,
            None => Lookup::Unknown,
        }
    }

    /// The record's local value.
    pub(crate) fn record(&self, repo: &RepoName, digest: &Digest) -> Lookup<ManifestRecord> {
        match self
            .read()
            .repos
            .get(repo)
            .and_then(|s| s.records.get(digest))
        {
            Some(Some(record)) => Lookup::Found(record.clone()),
            Some(None) => Lookup::Deleted,
            None => Lookup::Unknown,
        }
    }

    /// Whether anything of `repo` is here: a tag or record (deleted ones
    /// too) or a catalog entry.
    pub(crate) fn knows(&self, repo: &RepoName) -> bool {
        self.read().repos.get(repo).is_some_and(RepoState::is_known)
    }

    /// The live tags of `repo` in byte order; `None` when the repository
    /// is unknown here.
    pub(crate) fn tags(&self, repo: &RepoName) -> Option<Vec<Tag>> {
        let state = self.read();
        let repo = state.repos.get(repo).filter(|s| s.is_known())?;
        let live = repo.tags.iter().filter(|(_, d)| d.is_some());
        Some(live.map(|(t, _)| t.clone()).collect())
    }

    /// The live tags of `repo` that point at `digest`.
    pub(crate) fn tags_pointing_at(&self, repo: &RepoName, digest: &Digest) -> Vec<Tag> {
        let state = self.read();
        let Some(repo) = state.repos.get(repo) else {
            return Vec::new();
        };
        let pointing = repo.tags.iter().filter(|(_, d)| d.as_ref() == Some(digest));
        pointing.map(|(t, _)| t.clone()).collect()
    }

    /// The live records of `repo`, by digest.
    pub(crate) fn records(&self, repo: &RepoName) -> Vec<ManifestRecord> {
        let state = self.read();
        let Some(repo) = state.repos.get(repo) else {
            return Vec::new();
        };
        repo.records.values().flatten().cloned().collect()
    }

    /// Every known repository, sorted.
    pub(crate) fn catalog(&self) -> Vec<RepoName> {
        let state = self.read();
        let known = state.repos.iter().filter(|(_, s)| s.is_known());
        known.map(|(r, _)| r.clone()).collect()
    }

    /// Whether the backend listing of `repo` has been merged.
    pub(crate) fn is_listed(&self, repo: &RepoName) -> bool {
        self.read().repos.get(repo).is_some_and(|s| s.listed)
    }

    /// Whether the catalog markers have been merged.
    pub(crate) fn catalog_listed(&self) -> bool {
        self.read().catalog_listed
    }

    /// Records that the backend listing of `repo` has been merged.
    ///
    /// # Errors
    ///
    /// `Io` when the row cannot be written.
    pub(crate) async fn mark_listed(&self, repo: &RepoName) -> Result<()> {
        let _writing = self.writes.lock().await;
        self.db.put(LISTED, repo.to_string(), Vec::new()).await?;
        self.write().repo(repo).listed = true;
        Ok(())
    }

    /// Records that the catalog markers have been merged.
    ///
    /// # Errors
    ///
    /// `Io` when the row cannot be written.
    pub(crate) async fn mark_catalog_listed(&self) -> Result<()> {
        let _writing = self.writes.lock().await;
        let key = CATALOG_LISTED.to_owned();
        self.db.put(LISTED, key, Vec::new()).await?;
        self.write().catalog_listed = true;
        Ok(())
    }

    /// Makes `changes`, in order, and queues their write-back; changes that
    /// would leave a value as it is are skipped. Returns how many were made.
    ///
    /// # Errors
    ///
    /// `Io` when the queue or a row cannot be written; the changes before
    /// the failing one are made.
    pub(crate) async fn apply(&self, changes: Vec<Change>) -> Result<usize> {
        let _writing = self.writes.lock().await;
        let changes: Vec<Change> = {
            let state = self.read();
            changes.into_iter().filter(|c| !state.holds(c)).collect()
        };
        for change in &changes {
            self.writeback.push(change.job(), Duration::ZERO).await?;
        }
        let made = changes.len();
        for change in changes {
            self.persist(change).await?;
        }
        Ok(made)
    }

    /// Keeps values read from the backend, for keys that have no local
    /// value; nothing is written back.
    ///
    /// # Errors
    ///
    /// `Io` when a row cannot be written.
    pub(crate) async fn cache(&self, changes: Vec<Change>) -> Result<()> {
        let _writing = self.writes.lock().await;
        let changes: Vec<Change> = {
            let state = self.read();
            changes.into_iter().filter(|c| !state.has_key(c)).collect()
        };
        for change in changes {
            self.persist(change).await?;
        }
        Ok(())
    }

    async fn persist(&self, change: Change) -> Result<()> {
        let (table, key, value) = change.row();
        self.db.put(table, key, value.to_vec()).await?;
        self.write().apply(change);
        Ok(())
    }

    /// What the write-back of `job` must write now: the current value or
    /// a tombstone; `None` when there is nothing here to write.
    pub(crate) async fn content(&self, job: &WriteBackJob) -> Option<Bytes> {
        let _writing = self.writes.lock().await;
        let state = self.read();
        match job {
            WriteBackJob::Tag { repo, tag } => {
                let digest = state.repos.get(repo)?.tags.get(tag)?;
                Some(layout::encode_tag(digest.as_ref()))
            }
            WriteBackJob::Record { repo, digest } => {
                let record = state.repos.get(repo)?.records.get(digest)?;
                Some(layout::encode_record(record.as_ref()))
            }
            WriteBackJob::Catalog { repo } => state
                .repos
                .get(repo)
                .filter(|s| s.cataloged)
                .map(|_| Bytes::from(repo.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoName {
        RepoName::new("team/app").unwrap()
    }

    fn tag(t: &str) -> Tag {
        Tag::new(t).unwrap()
    }

    fn set(t: &str, digest: Option<Digest>) -> Change {
        Change::Tag {
            repo: repo(),
            tag: tag(t),
            digest,
        }
    }

    async fn open(path: &std::path::Path) -> Store {
        let db = Database::open(path).await.unwrap();
        Store::open(&db, QueueConfig::default()).await.unwrap()
    }

    #[tokio::test]
    async fn writes_survive_a_reopen_and_queue_their_write_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bi.redb");
        let (d1, d2) = (Digest::sha256_of(b"1"), Digest::sha256_of(b"2"));
        {
            let store = open(&path).await;
            let made = store
                .apply(vec![set("v1", Some(d1)), set("v2", Some(d2))])
                .await
                .unwrap();
            assert_eq!(made, 2);
            assert_eq!(store.apply(vec![set("v1", Some(d1))]).await.unwrap(), 0);
            store.apply(vec![set("v2", None)]).await.unwrap();
            assert_eq!(store.writeback().len(), 2, "one job per key");
        }
        let store = open(&path).await;
        assert_eq!(store.tag(&repo(), &tag("v1")), Lookup::Found(d1));
        assert_eq!(store.tag(&repo(), &tag("v2")), Lookup::Deleted);
        assert_eq!(store.tag(&repo(), &tag("v3")), Lookup::Unknown);
        assert_eq!(store.tags(&repo()), Some(vec![tag("v1")]));
        assert_eq!(store.writeback().len(), 2);
        let job = WriteBackJob::Tag {
            repo: repo(),
            tag: tag("v2"),
        };
        assert_eq!(store.content(&job).await, Some(Bytes::new()));
    }

    #[tokio::test]
    async fn cached_values_never_overwrite_local_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("bi.redb")).await;
        let (old, new) = (Digest::sha256_of(b"old"), Digest::sha256_of(b"new"));
        store.apply(vec![set("v1", Some(new))]).await.unwrap();
        store.apply(vec![set("gone", None)]).await.unwrap();
        store
            .cache(vec![
                set("v1", Some(old)),
                set("gone", Some(old)),
                set("v9", Some(old)),
            ])
            .await
            .unwrap();
        assert_eq!(store.tag(&repo(), &tag("v1")), Lookup::Found(new));
        assert_eq!(store.tag(&repo(), &tag("gone")), Lookup::Deleted);
        assert_eq!(store.tag(&repo(), &tag("v9")), Lookup::Found(old));
        assert_eq!(
            store.writeback().len(),
            2,
            "cached values are not written back"
        );
        assert_eq!(store.tags_pointing_at(&repo(), &old), vec![tag("v9")]);
    }
}
