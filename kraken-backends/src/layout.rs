//! How object names become storage paths.
//!
//! [`Layout::Plain`] is each backend's own layout: escaped names under
//! their namespace (see `names`). [`Layout::DockerRegistry`] is the
//! on-disk layout of docker/distribution, the CNCF reference registry, so
//! a directory or bucket can be shared with a vanilla registry: what one
//! writes, the other reads.
//!
//! # The docker/distribution layout
//!
//! Under `docker/registry/v2/`:
//!
//! ```text
//! blobs/<alg>/<hex[0:2]>/<hex>/data                       a blob sha256:<hex>
//! repositories/<repo>/_layers/<alg>/<hex>/link            blob visible in repo
//! repositories/<repo>/_manifests/revisions/<alg>/<hex>/link   manifest in repo
//! repositories/<repo>/_manifests/tags/<tag>/current/link  tag repo:tag
//! repositories/<repo>/_manifests/tags/<tag>/index/<alg>/<hex>/link
//! ```
//!
//! Every `link` holds a digest as text. Only digests and `repo:tag` names
//! exist in this layout; the namespace is the repository. Blobs are shared
//! by every namespace, as in the registry's own store, so a read finds a
//! blob whichever repository it was pushed to. A write adds the links a
//! registry needs to serve the object from the namespace's repository: a
//! layer link for every blob, a revision link for a blob that is a
//! manifest (told by its JSON) and for the digest a tag points at, and the
//! tag's index link. The tag's `current/link` is written last, so a
//! registry sees the new tag only once everything it points at is there.

use kraken_core::{BackendError, BackendErrorKind, Digest, Namespace};
use serde::{Deserialize, Serialize};

use crate::registry::manifest::is_manifest;
use crate::registry::reference::{self, ObjectName, check_repository};

/// The largest blob checked for being a manifest: distribution's own
/// manifest size limit.
pub(crate) const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

/// The longest tag object accepted: a digest's text with room to spare.
pub(crate) const MAX_TAG_OBJECT: u64 = 1024;

/// How a backend lays out objects in its store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The backend's own layout: escaped names under their namespace.
    #[default]
    Plain,
    /// docker/distribution's layout, shared with a vanilla registry; only
    /// digests and `repo:tag` names can be stored.
    DockerRegistry,
}

const ROOT: &str = "docker/registry/v2";

/// An object in the docker layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerObject {
    /// A blob or manifest by digest.
    Blob(Digest),
    /// A tag in a repository.
    Tag {
        /// The repository, as the name spells it.
        repository: String,
        /// The tag.
        tag: String,
    },
}

/// A small file the docker layout keeps beside objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    /// The path below the store's root.
    pub(crate) path: String,
    /// The digest it holds, as text.
    pub(crate) target: String,
}

impl DockerObject {
    /// Parses a name; `Ok(None)` for a name this layout cannot hold.
    ///
    /// # Errors
    ///
    /// `Other` for a malformed digest or `repo:tag`.
    pub(crate) fn parse(name: &str) -> Result<Option<Self>, BackendError> {
        Ok(reference::parse(name)?.map(|object| match object {
            ObjectName::Digest(digest) => DockerObject::Blob(digest),
            ObjectName::Tag { repository, tag } => DockerObject::Tag {
                repository: repository.to_owned(),
                tag: tag.to_owned(),
            },
        }))
    }

    /// Parses a name to write, refusing one this layout cannot hold.
    ///
    /// # Errors
    ///
    /// `Other` for any name but a valid digest or `repo:tag`.
    pub(crate) fn parse_for_upload(name: &str) -> Result<Self, BackendError> {
        Self::parse(name)?.ok_or_else(|| {
            let message = format!(
                "{name:.80}: the docker_registry layout stores only digests and repo:tag names"
            );
            BackendError::new(BackendErrorKind::Other, message)
        })
    }

    /// Returns the path of the object's bytes below the store's root.
    pub(crate) fn path(&self) -> String {
        match self {
            DockerObject::Blob(digest) => blob_data(digest),
            DockerObject::Tag { repository, tag } => {
                format!("{}/current/link", tag_dir(repository, tag))
            }
        }
    }
}

