//! [`BuildIndex`], the service behind the HTTP API: every operation, with
//! the dependency check on put, the fallback to the backend on a local
//! miss and the queuing of write-backs and replication.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use kraken_core::{Backend, BackendError, Digest, Namespace};
use kraken_p2p::metrics::Metrics;
use kraken_p2p::origin::OriginClient;
use kraken_p2p::queue::{Database, DurableQueue};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backing::{Backing, recover_catalog, recover_repo};
use super::replication::{ReplicationJob, ReplicationWorker, Rules};
use super::source::OriginSource;
use super::store::{Change, Lookup, Store};
use super::writeback::WriteBackWorker;
use super::{BuildIndexConfig, Catalog, ManifestRecord, Page, TagList};
use crate::error::{Error, ErrorCode, Result, Subject};
use crate::manifest::{Descriptor, Manifest};
use crate::reference::{RepoName, Tag};
use crate::resolve::walk;

/// The table of the replication queue.
const REPLICATION: &str = "buildindex_replication";

/// A running build-index: local tables, write-back and replication
/// queues, and the clients of the origins and the backend. Cheap to
/// clone; serve it with [`router`](super::router) or
/// [`BuildIndexServer`](super::BuildIndexServer).
#[derive(Clone)]
pub struct BuildIndex {
    inner: Arc<Inner>,
}

struct Inner {
    config: BuildIndexConfig,
    store: Arc<Store>,
    backing: Backing,
    origins: OriginClient,
    rules: Rules,
    replication: Arc<DurableQueue<ReplicationJob>>,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for BuildIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildIndex")
            .field("database", &self.inner.config.database_path)
            .field("origins", &self.inner.origins.members())
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn core_error(error: &kraken_core::Error) -> Error {
    Error::from_core(Subject::Manifest, error)
}

fn backend_error(error: BackendError) -> Error {
    core_error(&kraken_core::Error::Backend(error))
}

impl BuildIndex {
    /// Validates the config, opens the database (tables and both queues,
    /// with what they held) and starts the write-back and replication
    /// workers.
    ///
    /// # Errors
    ///
    /// `UNKNOWN` naming a bad setting, or when the database cannot be
    /// opened (another process holds it, say).
    pub async fn start(
        config: BuildIndexConfig,
        backend: Arc<dyn Backend>,
        origins: OriginClient,
    ) -> Result<BuildIndex> {
        let invalid =
            |m: String| Error::new(ErrorCode::Unknown, format!("build-index config: {m}"));
        config.validate().map_err(invalid)?;
        let rules = Rules::compile(&config.replication).map_err(invalid)?;
        let (store, replication) = open_tables(&config).await.map_err(|e| core_error(&e))?;
        let backing = Backing::new(backend, config.catalog_namespace.clone());
        let shutdown = CancellationToken::new();
        let writer = Arc::new(WriteBackWorker {
            store: store.clone(),
            backing: backing.clone(),
        });
        let replicator = Arc::new(ReplicationWorker {
            store: store.clone(),
            origins: origins.clone(),
            origin_client: config.origin_client.clone(),
            client: config.client.clone(),
            max_manifest: config.max_manifest_size.as_u64(),
            remotes: Mutex::default(),
        });
        let tasks = vec![
            store.writeback().start(writer, shutdown.child_token()),
            replication.start(replicator, shutdown.child_token()),
        ];
        let replication = Arc::new(replication);
        let metrics = index_metrics(&store, &replication);
        tracing::info!(
            database = %config.database_path.display(),
            backend = backing.kind(),
            pending_writebacks = store.writeback().len(),
            pending_replications = replication.len(),
            "build-index started"
        );
        let inner = Inner {
            config,
            store,
            backing,
            origins,
            rules,
            replication,
            metrics,
            shutdown,
            tasks: Mutex::new(tasks),
        };
        Ok(BuildIndex {
            inner: Arc::new(inner),
        })
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn backing(&self) -> &Backing {
        &self.inner.backing
    }

    /// Records the manifest `digest` of `repo` and points each of `tags`
    /// at it, overwriting what they pointed at. The manifest is read from
    /// the origins and its whole tree checked there first; an index's
    /// child manifests are recorded in `repo` too. `media_type` is the
    /// type the manifest was pushed as, used when its bytes name none.
    /// The write-back and the replication of each tag are queued.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when the origins lack the manifest;
    /// `MANIFEST_INVALID` when it does not parse or is too large;
    /// `MANIFEST_BLOB_UNKNOWN` naming every missing digest (nothing is
    /// stored then); `UNAVAILABLE` when the origins cannot tell.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tags: &[Tag],
        media_type: Option<&str>,
    ) -> Result<ManifestRecord> {
        let span = tracing::debug_span!("put_manifest", repository = %repo, %digest);
        async move {
            let records = self.check(repo, digest, media_type).await?;
            let record = records.last().cloned().expect("the root is checked last");
            let mut changes: Vec<Change> = records
                .into_iter()
                .map(|r| record_change(repo, r))
                .collect();
            changes.extend(tags.iter().map(|tag| Change::Tag {
                repo: repo.clone(),
                tag: tag.clone(),
                digest: Some(*digest),
            }));
            changes.push(Change::Catalog { repo: repo.clone() });
            let made = self.store().apply(changes).await;
            let made = made.map_err(|e| core_error(&e))?;
            self.queue_replication(repo, tags, digest).await?;
            tracing::debug!(made, tags = tags.len(), "manifest recorded");
            Ok(record)
        }
        .instrument(span)
        .await
    }

