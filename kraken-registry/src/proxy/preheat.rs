//! Preheat: when images are pushed to another registry that is the
//! cluster's backend (Harbor, distribution), that registry's push webhook
//! makes the origins fetch every blob of the image before the first pull.
//!
//! `POST /registry/notifications` accepts the notification envelope of
//! distribution (`{"events": [{"action": "push", "target": {"mediaType",
//! "digest", "repository", ...}}]}`) and Harbor's webhook
//! (`{"type": "PUSH_ARTIFACT", "event_data": {"repository": {...},
//! "resources": [{"digest": ...}]}}`). Each pushed manifest is read through
//! the origins (which read it from the backend), its tree is walked
//! (indexes included, to every platform's layers), and every blob is
//! prefetched: the owning origins start reading it from the backend and
//! seed it once it is in. The answer lists what was started and what could
//! not be found.

use std::collections::BTreeSet;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use bytes::Bytes;
use kraken_core::{Digest, Namespace};
use kraken_p2p::origin::{OriginClient, Prefetch};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result, Subject};
use crate::manifest::{Manifest, media_type};
use crate::reference::RepoName;
use crate::resolve::{ContentSource, walk};

/// A push notification, in either accepted shape.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Notification {
    Distribution {
        #[serde(alias = "Events")]
        events: Vec<DistributionEvent>,
    },
    Harbor {
        #[serde(rename = "type")]
        kind: String,
        event_data: HarborData,
    },
}

#[derive(Debug, Deserialize)]
struct DistributionEvent {
    #[serde(alias = "Action")]
    action: String,
    #[serde(alias = "Target")]
    target: Target,
}

#[derive(Debug, Deserialize)]
struct Target {
    #[serde(default, rename = "mediaType", alias = "MediaType")]
    media_type: String,
    #[serde(alias = "Digest")]
    digest: Option<String>,
    #[serde(alias = "Repository")]
    repository: String,
}

#[derive(Debug, Deserialize)]
struct HarborData {
    repository: HarborRepository,
    #[serde(default)]
    resources: Vec<HarborResource>,
}

#[derive(Debug, Deserialize)]
struct HarborRepository {
    repo_full_name: String,
}

#[derive(Debug, Deserialize)]
struct HarborResource {
    digest: Option<String>,
}

/// What a preheat did.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PreheatReport {
    /// Images (manifests or indexes) walked.
    pub images: Vec<String>,
    /// Blobs the origins now hold or started reading.
    pub prefetched: usize,
    /// Digests neither the origins nor the backend have.
    pub missing: Vec<String>,
}

/// `POST /registry/notifications`.
pub(crate) async fn notifications(
    State(origins): State<OriginClient>,
    body: Bytes,
) -> Result<Json<PreheatReport>> {
    let notification: Notification = serde_json::from_slice(&body).map_err(|e| {
        Error::new(
            ErrorCode::Unsupported,
            format!("not a distribution or Harbor push notification: {e}"),
        )
        .with_status(axum::http::StatusCode::BAD_REQUEST)
    })?;
    let mut report = PreheatReport::default();
    for (repo, digest) in pushed_images(notification)? {
        preheat(&origins, &repo, digest, &mut report).await?;
    }
    Ok(Json(report))
}

/// The (repository, manifest digest) pairs a notification announces;
/// pulls, deletes and blob pushes are skipped.
fn pushed_images(notification: Notification) -> Result<BTreeSet<(RepoName, Digest)>> {
    let mut images = BTreeSet::new();
    let mut add = |repo: &str, digest: Option<&str>| -> Result<()> {
        let Some(digest) = digest else {
            return Ok(());
        };
        let digest = digest
            .parse()
            .map_err(|e| Error::new(ErrorCode::DigestInvalid, format!("digest {digest:?}: {e}")))?;
        images.insert((RepoName::new(repo)?, digest));
        Ok(())
    };
    match notification {
        Notification::Distribution { events } => {
            for event in events {
                let target = &event.target;
                let manifest =
                    target.media_type.is_empty() || media_type::is_manifest(&target.media_type);
                if event.action == "push" && manifest {
                    add(&target.repository, target.digest.as_deref())?;
                }
            }
        }
        Notification::Harbor { kind, event_data } if kind == "PUSH_ARTIFACT" => {
            for resource in &event_data.resources {
                add(
                    &event_data.repository.repo_full_name,
                    resource.digest.as_deref(),
                )?;
            }
        }
        Notification::Harbor { .. } => {}
    }
    Ok(images)
}

