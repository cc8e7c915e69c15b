//! Build-index as the [`TagIndex`] of a registry, over its HTTP client.

use async_trait::async_trait;
use kraken_core::Digest;

use super::TagIndex;
use crate::buildindex::{BuildIndexClient, Page};
use crate::error::{ErrorCode, Result};
use crate::manifest::Descriptor;
use crate::reference::{RepoName, Tag};

#[async_trait]
impl TagIndex for BuildIndexClient {
    async fn resolve(&self, repo: &RepoName, tag: &Tag, upstream: Option<&str>) -> Result<Digest> {
        self.get_tag(repo, tag, upstream).await
    }

    async fn has_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        match self.get_manifest(repo, digest).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == ErrorCode::ManifestUnknown => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tags: &[Tag],
        pushed_as: Option<&str>,
    ) -> Result<()> {
        BuildIndexClient::put_manifest(self, repo, digest, tags, pushed_as)
            .await
            .map(drop)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        BuildIndexClient::delete_tag(self, repo, tag).await
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        BuildIndexClient::delete_manifest(self, repo, digest).await
    }

    async fn tags(&self, repo: &RepoName) -> Result<Vec<Tag>> {
        Ok(self.list_tags(repo, &Page::default()).await?.tags)
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        BuildIndexClient::referrers(self, repo, digest, artifact_type).await
    }

    async fn catalog(&self) -> Result<Vec<RepoName>> {
        Ok(BuildIndexClient::catalog(self, &Page::default())
            .await?
            .repositories)
    }

    async fn ready(&self) -> Result<()> {
        self.readiness().await
    }
}