    /// Reads the manifest from the origins and checks its whole tree is
    /// there; answers the records of its child manifests, then its own.
    async fn check(
        &self,
        repo: &RepoName,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<Vec<ManifestRecord>> {
        let max = self.inner.config.max_manifest_size.as_u64();
        let source = OriginSource::new(self.inner.origins.clone(), repo.namespace(), max);
        let bytes = source.root(digest).await?;
        let manifest = Manifest::parse(&bytes, media_type)?;
        let tree = walk(&source, *digest, &manifest).await?;
        tree.require_complete()?;
        let mut records = source.child_records(&manifest, &tree)?;
        records.push(ManifestRecord::of(*digest, bytes.len() as u64, &manifest));
        Ok(records)
    }

    async fn queue_replication(
        &self,
        repo: &RepoName,
        tags: &[Tag],
        digest: &Digest,
    ) -> Result<()> {
        for tag in tags {
            for remote in self.inner.rules.remotes(repo, tag) {
                let job = ReplicationJob {
                    repo: repo.clone(),
                    tag: tag.clone(),
                    digest: *digest,
                    remote,
                };
                let queued = self.inner.replication.push(job, std::time::Duration::ZERO);
                queued.await.map_err(|e| core_error(&e))?;
            }
        }
        Ok(())
    }

    /// The digest `tag` of `repo` points at: the local value, else the
    /// backend's. With `upstream` (containerd's `ns`, such as
    /// `docker.io`), a tag neither has is looked up under the namespace
    /// `<upstream, ':' as '_'>/<repo>` (a pull-through backend's), and
    /// that answer is not kept, as upstream tags move. A tag the cluster
    /// has is answered the same with or without `upstream`.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` for an unknown tag; `NAME_INVALID` for an
    /// `upstream` that is not a host; `UNAVAILABLE` when the backend
    /// cannot be read.
    pub async fn get_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        upstream: Option<&str>,
    ) -> Result<Digest> {
        if let Some(digest) = self.find_tag(repo, tag).await? {
            return Ok(digest);
        }
        let Some(upstream) = upstream else {
            return Err(self.tag_unknown(repo, tag, None));
        };
        let namespace = upstream_namespace(upstream, repo)?;
        let found = self.backing().tag(&namespace, repo, tag).await;
        found
            .map_err(backend_error)?
            .ok_or_else(|| self.tag_unknown(repo, tag, Some(&namespace)))
    }

    async fn find_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<Digest>> {
        match self.store().tag(repo, tag) {
            Lookup::Found(digest) => return Ok(Some(digest)),
            Lookup::Deleted => return Ok(None),
            Lookup::Unknown => {}
        }
        let namespace = repo.namespace();
        let found = self.backing().tag(&namespace, repo, tag).await;
        let Some(digest) = found.map_err(backend_error)? else {
            return Ok(None);
        };
        let change = Change::Tag {
            repo: repo.clone(),
            tag: tag.clone(),
            digest: Some(digest),
        };
        self.keep(change).await;
        // A push that landed meanwhile wins over what the backend said.
        Ok(match self.store().tag(repo, tag) {
            Lookup::Found(now) => Some(now),
            Lookup::Deleted => None,
            Lookup::Unknown => Some(digest),
        })
    }

    /// Keeps a value read from the backend; failing to is no reason to
    /// fail the read.
    async fn keep(&self, change: Change) {
        if let Err(e) = self.store().cache(vec![change]).await {
            tracing::warn!(error = %e, "cannot keep a value read from the backend");
        }
    }

    fn tag_unknown(&self, repo: &RepoName, tag: &Tag, upstream: Option<&Namespace>) -> Error {
        let consulted = match upstream {
            Some(ns) => format!(
                "build-index, its {} backend and upstream {ns}",
                self.backing().kind()
            ),
            None => format!("build-index and its {} backend", self.backing().kind()),
        };
        Error::new(
            ErrorCode::ManifestUnknown,
            format!("tag {tag} is unknown in {repo} (asked {consulted})"),
        )
        .with_detail(serde_json::json!({ "repository": repo, "tag": tag }))
    }

