//! Build-index: the tag service of a cluster.
//!
//! It maps `repo:tag` to a manifest digest, and records which manifests
//! belong to which repository, so the proxy and agents can resolve tags,
//! read manifests by digest, delete, list tags and the catalog, and answer
//! the referrers API. Before it takes a tag it downloads the manifest from
//! the origin cluster and checks the image's whole tree is there
//! (index, manifests, config and layers). It writes everything through to
//! the backend and replicates tags to other clusters.
//!
//! # Tags are mutable and correct
//!
//! A put overwrites the tag at once, and the next read on this build-index
//! sees the new digest: lookups are answered from the local tables, which
//! every write updates before it answers, and nothing is cached in front
//! of them. A local miss reads the backend (and keeps a value it finds);
//! a miss there is not remembered, so a tag pushed a moment later is seen.
//! "Not found" (404) and "the backend cannot tell" (503) are kept apart.
//! Replication compares digests, so a re-pushed tag replicates too.
//!
//! # HTTP API
//!
//! Repository names travel percent-encoded as one path segment
//! (`library%2Fubuntu`); errors are the OCI JSON body.
//!
//! | method | path | answer |
//! |---|---|---|
//! | `PUT` | `/repositories/{repo}/manifests/{digest}?tag=a&tag=b` | 201, the [`ManifestRecord`] |
//! | `GET` | `/repositories/{repo}/manifests/{digest}` | 200, the record; 404 |
//! | `DELETE` | `/repositories/{repo}/manifests/{digest}` | 202, with its tags; 404 |
//! | `GET` | `/repositories/{repo}/tags/{tag}[?upstream=host]` | 200, the digest as text; 404 |
//! | `DELETE` | `/repositories/{repo}/tags/{tag}` | 202; 404 |
//! | `GET` | `/repositories/{repo}/tags[?n=&last=]` | 200, [`TagList`]; 404 `NAME_UNKNOWN` |
//! | `GET` | `/repositories/{repo}/referrers/{digest}[?artifactType=]` | 200, descriptors |
//! | `GET` | `/repositories[?n=&last=]` | 200, [`Catalog`] |
//! | `GET` | `/origin` | 200, [`OriginMembers`] |
//! | `GET` | `/health`, `/readiness` | 200; 503 |
//! | `GET` | `/metrics` ([`BuildIndexServer`]) | Prometheus text |
//!
//! A put takes an optional `media_type`, the `Content-Type` the manifest
//! was pushed with, for manifests whose bytes name no media type.
//!
//! `?upstream=` is the `ns` of a containerd mirror request (`docker.io`,
//! `registry.example.com:5000`). It matters only when neither build-index
//! nor its backend has the tag: then the backend is asked under the
//! namespace `<upstream with ':' as '_'>/<repo>` (where a pull-through
//! `registry` backend is routed), for the same object name `<repo>:<tag>`.
//! That answer is not kept, as upstream tags move.
//!
//! # Storage
//!
//! Tags, records, the catalog and both queues live in one database file
//! ([`BuildIndexConfig::database_path`]). The backend holds, with the
//! repository as namespace so routing works per repository, the tag
//! objects `<repo>:<tag>` (the digest text) and record objects
//! `<repo>@<digest>` (JSON), plus one catalog marker per repository under
//! [`BuildIndexConfig::catalog_namespace`]. Deletions are written as empty
//! objects, the backend having no delete. After a wipe of the database,
//! a tag or record is recovered when it is read, a repository's tags and
//! records when it is first listed, and the catalog when it is first
//! listed.
//!
//! # Limitations
//!
//! - One build-index per cluster. Several replicas behind one address
//!   would each answer from their own tables, and a write to one would not
//!   be seen by the others; the system we follow duplicates every write to
//!   its neighbours, which is not done here.
//! - Every tag and record of the cluster is held in memory as well as in
//!   the database; millions of tags take hundreds of megabytes.
//! - Deleted tags and records stay in the tables as tombstones.
//! - Deletions are not replicated to other clusters.
//! - The backend must take writes (a pull-through registry backend only
//!   serves `?upstream=` lookups); a write-back a backend refuses as
//!   unsupported is dropped and logged as an error.

