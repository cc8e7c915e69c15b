//! Replication of tags to other clusters.
//!
//! A put queues one durable job per tag and remote whose `repo:tag`
//! matches a rule. The worker compares digests, not mere existence: a
//! remote whose tag already names the job's digest is done; one that lacks
//! the tag or names another digest gets the whole tree. For that it asks
//! the remote build-index for its origins (`GET /origin`), walks the tree
//! at the local origins, has them copy every blob the remote origins lack
//! and then every manifest, children first, registers the child manifests
//! at the remote build-index and finally puts the root with the tag there
//! (which applies the remote's own rules, so replication can chain).
//!
//! A tag pushed again while its job waits replaces the job's digest; one
//! pushed while the job runs queues it again (the queue keeps both apart),
//! so the newest digest always lands. A job whose digest the local tag no
//! longer names is dropped as superseded.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kraken_core::{Digest, Namespace};
use kraken_p2p::origin::{OriginClient, OriginClientConfig};
use kraken_p2p::queue::{Job, Outcome, Worker};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::client::BuildIndexClient;
use super::source::OriginSource;
use super::store::{Lookup, Store};
use super::{BuildIndexClientConfig, ReplicationConfig};
use crate::error::{Error, ErrorCode};
use crate::manifest::Manifest;
use crate::reference::{RepoName, Tag};
use crate::resolve::{Tree, walk};

/// The compiled rules: which remotes each `repo:tag` goes to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules(Vec<(Regex, Vec<String>)>);

impl Rules {
    /// Compiles the configured rules.
    ///
    /// # Errors
    ///
    /// A message naming a pattern that does not compile.
    pub(crate) fn compile(config: &ReplicationConfig) -> Result<Rules, String> {
        let rules = config
            .rules
            .iter()
            .map(|rule| Ok((rule.compile()?, rule.remotes.clone())))
            .collect::<Result<_, String>>()?;
        Ok(Rules(rules))
    }

    /// The remotes `repo:tag` goes to, each once.
    pub(crate) fn remotes(&self, repo: &RepoName, tag: &Tag) -> BTreeSet<String> {
        let name = format!("{repo}:{tag}");
        let matching = self.0.iter().filter(|(regex, _)| regex.is_match(&name));
        matching.flat_map(|(_, r)| r.iter().cloned()).collect()
    }
}

/// Bring the remote's `repo:tag` to `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReplicationJob {
    pub(crate) repo: RepoName,
    pub(crate) tag: Tag,
    pub(crate) digest: Digest,
    /// The remote build-index, `host:port`.
    pub(crate) remote: String,
}

impl Job for ReplicationJob {
    fn key(&self) -> String {
        format!("{} {}:{}", self.remote, self.repo, self.tag)
    }
}

/// Why an attempt did not replicate.
enum Failure {
    /// Worth another attempt later.
    Retry(Error),
    /// It can never succeed.
    Never(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        match error.code() {
            ErrorCode::NameInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestInvalid
            | ErrorCode::Denied
            | ErrorCode::Unsupported => Failure::Never(error.to_string()),
            _ => Failure::Retry(error),
        }
    }
}

/// Runs replication jobs.
pub(crate) struct ReplicationWorker {
    pub(crate) store: Arc<Store>,
    pub(crate) origins: OriginClient,
    pub(crate) origin_client: OriginClientConfig,
    pub(crate) client: BuildIndexClientConfig,
    pub(crate) max_manifest: u64,
    /// Clients of the remote build-indexes, made on first use.
    pub(crate) remotes: Mutex<HashMap<String, BuildIndexClient>>,
}

#[async_trait]
impl Worker<ReplicationJob> for ReplicationWorker {
    async fn run(&self, job: &ReplicationJob) -> kraken_core::Result<Outcome> {
        match self.replicate(job).await {
            Ok(how) => Ok(Outcome::Done(how)),
            Err(Failure::Never(why)) => Ok(Outcome::Abandon(why)),
            Err(Failure::Retry(e)) => Err(kraken_core::Error::Io(io::Error::other(format!(
                "replication to {}: {e}",
                job.remote
            )))),
        }
    }
}