async fn preheat(
    origins: &OriginClient,
    repo: &RepoName,
    digest: Digest,
    report: &mut PreheatReport,
) -> Result<()> {
    let source = Prefetcher {
        origins,
        namespace: repo.namespace(),
    };
    let Some(bytes) = source.manifest(&digest).await? else {
        report.missing.push(digest.to_string());
        return Ok(());
    };
    let manifest = Manifest::parse(&bytes, None)?;
    let tree = walk(&source, digest, &manifest).await?;
    tracing::info!(%repo, %digest, blobs = tree.blobs.len(), missing = tree.missing.len(), "preheated");
    report.images.push(format!("{repo}@{digest}"));
    report.prefetched += tree.blobs.len();
    report
        .missing
        .extend(tree.missing.iter().map(Digest::to_string));
    Ok(())
}

/// The walk's view of the origins during a preheat: manifests are read
/// (through the backend when the origins lack them); blobs are only
/// prefetched, so the walk does not wait for layers to arrive.
struct Prefetcher<'a> {
    origins: &'a OriginClient,
    namespace: Namespace,
}

#[async_trait]
impl ContentSource for Prefetcher<'_> {
    async fn manifest(&self, digest: &Digest) -> Result<Option<Bytes>> {
        match self.origins.download(&self.namespace, digest).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(kraken_core::Error::NotFound(_)) => Ok(None),
            Err(e) => Err(Error::from_core(Subject::Manifest, &e)),
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        match self.origins.prefetch(&self.namespace, digest).await {
            Ok(Prefetch::Present | Prefetch::Started) => Ok(true),
            Err(kraken_core::Error::NotFound(_)) => Ok(false),
            Err(e) => Err(Error::from_core(Subject::Blob, &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: serde_json::Value) -> BTreeSet<(RepoName, Digest)> {
        pushed_images(serde_json::from_value(body).unwrap()).unwrap()
    }

    #[test]
    fn both_payloads_name_the_pushed_manifests() {
        let d = Digest::sha256_of(b"manifest");
        let distribution = serde_json::json!({"events": [
            {"action": "push", "target": {"mediaType": media_type::OCI_INDEX, "digest": d.to_string(), "repository": "team/app"}},
            {"action": "pull", "target": {"mediaType": media_type::OCI_MANIFEST, "digest": d.to_string(), "repository": "team/pulled"}},
            {"action": "push", "target": {"mediaType": "application/octet-stream", "digest": d.to_string(), "repository": "team/blob"}},
        ]});
        let images = parse(distribution);
        assert_eq!(images.len(), 1);
        assert_eq!(images.first().unwrap().0.as_str(), "team/app");
        let harbor = serde_json::json!({
            "type": "PUSH_ARTIFACT",
            "occur_at": 1,
            "event_data": {
                "resources": [{"digest": d.to_string(), "tag": "v1", "resource_url": "h/team/app:v1"}],
                "repository": {"name": "app", "namespace": "team", "repo_full_name": "team/app", "repo_type": "private"}
            }
        });
        assert_eq!(parse(harbor), images);
        let capitalised = serde_json::json!({"Events": [
            {"Action": "push", "Target": {"MediaType": media_type::DOCKER_MANIFEST, "Digest": d.to_string(), "Repository": "team/app"}}
        ]});
        assert_eq!(parse(capitalised), images);
    }

    #[test]
    fn bad_names_and_digests_are_refused() {
        let bad = serde_json::json!({"events": [
            {"action": "push", "target": {"mediaType": media_type::OCI_MANIFEST, "digest": "sha256:nope", "repository": "team/app"}}
        ]});
        let e = pushed_images(serde_json::from_value(bad).unwrap()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::DigestInvalid);
        let bad = serde_json::json!({"events": [
            {"action": "push", "target": {"mediaType": media_type::OCI_MANIFEST, "digest": Digest::sha256_of(b"x").to_string(), "repository": "Team/App"}}
        ]});
        let e = pushed_images(serde_json::from_value(bad).unwrap()).unwrap_err();
        assert_eq!(e.code(), ErrorCode::NameInvalid);
    }
}