mod backing;
mod client;
mod config;
mod layout;
mod replication;
mod server;
mod service;
mod source;
mod store;
mod writeback;

use std::collections::BTreeMap;

use kraken_core::Digest;
use serde::{Deserialize, Serialize};

pub use client::BuildIndexClient;
pub use config::{BuildIndexClientConfig, BuildIndexConfig, ReplicationConfig, ReplicationRule};
pub use server::{BuildIndexServer, router};
pub use service::BuildIndex;

use crate::manifest::{Descriptor, Manifest};
use crate::reference::{RepoName, Tag};

/// What build-index knows of a manifest in a repository, derived from the
/// manifest's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    /// The manifest's digest.
    pub digest: Digest,
    /// The media type to serve it with.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// The manifest it refers to (a signature's image, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    /// The artifact type the referrers API lists it with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ManifestRecord {
    /// The record of `manifest`, whose bytes are `size` long and hash to
    /// `digest`.
    pub fn of(digest: Digest, size: u64, manifest: &Manifest) -> ManifestRecord {
        ManifestRecord {
            digest,
            media_type: manifest.media_type.clone(),
            size,
            subject: manifest.subject.as_ref().map(|s| s.digest),
            artifact_type: manifest.referrer_artifact_type().map(str::to_owned),
            annotations: manifest.annotations.clone(),
        }
    }

    /// The descriptor the referrers API lists for this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest,
            size: self.size,
            artifact_type: self.artifact_type.clone(),
            annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
            urls: Vec::new(),
            platform: None,
        }
    }
}

/// The body of `GET /repositories/{repo}/tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagList {
    /// The repository.
    pub name: RepoName,
    /// Its tags, in byte order.
    pub tags: Vec<Tag>,
}

/// The body of `GET /repositories`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Repository names, sorted.
    pub repositories: Vec<RepoName>,
}

/// The body of `GET /origin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginMembers {
    /// HTTP addresses (`host:port`) of the cluster's origins.
    pub members: Vec<String>,
}

/// Which part of a sorted list to answer: at most `n` entries, starting
/// strictly after `last`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Most entries answered; all when `None`.
    pub n: Option<usize>,
    /// Answer entries after this one.
    pub last: Option<String>,
}

impl Page {
    /// Cuts the sorted `items` to this page; `key` spells an item as
    /// `last` compares it.
    pub fn apply<T>(&self, items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
        let after = |item: &T| self.last.as_deref().is_none_or(|last| key(item) > last);
        let n = self.n.unwrap_or(usize::MAX);
        items.into_iter().filter(after).take(n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_start_after_last_and_hold_at_most_n() {
        let items = vec!["a", "b", "c", "d"];
        let all = Page::default().apply(items.clone(), |s| s);
        assert_eq!(all, items);
        let page = Page {
            n: Some(2),
            last: Some("a".into()),
        };
        assert_eq!(page.apply(items.clone(), |s| s), ["b", "c"]);
        let none = Page {
            n: Some(0),
            last: None,
        };
        assert!(none.apply(items, |s| s).is_empty());
    }

    #[test]
    fn a_record_lists_as_a_referrer_descriptor() {
        let record = ManifestRecord {
            digest: Digest::sha256_of(b"sig"),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 10,
            subject: Some(Digest::sha256_of(b"image")),
            artifact_type: Some("application/vnd.example.sig".into()),
            annotations: BTreeMap::new(),
        };
        let json = serde_json::to_value(record.descriptor()).unwrap();
        assert_eq!(json["artifactType"], "application/vnd.example.sig");
        assert!(json.get("annotations").is_none());
        assert!(json.get("urls").is_none());
    }
}
