//! Walking an image's tree: from an index to its manifests, from each
//! manifest to its config and layers.
//!
//! Build-index checks that a pushed manifest's whole tree exists before it
//! takes a tag; replication and preheat need every digest of the tree.
//! Both walk it here, over a [`ContentSource`] that says where manifests
//! and blobs are found (the origin cluster, in practice). The walk is
//! breadth-first, visits each digest once, and stops at a fixed depth, so
//! a hostile index cannot make it loop or run away.

use std::collections::{HashSet, VecDeque};

use async_trait::async_trait;
use bytes::Bytes;
use kraken_core::Digest;

use crate::error::{Error, ErrorCode, Result};
use crate::manifest::{Manifest, ManifestKind};

/// Deepest nesting of indexes followed; real images nest one or two.
pub const MAX_DEPTH: usize = 8;

/// Where the walk finds content.
#[async_trait]
pub trait ContentSource: Send + Sync {
    /// The bytes of the manifest `digest`, `None` when nobody has it.
    ///
    /// # Errors
    ///
    /// When the source cannot tell (unreachable, failing).
    async fn manifest(&self, digest: &Digest) -> Result<Option<Bytes>>;

    /// Whether the blob `digest` exists.
    ///
    /// # Errors
    ///
    /// When the source cannot tell.
    async fn has_blob(&self, digest: &Digest) -> Result<bool>;
}

/// Every digest of a tree, children before their parents: uploading them
/// in this order to another cluster never makes it hold a manifest whose
/// content it lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// Config and layer blobs.
    pub blobs: Vec<Digest>,
    /// Manifests and indexes, deepest first, the root last.
    pub manifests: Vec<Digest>,
    /// Digests referred to that the source does not have.
    pub missing: Vec<Digest>,
}

/// Walks the tree under `root`, whose bytes are already known (`root_bytes`
/// parsed as `root`), and reports what is missing rather than failing on
/// it. A `subject` is not part of the tree: a manifest may name a subject
/// that was never pushed.
///
/// # Errors
///
/// `MANIFEST_INVALID` when a child manifest does not parse or the tree is
/// deeper than [`MAX_DEPTH`]; the source's error when it cannot tell.
pub async fn walk(source: &dyn ContentSource, root: Digest, manifest: &Manifest) -> Result<Tree> {
    let mut tree = Tree::default();
    let mut seen = HashSet::from([root]);
    let mut queue = VecDeque::from([(root, manifest.clone(), 0usize)]);
    let mut order = Vec::new();
    while let Some((digest, manifest, depth)) = queue.pop_front() {
        order.push(digest);
        for blob in manifest.blobs() {
            if seen.insert(blob.digest) {
                if source.has_blob(&blob.digest).await? {
                    tree.blobs.push(blob.digest);
                } else {
                    tree.missing.push(blob.digest);
                }
            }
        }
        if manifest.kind != ManifestKind::Index {
            continue;
        }
        for child in &manifest.manifests {
            if child.is_external() || !seen.insert(child.digest) {
                continue;
            }
            if depth + 1 > MAX_DEPTH {
                return Err(Error::new(
                    ErrorCode::ManifestInvalid,
                    format!("indexes nest deeper than {MAX_DEPTH} levels"),
                ));
            }
            match source.manifest(&child.digest).await? {
                Some(bytes) => {
                    let parsed = Manifest::parse(&bytes, Some(&child.media_type)).map_err(|e| {
                        Error::new(
                            ErrorCode::ManifestInvalid,
                            format!("child manifest {}: {e}", child.digest),
                        )
                    })?;
                    queue.push_back((child.digest, parsed, depth + 1));
                }
                None => tree.missing.push(child.digest),
            }
        }
    }
    order.reverse();
    tree.manifests = order;
    Ok(tree)
}

