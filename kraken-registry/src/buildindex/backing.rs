//! The backend behind build-index: the source of truth its local tables
//! fall back to on a miss and are recovered from after a wipe.
//!
//! A local miss reads the one object (and keeps a value it finds; a
//! tombstone or a missing object is not kept, so nothing negative is
//! cached). Listing a repository that was never listed here merges its
//! backend listing once: every tag and record the backend holds that the
//! local tables lack is read and kept. The catalog is recovered the same
//! way from the catalog markers.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use kraken_core::{Backend, BackendError, BackendErrorKind, Digest, Namespace};

use super::ManifestRecord;
use super::layout;
use super::store::{Change, Lookup, Store};
use crate::reference::{RepoName, Tag};

/// Largest tag or record object read; both are far smaller.
const MAX_OBJECT: u64 = 1024 * 1024;

/// Names asked for per listing page.
const PAGE: usize = 1000;

/// Objects read at once while recovering a repository.
const RECOVERY_READS: usize = 8;

/// The backend, and where its catalog markers live.
#[derive(Debug, Clone)]
pub(crate) struct Backing {
    backend: Arc<dyn Backend>,
    catalog: Namespace,
}

impl Backing {
    pub(crate) fn new(backend: Arc<dyn Backend>, catalog: Namespace) -> Backing {
        Backing { backend, catalog }
    }

    /// The namespace of the catalog markers.
    pub(crate) fn catalog(&self) -> &Namespace {
        &self.catalog
    }

    /// The backend's kind, for messages.
    pub(crate) fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Stores `content` as the object `name`.
    pub(crate) async fn put(
        &self,
        namespace: &Namespace,
        name: &str,
        content: Bytes,
    ) -> Result<(), BackendError> {
        let length = content.len() as u64;
        let body = futures::stream::once(async move { Ok(content) }).boxed();
        self.backend.upload(namespace, name, length, body).await
    }