/// Returns the repository a namespace stands for.
///
/// # Errors
///
/// `Other` when the namespace is not a valid repository name.
pub(crate) fn repository_of(namespace: &Namespace) -> Result<&str, BackendError> {
    check_repository(namespace.as_str())?;
    Ok(namespace.as_str())
}

fn blob_data(digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "{ROOT}/blobs/{}/{}/{hex}/data",
        digest.algorithm(),
        &hex[..2]
    )
}

fn repository_dir(repository: &str) -> String {
    format!("{ROOT}/repositories/{repository}")
}

fn tag_dir(repository: &str, tag: &str) -> String {
    format!("{}/_manifests/tags/{tag}", repository_dir(repository))
}

fn link(path: String, digest: &Digest) -> Link {
    Link {
        path,
        target: digest.to_string(),
    }
}

fn layer_link(repository: &str, digest: &Digest) -> Link {
    let dir = repository_dir(repository);
    let path = format!("{dir}/_layers/{}/{}/link", digest.algorithm(), digest.hex());
    link(path, digest)
}

fn revision_link(repository: &str, digest: &Digest) -> Link {
    let dir = repository_dir(repository);
    let (alg, hex) = (digest.algorithm(), digest.hex());
    link(
        format!("{dir}/_manifests/revisions/{alg}/{hex}/link"),
        digest,
    )
}

/// Returns the links that make a blob of `digest` visible in
/// `repository`; `head` is the blob's bytes when it is small enough to be
/// a manifest.
pub(crate) fn blob_links(repository: &str, digest: &Digest, head: Option<&[u8]>) -> Vec<Link> {
    let mut links = vec![layer_link(repository, digest)];
    if head.is_some_and(is_manifest) {
        links.push(revision_link(repository, digest));
    }
    links
}

/// Returns the links a tag pointing at `target` needs before its
/// `current/link` (which [`DockerObject::path`] names) is written.
pub(crate) fn tag_links(repository: &str, tag: &str, target: &Digest) -> Vec<Link> {
    let (alg, hex) = (target.algorithm(), target.hex());
    let index = format!("{}/index/{alg}/{hex}/link", tag_dir(repository, tag));
    vec![revision_link(repository, target), link(index, target)]
}

/// Returns the digest a tag object's bytes hold.
///
/// # Errors
///
/// `Corrupt` when they are not a digest: a registry sharing the store
/// would fail on such a tag.
pub(crate) fn tag_target(bytes: &[u8]) -> Result<Digest, BackendError> {
    // Exactly the digest, no whitespace: a registry parses the link whole.
    let text = std::str::from_utf8(bytes).unwrap_or("");
    text.parse().map_err(|_| bad_tag_object())
}

/// The error of a tag object that is not a digest's text.
pub(crate) fn bad_tag_object() -> BackendError {
    let message = "a tag's object in the docker_registry layout must be a digest, as text";
    BackendError::new(BackendErrorKind::Corrupt, message)
}