impl Tree {
    /// Fails with `MANIFEST_BLOB_UNKNOWN`, naming every missing digest,
    /// when anything is missing.
    ///
    /// # Errors
    ///
    /// As said.
    pub fn require_complete(&self) -> Result<()> {
        if self.missing.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = self.missing.iter().map(Digest::to_string).collect();
        Err(Error::new(
            ErrorCode::ManifestBlobUnknown,
            format!(
                "manifest refers to content this registry does not have: {}",
                names.join(", ")
            ),
        )
        .with_detail(serde_json::json!({ "missing": names })))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::manifest::media_type;

    #[derive(Default)]
    struct Memory {
        manifests: HashMap<Digest, Bytes>,
        blobs: HashSet<Digest>,
    }

    #[async_trait]
    impl ContentSource for Memory {
        async fn manifest(&self, digest: &Digest) -> Result<Option<Bytes>> {
            Ok(self.manifests.get(digest).cloned())
        }

        async fn has_blob(&self, digest: &Digest) -> Result<bool> {
            Ok(self.blobs.contains(digest))
        }
    }

    impl Memory {
        fn blob(&mut self, name: &str) -> Digest {
            let d = Digest::sha256_of(name.as_bytes());
            self.blobs.insert(d);
            d
        }

        fn add(&mut self, body: &serde_json::Value) -> (Digest, Manifest) {
            let bytes = Bytes::from(body.to_string());
            let d = Digest::sha256_of(&bytes);
            let m = Manifest::parse(&bytes, None).unwrap();
            self.manifests.insert(d, bytes);
            (d, m)
        }

        fn image(&mut self, config: Digest, layers: &[Digest]) -> (Digest, Manifest) {
            let desc = |d: &Digest| serde_json::json!({"mediaType": "x/blob", "digest": d.to_string(), "size": 1});
            self.add(&serde_json::json!({
                "mediaType": media_type::OCI_MANIFEST,
                "config": desc(&config),
                "layers": layers.iter().map(desc).collect::<Vec<_>>(),
            }))
        }

        fn index(&mut self, children: &[Digest]) -> (Digest, Manifest) {
            let desc = |d: &Digest| serde_json::json!({"mediaType": media_type::OCI_MANIFEST, "digest": d.to_string(), "size": 1});
            self.add(&serde_json::json!({
                "mediaType": media_type::OCI_INDEX,
                "manifests": children.iter().map(desc).collect::<Vec<_>>(),
            }))
        }
    }

    #[tokio::test]
    async fn an_index_is_walked_to_every_layer_children_first() {
        let mut source = Memory::default();
        let (c, l1, l2) = (source.blob("c"), source.blob("l1"), source.blob("l2"));
        let (amd, _) = source.image(c, &[l1]);
        let (arm, _) = source.image(c, &[l2]);
        let (root, index) = source.index(&[amd, arm]);
        let tree = walk(&source, root, &index).await.unwrap();
        assert!(tree.missing.is_empty());
        assert_eq!(tree.blobs.len(), 3, "the shared config counts once");
        assert_eq!(tree.manifests.last(), Some(&root));
        assert_eq!(tree.manifests.len(), 3);
        tree.require_complete().unwrap();
    }

    #[tokio::test]
    async fn missing_blobs_and_children_are_all_named() {
        let mut source = Memory::default();
        let c = source.blob("c");
        let gone = Digest::sha256_of(b"never pushed");
        let (img, _) = source.image(c, &[gone]);
        let absent_child = Digest::sha256_of(b"no such manifest");
        let (root, index) = source.index(&[img, absent_child]);
        let tree = walk(&source, root, &index).await.unwrap();
        assert_eq!(tree.missing, vec![absent_child, gone]);
        let e = tree.require_complete().unwrap_err();
        assert_eq!(e.code(), ErrorCode::ManifestBlobUnknown);
        assert!(e.message().contains(&gone.to_string()));
    }

    #[tokio::test]
    async fn runaway_nesting_is_refused() {
        let mut source = Memory::default();
        let c = source.blob("c");
        let (mut top, mut manifest) = source.image(c, &[]);
        for _ in 0..=MAX_DEPTH {
            (top, manifest) = source.index(&[top]);
        }
        let e = walk(&source, top, &manifest).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ManifestInvalid);
    }
}