impl ReplicationWorker {
    async fn replicate(&self, job: &ReplicationJob) -> Result<&'static str, Failure> {
        match self.store.tag(&job.repo, &job.tag) {
            Lookup::Deleted => return Ok("the tag was deleted since"),
            Lookup::Found(now) if now != job.digest => return Ok("superseded by a newer push"),
            _ => {}
        }
        let remote = self.remote(&job.remote)?;
        match remote.get_tag(&job.repo, &job.tag, None).await {
            Ok(digest) if digest == job.digest => return Ok("the remote has it already"),
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::ManifestUnknown => {}
            Err(e) => return Err(e.into()),
        }
        let members = remote.origin_members().await?;
        let namespace = job.repo.namespace();
        let tree = self.local_tree(&namespace, &job.digest).await?;
        self.copy_tree(&namespace, &tree, &members).await?;
        self.register(&remote, job, &tree).await?;
        tracing::info!(
            repository = %job.repo,
            tag = %job.tag,
            digest = %job.digest,
            remote = %job.remote,
            "tag replicated"
        );
        Ok("replicated")
    }

    fn remote(&self, addr: &str) -> Result<BuildIndexClient, Failure> {
        let mut remotes = self.remotes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = remotes.get(addr) {
            return Ok(client.clone());
        }
        let client = BuildIndexClient::new([addr], self.client.clone()).map_err(Failure::from)?;
        remotes.insert(addr.to_owned(), client.clone());
        Ok(client)
    }

    /// The tree under `digest` at the local origins, which must be whole.
    async fn local_tree(&self, namespace: &Namespace, digest: &Digest) -> Result<Tree, Failure> {
        let source = OriginSource::new(self.origins.clone(), namespace.clone(), self.max_manifest);
        let bytes = source.root(digest).await.map_err(|e| match e.code() {
            ErrorCode::ManifestUnknown => Failure::Never(e.to_string()),
            _ => Failure::Retry(e),
        })?;
        let manifest = Manifest::parse(&bytes, None).map_err(|e| Failure::from(Error::from(e)))?;
        let tree = walk(&source, *digest, &manifest).await?;
        if !tree.missing.is_empty() {
            let missing: Vec<String> = tree.missing.iter().map(Digest::to_string).collect();
            return Err(Failure::Never(format!(
                "the local cluster lacks {}",
                missing.join(", ")
            )));
        }
        Ok(tree)
    }

    /// Has the local origins copy what the remote origins lack: blobs,
    /// then manifests children first.
    async fn copy_tree(
        &self,
        namespace: &Namespace,
        tree: &Tree,
        members: &[String],
    ) -> Result<(), Failure> {
        let remote_origins = OriginClient::new(members.to_vec(), self.origin_client.clone())
            .map_err(|e| Failure::Retry(Error::from_core(crate::error::Subject::Blob, &e)))?;
        for digest in tree.blobs.iter().chain(&tree.manifests) {
            let present = remote_origins.stat(namespace, digest).await;
            if matches!(present, Ok(Some(_))) {
                continue;
            }
            let copied = self
                .origins
                .copy_to_cluster(namespace, digest, members)
                .await;
            match copied {
                Ok(()) => tracing::debug!(%digest, "copied to the remote cluster"),
                Err(kraken_core::Error::NotFound(_)) => {
                    return Err(Failure::Never(format!(
                        "{digest} vanished from the origins"
                    )));
                }
                Err(e) => {
                    return Err(Failure::Retry(Error::from_core(
                        crate::error::Subject::Blob,
                        &e,
                    )));
                }
            }
        }
        Ok(())
    }

    /// Records the child manifests at the remote, then the root with the
    /// tag.
    async fn register(
        &self,
        remote: &BuildIndexClient,
        job: &ReplicationJob,
        tree: &Tree,
    ) -> Result<(), Failure> {
        let Some((root, children)) = tree.manifests.split_last() else {
            return Ok(());
        };
        for child in children {
            let media_type = self.media_type(&job.repo, child);
            remote
                .put_manifest(&job.repo, child, &[], media_type.as_deref())
                .await?;
        }
        let media_type = self.media_type(&job.repo, root);
        let tags = [job.tag.clone()];
        remote
            .put_manifest(&job.repo, root, &tags, media_type.as_deref())
            .await?;
        Ok(())
    }

    /// The media type the local record gives a manifest, so the remote
    /// serves it as this cluster does.
    fn media_type(&self, repo: &RepoName, digest: &Digest) -> Option<String> {
        match self.store.record(repo, digest) {
            Lookup::Found(record) => Some(record.media_type),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildindex::ReplicationRule;

    #[test]
    fn a_tag_goes_to_the_remotes_of_every_matching_rule_once() {
        let config = ReplicationConfig {
            rules: vec![
                ReplicationRule {
                    pattern: "^library/.*:.*$".into(),
                    remotes: vec!["dc2:1".into(), "dc3:1".into()],
                },
                ReplicationRule {
                    pattern: ".*:release-.*".into(),
                    remotes: vec!["dc2:1".into(), "dc4:1".into()],
                },
            ],
            ..ReplicationConfig::default()
        };
        let rules = Rules::compile(&config).unwrap();
        let repo = RepoName::new("library/app").unwrap();
        let remotes = rules.remotes(&repo, &Tag::new("release-1").unwrap());
        assert_eq!(
            remotes.into_iter().collect::<Vec<_>>(),
            ["dc2:1", "dc3:1", "dc4:1"]
        );
        let other = RepoName::new("team/app").unwrap();
        assert!(rules.remotes(&other, &Tag::new("v1").unwrap()).is_empty());
    }
}