    /// Deletes `tag` of `repo`; the tombstone is written back.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` for an unknown tag.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        if self.find_tag(repo, tag).await?.is_none() {
            return Err(self.tag_unknown(repo, tag, None));
        }
        let change = Change::Tag {
            repo: repo.clone(),
            tag: tag.clone(),
            digest: None,
        };
        self.store()
            .apply(vec![change])
            .await
            .map_err(|e| core_error(&e))?;
        tracing::info!(repository = %repo, %tag, "tag deleted");
        Ok(())
    }

    /// The record of the manifest `digest` in `repo`: local, else the
    /// backend's.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when `repo` has no such manifest.
    pub async fn get_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<ManifestRecord> {
        match self.store().record(repo, digest) {
            Lookup::Found(record) => return Ok(record),
            Lookup::Deleted => return Err(Error::unknown(Subject::Manifest, digest)),
            Lookup::Unknown => {}
        }
        let found = self.backing().record(repo, digest).await;
        let record = found
            .map_err(backend_error)?
            .ok_or_else(|| Error::unknown(Subject::Manifest, digest))?;
        self.keep(record_change(repo, record.clone())).await;
        match self.store().record(repo, digest) {
            Lookup::Found(now) => Ok(now),
            Lookup::Deleted => Err(Error::unknown(Subject::Manifest, digest)),
            Lookup::Unknown => Ok(record),
        }
    }

    /// Deletes the manifest `digest` from `repo` and every tag of `repo`
    /// that points at it.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when `repo` has no such manifest;
    /// `UNAVAILABLE` when the backend must be listed (the repository was
    /// never listed here) and cannot be, as tags pointing at the manifest
    /// could be missed.
    pub async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        self.get_manifest(repo, digest).await?;
        recover_repo(self.store(), self.backing(), repo)
            .await
            .map_err(|e| core_error(&e))?;
        let tags = self.store().tags_pointing_at(repo, digest);
        let mut changes: Vec<Change> = tags
            .iter()
            .map(|tag| Change::Tag {
                repo: repo.clone(),
                tag: tag.clone(),
                digest: None,
            })
            .collect();
        changes.push(Change::Record {
            repo: repo.clone(),
            digest: *digest,
            record: None,
        });
        self.store()
            .apply(changes)
            .await
            .map_err(|e| core_error(&e))?;
        tracing::info!(repository = %repo, %digest, tags = tags.len(), "manifest deleted");
        Ok(())
    }

    /// Merges the backend's listing of `repo` once; when the backend
    /// fails, a repository known here is answered from the local tables.
    async fn recover(&self, repo: &RepoName) -> Result<()> {
        match recover_repo(self.store(), self.backing(), repo).await {
            Ok(()) => Ok(()),
            Err(e) if self.store().knows(repo) => {
                tracing::warn!(
                    repository = %repo,
                    error = %e,
                    "backend listing failed; answering from the local tables"
                );
                Ok(())
            }
            Err(e) => Err(core_error(&e)),
        }
    }

    /// The tags of `repo`, in byte order, from `page`.
    ///
    /// # Errors
    ///
    /// `NAME_UNKNOWN` for a repository neither build-index nor its
    /// backend knows; `UNAVAILABLE` when the backend cannot tell.
    pub async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<TagList> {
        self.recover(repo).await?;
        let tags = self.store().tags(repo).ok_or_else(|| {
            Error::new(
                ErrorCode::NameUnknown,
                format!("repository {repo} is unknown"),
            )
            .with_detail(serde_json::json!({ "repository": repo }))
        })?;
        Ok(TagList {
            name: repo.clone(),
            tags: page.apply(tags, Tag::as_str),
        })
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`,
    /// of `artifact_type` when given, by digest. An unknown subject or
    /// repository has none.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the backend must be listed and cannot be.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        self.recover(repo).await?;
        let records = self.store().records(repo);
        let referring = records.iter().filter(|r| {
            r.subject.as_ref() == Some(subject)
                && artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t))
        });
        Ok(referring.map(ManifestRecord::descriptor).collect())
    }

    /// The repositories build-index knows, sorted, from `page`. The
    /// backend's catalog markers are merged the first time; if the
    /// backend fails then, the local catalog is answered.
    ///
    /// # Errors
    ///
    /// None today; the signature leaves room for a backend that must
    /// answer.
    pub async fn catalog(&self, page: &Page) -> Result<Catalog> {
        if let Err(e) = recover_catalog(self.store(), self.backing()).await {
            tracing::warn!(
                error = %e,
                "backend catalog listing failed; answering the local catalog"
            );
        }
        let repos = self.store().catalog();
        Ok(Catalog {
            repositories: page.apply(repos, RepoName::as_str),
        })
    }

    /// The HTTP addresses of this cluster's origins.
    pub fn origin_members(&self) -> Vec<String> {
        self.inner.origins.members().to_vec()
    }

    /// Succeeds when the backend answers a stat (not found counts) and an
    /// origin answers.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` naming what does not answer.
    pub async fn readiness(&self) -> Result<()> {
        let unavailable = |m: String| Error::new(ErrorCode::Unavailable, m).with_retry_after(1);
        self.backing()
            .probe()
            .await
            .map_err(|e| unavailable(format!("backend not ready: {e}")))?;
        let probe = Digest::sha256_of(b"kraken-readiness-probe");
        self.inner
            .origins
            .locations(&probe)
            .await
            .map_err(|e| unavailable(format!("no origin answers: {e}")))?;
        Ok(())
    }

    /// The tokens writes must carry.
    pub(crate) fn auth(&self) -> &kraken_p2p::auth::WriteAuth {
        &self.inner.config.auth
    }

    /// The metrics `GET /metrics` answers: requests by route, and the
    /// write-back and replication queues.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Write-backs not yet in the backend.
    pub fn pending_writebacks(&self) -> usize {
        self.store().writeback().len()
    }

    /// Replication jobs not yet done.
    pub fn pending_replications(&self) -> usize {
        self.inner.replication.len()
    }

    /// Stops both workers, letting attempts in flight finish; pending jobs
    /// stay queued for the next start. The database is closed once every
    /// clone is dropped, those of a stopped server's connections included,
    /// which axum drops a moment after its server stopped.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
        tracing::info!("build-index stopped");
    }
}