    /// Reads a small object whole; `None` when it does not exist.
    async fn get(&self, namespace: &Namespace, name: &str) -> Result<Option<Bytes>, BackendError> {
        let stream = match self
            .backend
            .download(namespace, name, Some(0..MAX_OBJECT + 1))
            .await
        {
            Ok(stream) => stream,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes: BytesMut = stream
            .try_fold(BytesMut::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await?;
        if bytes.len() as u64 > MAX_OBJECT {
            let message = format!("object {name} in {namespace} is larger than {MAX_OBJECT} bytes");
            return Err(BackendError::new(BackendErrorKind::Corrupt, message));
        }
        Ok(Some(bytes.freeze()))
    }

    /// The digest the tag object `<repo>:<tag>` in `namespace` holds;
    /// `None` when it is missing or a tombstone.
    pub(crate) async fn tag(
        &self,
        namespace: &Namespace,
        repo: &RepoName,
        tag: &Tag,
    ) -> Result<Option<Digest>, BackendError> {
        let name = layout::tag_name(repo, tag);
        match self.get(namespace, &name).await? {
            Some(bytes) => layout::decode_tag(&bytes),
            None => Ok(None),
        }
    }

    /// The record of `digest` in `repo`; `None` when missing or deleted.
    pub(crate) async fn record(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>, BackendError> {
        let name = layout::record_name(repo, digest);
        match self.get(&repo.namespace(), &name).await? {
            Some(bytes) => layout::decode_record(&bytes),
            None => Ok(None),
        }
    }

    /// Every name in `namespace` under `prefix`, across pages. A backend
    /// that cannot list has nothing to recover: it answers no names.
    async fn list(&self, namespace: &Namespace, prefix: &str) -> Result<Vec<String>, BackendError> {
        let mut names = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let listed = self
                .backend
                .list(namespace, prefix, page.as_deref(), PAGE)
                .await;
            let listed = match listed {
                Ok(listed) => listed,
                Err(e) if e.kind() == BackendErrorKind::Unsupported => return Ok(names),
                Err(e) => return Err(e),
            };
            names.extend(listed.names);
            // A backend handing out the same token twice would loop.
            match listed.next {
                Some(next) if page.as_ref() != Some(&next) => page = Some(next),
                _ => return Ok(names),
            }
        }
    }

    /// Answers when the backend can be reached: a stat that finds
    /// nothing counts, as does a backend that cannot stat.
    pub(crate) async fn probe(&self) -> Result<(), BackendError> {
        match self
            .backend
            .stat(&self.catalog, "kraken-readiness-probe")
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.kind() == BackendErrorKind::Unsupported => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Merges the backend's tags and records of `repo` into `store`, once:
/// later calls return at once. A repository the backend lacks and the
/// store does not know stays unlisted, so the answer is asked again next
/// time rather than remembered.
///
/// # Errors
///
/// The backend's failure; the database's when a row cannot be written.
pub(crate) async fn recover_repo(
    store: &Store,
    backing: &Backing,
    repo: &RepoName,
) -> kraken_core::Result<()> {
    if store.is_listed(repo) {
        return Ok(());
    }
    let namespace = repo.namespace();
    let tags = backing.list(&namespace, &layout::tag_prefix(repo)).await?;
    let records = backing
        .list(&namespace, &layout::record_prefix(repo))
        .await?;
    let mut changes = recover_tags(store, backing, repo, &tags).await?;
    changes.extend(recover_records(store, backing, repo, &records).await?);
    let found = !changes.is_empty();
    store.cache(changes).await?;
    if found || store.knows(repo) {
        store.mark_listed(repo).await?;
        tracing::info!(
            repository = %repo,
            tags = tags.len(),
            records = records.len(),
            "repository recovered from the backend"
        );
    }
    Ok(())
}

async fn recover_tags(
    store: &Store,
    backing: &Backing,
    repo: &RepoName,
    names: &[String],
) -> kraken_core::Result<Vec<Change>> {
    let namespace = repo.namespace();
    let missing = unknown_tags(store, repo, names);
    let read = futures::stream::iter(missing)
        .map(|tag| async {
            let digest = backing.tag(&namespace, repo, &tag).await?;
            Ok::<_, BackendError>(digest.map(|d| Change::Tag {
                repo: repo.clone(),
                tag,
                digest: Some(d),
            }))
        })
        .buffer_unordered(RECOVERY_READS);
    Ok(read
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect())
}

async fn recover_records(
    store: &Store,
    backing: &Backing,
    repo: &RepoName,
    names: &[String],
) -> kraken_core::Result<Vec<Change>> {
    let missing = unknown_records(store, repo, names);
    let read = futures::stream::iter(missing)
        .map(|digest| async move {
            let record = backing.record(repo, &digest).await?;
            Ok::<_, BackendError>(record.map(|r| Change::Record {
                repo: repo.clone(),
                digest,
                record: Some(r),
            }))
        })
        .buffer_unordered(RECOVERY_READS);
    Ok(read
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// The tags among the listed `names` that the store has no value for.
fn unknown_tags(store: &Store, repo: &RepoName, names: &[String]) -> Vec<Tag> {
    let parsed = names.iter().filter_map(|n| layout::parse_tag_name(n));
    parsed
        .filter(|(r, t)| r == repo && store.tag(repo, t) == Lookup::Unknown)
        .map(|(_, tag)| tag)
        .collect()
}

/// The records among the listed `names` that the store has no value for.
fn unknown_records(store: &Store, repo: &RepoName, names: &[String]) -> Vec<Digest> {
    let parsed = names.iter().filter_map(|n| layout::parse_record_name(n));
    parsed
        .filter(|(r, d)| r == repo && store.record(repo, d) == Lookup::Unknown)
        .map(|(_, digest)| digest)
        .collect()
}

/// Merges the backend's catalog markers into `store`, once.
///
/// # Errors
///
/// The backend's failure; the database's when a row cannot be written.
pub(crate) async fn recover_catalog(store: &Store, backing: &Backing) -> kraken_core::Result<()> {
    if store.catalog_listed() {
        return Ok(());
    }
    let names = backing.list(backing.catalog(), "").await?;
    let repos: Vec<Change> = names
        .iter()
        .filter_map(|n| RepoName::new(n.as_str()).ok())
        .map(|repo| Change::Catalog { repo })
        .collect();
    let found = repos.len();
    store.cache(repos).await?;
    store.mark_catalog_listed().await?;
    tracing::info!(repositories = found, "catalog recovered from the backend");
    Ok(())
}
