//! The origin cluster as the [`ContentSource`] of a tree walk: blobs are
//! stat-ed, manifests downloaded (verified) and kept for the records of
//! an index's children. A manifest larger than the configured limit is
//! refused before it is read.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use kraken_core::{Digest, Namespace};
use kraken_p2p::origin::OriginClient;

use super::ManifestRecord;
use crate::error::{Error, ErrorCode, Result, Subject};
use crate::manifest::Manifest;
use crate::resolve::{ContentSource, Tree};

/// Manifests and blobs of one repository at the origins.
pub(crate) struct OriginSource {
    origins: OriginClient,
    namespace: Namespace,
    max_manifest: u64,
    /// Manifests downloaded so far.
    seen: Mutex<HashMap<Digest, Bytes>>,
}

impl OriginSource {
    pub(crate) fn new(origins: OriginClient, namespace: Namespace, max_manifest: u64) -> Self {
        OriginSource {
            origins,
            namespace,
            max_manifest,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Bytes>> {
        // A cache of verified bytes: whatever a panicking thread left is
        // still right.
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes of the manifest `digest`.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when the origins (and their backend) lack it;
    /// `MANIFEST_INVALID` when it is over the size limit; `UNAVAILABLE`
    /// when no origin answers.
    pub(crate) async fn root(&self, digest: &Digest) -> Result<Bytes> {
        match self.manifest(digest).await? {
            Some(bytes) => Ok(bytes),
            None => Err(Error::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest {digest} is not at the origins of {}: upload it before tagging it",
                    self.namespace
                ),
            )
            .with_detail(serde_json::json!({ "digest": digest.to_string() }))),
        }
    }

    /// The records of every manifest of `tree` but its root, read from
    /// the bytes the walk downloaded. The media type an index gives a
    /// child stands in for one the child does not declare.
    ///
    /// # Errors
    ///
    /// `MANIFEST_INVALID` when a child does not parse (the walk parsed it
    /// already, so only for bytes that changed under us, which verified
    /// downloads rule out).
    pub(crate) fn child_records(
        &self,
        root: &Manifest,
        tree: &Tree,
    ) -> Result<Vec<ManifestRecord>> {
        let seen = self.seen();
        let mut hints: HashMap<Digest, String> = HashMap::new();
        add_hints(&mut hints, root);
        let mut records = Vec::new();
        // The tree lists parents after their children; reversed, each
        // parent comes before the children it gives hints for.
        for digest in tree.manifests.iter().rev().skip(1) {
            let Some(bytes) = seen.get(digest) else {
                continue;
            };
            let manifest = Manifest::parse(bytes, hints.get(digest).map(String::as_str))?;
            add_hints(&mut hints, &manifest);
            records.push(ManifestRecord::of(*digest, bytes.len() as u64, &manifest));
        }
        Ok(records)
    }
}

/// Remembers the media type each child of `manifest` is listed with.
fn add_hints(hints: &mut HashMap<Digest, String>, manifest: &Manifest) {
    for child in &manifest.manifests {
        hints
            .entry(child.digest)
            .or_insert_with(|| child.media_type.clone());
    }
}

#[async_trait]
impl ContentSource for OriginSource {
    async fn manifest(&self, digest: &Digest) -> Result<Option<Bytes>> {
        if let Some(bytes) = self.seen().get(digest) {
            return Ok(Some(bytes.clone()));
        }
        let Some(size) = self.stat(digest, Subject::Manifest).await? else {
            return Ok(None);
        };
        if size > self.max_manifest {
            return Err(Error::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "{digest} is {size} bytes, more than a manifest may be ({} bytes)",
                    self.max_manifest
                ),
            ));
        }
        let bytes = match self.origins.download(&self.namespace, digest).await {
            Ok(bytes) => bytes,
            Err(kraken_core::Error::NotFound(_)) => return Ok(None),
            Err(e) => return Err(Error::from_core(Subject::Manifest, &e)),
        };
        self.seen().insert(*digest, bytes.clone());
        Ok(Some(bytes))
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        Ok(self.stat(digest, Subject::Blob).await?.is_some())
    }
}

impl OriginSource {
    async fn stat(&self, digest: &Digest, subject: Subject) -> Result<Option<u64>> {
        self.origins
            .stat(&self.namespace, digest)
            .await
            .map_err(|e| Error::from_core(subject, &e))
    }
}