/// The queue gauges. They hold weak handles: a scrape never keeps the
/// database open after the build-index is gone.
fn index_metrics(store: &Arc<Store>, replication: &Arc<DurableQueue<ReplicationJob>>) -> Metrics {
    let metrics = Metrics::new("build_index");
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let weak: Weak<Store> = Arc::downgrade(store);
    metrics.gauge(
        "buildindex_writeback_pending",
        "Tags, records and catalog markers waiting to be written to the backend",
        move || weak.upgrade().map_or(0, |s| count(s.writeback().len())),
    );
    let weak = Arc::downgrade(replication);
    metrics.gauge(
        "buildindex_replication_pending",
        "Tags waiting to be replicated to a remote cluster",
        move || weak.upgrade().map_or(0, |q| count(q.len())),
    );
    metrics
}

/// Opens the database: the local tables with the write-back queue, and
/// the replication queue.
async fn open_tables(
    config: &BuildIndexConfig,
) -> kraken_core::Result<(Arc<Store>, DurableQueue<ReplicationJob>)> {
    let db = Database::open(&config.database_path).await?;
    let store = Store::open(&db, config.writeback.clone()).await?;
    let queue = config.replication.queue.clone();
    let replication = DurableQueue::open(&db, REPLICATION, queue).await?;
    Ok((Arc::new(store), replication))
}

fn record_change(repo: &RepoName, record: ManifestRecord) -> Change {
    Change::Record {
        repo: repo.clone(),
        digest: record.digest,
        record: Some(record),
    }
}

/// The namespace a pull-through backend keeps `repo` of `upstream` under.
///
/// # Errors
///
/// `NAME_INVALID` when `upstream` is not a `host[:port]`.
pub(crate) fn upstream_namespace(upstream: &str, repo: &RepoName) -> Result<Namespace> {
    let host = upstream.replace(':', "_");
    let is_host = !host.is_empty()
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let invalid = || {
        Error::new(
            ErrorCode::NameInvalid,
            format!("upstream {upstream:?} is not a registry host[:port]"),
        )
    };
    if !is_host {
        return Err(invalid());
    }
    Namespace::new(format!("{host}/{repo}")).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_hosts_become_a_namespace_prefix() {
        let repo = RepoName::new("library/ubuntu").unwrap();
        let ns = upstream_namespace("docker.io", &repo).unwrap();
        assert_eq!(ns.as_str(), "docker.io/library/ubuntu");
        let ns = upstream_namespace("localhost:5000", &repo).unwrap();
        assert_eq!(ns.as_str(), "localhost_5000/library/ubuntu");
        for bad in ["", "a/b", "..", "../x", "x y", "é"] {
            let e = upstream_namespace(bad, &repo).unwrap_err();
            assert_eq!(e.code(), ErrorCode::NameInvalid, "{bad:?}");
        }
    }
}