/// The directories a namespace's names are listed from, and how an entry
/// of each becomes a name.
pub(crate) struct Listing {
    /// `(dir, algorithm)`: entries are hex digests of `algorithm`.
    pub(crate) digest_dirs: Vec<(String, &'static str)>,
    /// Entries are tags, listed as `<namespace>:<tag>`.
    pub(crate) tags_dir: String,
}

/// Returns where the names of `namespace` live.
///
/// # Errors
///
/// `Other` when the namespace is not a valid repository name.
pub(crate) fn listing(namespace: &Namespace) -> Result<Listing, BackendError> {
    let dir = repository_dir(repository_of(namespace)?);
    let mut digest_dirs = Vec::new();
    for alg in ["sha256", "sha512"] {
        digest_dirs.push((format!("{dir}/_layers/{alg}"), alg));
        digest_dirs.push((format!("{dir}/_manifests/revisions/{alg}"), alg));
    }
    Ok(Listing {
        digest_dirs,
        tags_dir: format!("{dir}/_manifests/tags"),
    })
}

/// Returns the name of a listed digest directory entry, if it is one.
pub(crate) fn digest_entry(algorithm: &str, entry: &str) -> Option<String> {
    let name = format!("{algorithm}:{entry}");
    name.parse::<Digest>().ok().map(|d| d.to_string())
}

/// Returns the name of a listed tag directory entry, if it is one.
pub(crate) fn tag_entry(namespace: &Namespace, entry: &str) -> Option<String> {
    reference::check_tag(entry).ok()?;
    Some(format!("{namespace}:{entry}"))
}

/// Sorts and pages listed names the way every backend's `list` does.
pub(crate) fn page(
    mut names: Vec<String>,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> kraken_core::ListPage {
    names.retain(|n| n.starts_with(prefix) && after.is_none_or(|a| n.as_str() > a));
    names.sort_unstable();
    names.dedup();
    let limit = limit.max(1);
    let more = names.len() > limit;
    names.truncate(limit);
    let next = more.then(|| names.last().cloned()).flatten();
    kraken_core::ListPage { names, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn names_map_to_distribution_paths() {
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        let blob = DockerObject::parse(&digest.to_string()).unwrap().unwrap();
        assert_eq!(
            blob.path(),
            format!("docker/registry/v2/blobs/sha256/58/{HEX}/data")
        );
        let tag = DockerObject::parse("library/ubuntu:22.04")
            .unwrap()
            .unwrap();
        assert_eq!(
            tag.path(),
            "docker/registry/v2/repositories/library/ubuntu/_manifests/tags/22.04/current/link"
        );
        assert_eq!(DockerObject::parse("plain-name").unwrap(), None);
        assert!(DockerObject::parse_for_upload("plain-name").is_err());
        assert!(DockerObject::parse("../x:y").is_err());
    }

    #[test]
    fn writes_bring_the_links_a_registry_needs() {
        let digest: Digest = format!("sha256:{HEX}").parse().unwrap();
        let layer = blob_links("a/b", &digest, Some(b"\x1f\x8b"));
        assert_eq!(layer.len(), 1);
        assert_eq!(
            layer[0].path,
            format!("docker/registry/v2/repositories/a/b/_layers/sha256/{HEX}/link")
        );
        assert_eq!(layer[0].target, digest.to_string());
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let links = blob_links("a/b", &digest, Some(manifest));
        assert!(
            links[1]
                .path
                .ends_with(&format!("_manifests/revisions/sha256/{HEX}/link"))
        );
        let tag = tag_links("a/b", "v1", &digest);
        assert!(
            tag[1]
                .path
                .ends_with(&format!("_manifests/tags/v1/index/sha256/{HEX}/link"))
        );
        assert_eq!(
            tag_target(format!("sha256:{HEX}").as_bytes()).unwrap(),
            digest
        );
        let bad = tag_target(b"latest").unwrap_err();
        assert_eq!(bad.kind(), BackendErrorKind::Corrupt);
        assert!(tag_target(format!("sha256:{HEX}\n").as_bytes()).is_err());
    }

    #[test]
    fn listed_entries_become_names() {
        let ns = Namespace::new("a/b").unwrap();
        assert_eq!(digest_entry("sha256", HEX), Some(format!("sha256:{HEX}")));
        assert_eq!(digest_entry("sha256", "zz"), None);
        assert_eq!(tag_entry(&ns, "v1").as_deref(), Some("a/b:v1"));
        assert!(listing(&Namespace::new("CI-cache").unwrap()).is_err());
        let names = vec!["a:2".into(), "a:1".into(), "b:1".into(), "a:1".into()];
        let first = page(names.clone(), "a:", None, 1);
        assert_eq!(
            (first.names, first.next.as_deref()),
            (vec!["a:1".into()], Some("a:1"))
        );
        let second = page(names, "a:", Some("a:1"), 1);
        assert_eq!((second.names, second.next), (vec!["a:2".to_owned()], None));
    }
}
