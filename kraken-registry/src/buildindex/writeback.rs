//! The write-back of tags, records and catalog markers to the backend: a
//! durable queue, so a push succeeds while the backend is down and lands
//! once it is back, also across restarts.
//!
//! A job names a key, not a value: the worker writes whatever the key
//! holds when it runs (see [`Store::content`]), so jobs for one key
//! coalesce and the backend ends up with the latest value whatever order
//! attempts fail and succeed in.

use std::sync::Arc;

use async_trait::async_trait;
use kraken_core::{BackendErrorKind, Digest, Namespace};
use kraken_p2p::queue::{Job, Outcome, Worker};
use serde::{Deserialize, Serialize};

use super::backing::Backing;
use super::layout;
use super::store::Store;
use crate::reference::{RepoName, Tag};

/// A key whose local value must reach the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum WriteBackJob {
    /// The tag object `<repo>:<tag>`.
    Tag { repo: RepoName, tag: Tag },
    /// The record object `<repo>@<digest>`.
    Record { repo: RepoName, digest: Digest },
    /// The catalog marker of `repo`.
    Catalog { repo: RepoName },
}

impl Job for WriteBackJob {
    fn key(&self) -> String {
        match self {
            WriteBackJob::Tag { repo, tag } => format!("tag {}", layout::tag_name(repo, tag)),
            WriteBackJob::Record { repo, digest } => {
                format!("record {}", layout::record_name(repo, digest))
            }
            WriteBackJob::Catalog { repo } => format!("catalog {repo}"),
        }
    }
}

impl WriteBackJob {
    /// Where the job writes: namespace and object name.
    fn object(&self, catalog: &Namespace) -> (Namespace, String) {
        match self {
            WriteBackJob::Tag { repo, tag } => (repo.namespace(), layout::tag_name(repo, tag)),
            WriteBackJob::Record { repo, digest } => {
                (repo.namespace(), layout::record_name(repo, digest))
            }
            WriteBackJob::Catalog { repo } => (catalog.clone(), repo.to_string()),
        }
    }
}

/// Runs write-back jobs.
pub(crate) struct WriteBackWorker {
    pub(crate) store: Arc<Store>,
    pub(crate) backing: Backing,
}

#[async_trait]
impl Worker<WriteBackJob> for WriteBackWorker {
    async fn run(&self, job: &WriteBackJob) -> kraken_core::Result<Outcome> {
        let Some(content) = self.store.content(job).await else {
            return Ok(Outcome::Done("nothing to write"));
        };
        let (namespace, name) = job.object(self.backing.catalog());
        match self.backing.put(&namespace, &name, content).await {
            Ok(()) => Ok(Outcome::Done("written to the backend")),
            // A read-only backend never takes the write; the operator must
            // route the namespace to a writable one.
            Err(e) if e.kind() == BackendErrorKind::Unsupported => Ok(Outcome::Abandon(format!(
                "backend refuses writes to {namespace}: {e}"
            ))),
            Err(e) => Err(kraken_core::Error::Backend(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_group_by_kind_and_name_the_object() {
        let repo = RepoName::new("library/ubuntu").unwrap();
        let job = WriteBackJob::Tag {
            repo: repo.clone(),
            tag: Tag::new("latest").unwrap(),
        };
        assert_eq!(job.key(), "tag library/ubuntu:latest");
        let catalog = Namespace::new("kraken-catalog").unwrap();
        let (ns, name) = WriteBackJob::Catalog { repo }.object(&catalog);
        assert_eq!(
            (ns.as_str(), name.as_str()),
            ("kraken-catalog", "library/ubuntu")
        );
        let json = serde_json::to_string(&job).unwrap();
        assert_eq!(serde_json::from_str::<WriteBackJob>(&json).unwrap(), job);
    }
}
