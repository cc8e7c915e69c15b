//! The object-store backends in the docker/distribution layout: uploads with the
//! links a registry sharing the bucket needs, and listing from them.

use bytes::Bytes;
use futures::StreamExt;
use kraken_core::{BackendError, Namespace, UploadBody};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{ObjectBackend, collect_exact};
use crate::layout::{self, DockerObject, Link};

impl ObjectBackend {
    /// Stores an object in the docker layout: its bytes, then its links;
    /// a tag's `current/link` is its bytes, so it goes last.
    pub(super) async fn upload_docker(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let object = DockerObject::parse_for_upload(name)?;
        let path = self.key(&object.path())?;
        match &object {
            DockerObject::Blob(digest) => {
                let repository = layout::repository_of(namespace)?;
                let head = self.put_blob(&path, length, body).await?;
                for link in layout::blob_links(repository, digest, head.as_deref()) {
                    self.put_link(&link).await?;
                }
            }
            DockerObject::Tag { repository, tag } => {
                if length > layout::MAX_TAG_OBJECT {
                    return Err(layout::bad_tag_object());
                }
                let data = Bytes::from(collect_exact(body, length).await?.concat());
                let target = layout::tag_target(&data)?;
                for link in layout::tag_links(repository, tag, &target) {
                    self.put_link(&link).await?;
                }
                self.put_bytes(&path, data).await?;
            }
        }
        tracing::debug!(backend = self.kind, %namespace, name, length, "object stored");
        Ok(())
    }

    /// Uploads a blob; returns its bytes when it is small enough to be a
    /// manifest, so the caller can tell whether it is one.
    async fn put_blob(
        &self,
        path: &Path,
        length: u64,
        body: UploadBody,
    ) -> Result<Option<Bytes>, BackendError> {
        if length > layout::MAX_MANIFEST {
            self.put_any(path, length, body).await?;
            return Ok(None);
        }
        let data = Bytes::from(collect_exact(body, length).await?.concat());
        self.put_bytes(path, data.clone()).await?;
        Ok(Some(data))
    }

    async fn put_bytes(&self, path: &Path, data: Bytes) -> Result<(), BackendError> {
        let put = self.store.put(path, PutPayload::from(data)).await;
        put.map_err(self.fail("put"))?;
        Ok(())
    }

    async fn put_link(&self, link: &Link) -> Result<(), BackendError> {
        let path = self.key(&link.path)?;
        let data = Bytes::from(link.target.clone());
        self.put_bytes(&path, data).await
    }

    /// Lists the digests linked in, and the tags of, a namespace's
    /// repository.
    pub(super) async fn docker_names(
        &self,
        namespace: &Namespace,
    ) -> Result<Vec<String>, BackendError> {
        let listing = layout::listing(namespace)?;
        let mut names = Vec::new();
        for (dir, algorithm) in &listing.digest_dirs {
            let entries = self.subdirectories(&self.key(dir)?).await?;
            names.extend(
                entries
                    .iter()
                    .filter_map(|e| layout::digest_entry(algorithm, e)),
            );
        }
        // A tag exists once its `current/link` does.
        let tags = self.key(&listing.tags_dir)?;
        let mut keys = self.store.list(Some(&tags));
        while let Some(meta) = keys.next().await {
            let meta = meta.map_err(self.fail("list"))?;
            let parts: Vec<_> = meta
                .location
                .prefix_match(&tags)
                .into_iter()
                .flatten()
                .collect();
            if let [tag, current, link] = parts.as_slice()
                && current.as_ref() == "current"
                && link.as_ref() == "link"
            {
                names.extend(layout::tag_entry(namespace, tag.as_ref()));
            }
        }
        Ok(names)
    }

    /// Returns the names of the "directories" directly under `dir`.
    async fn subdirectories(&self, dir: &Path) -> Result<Vec<String>, BackendError> {
        let listed = self.store.list_with_delimiter(Some(dir)).await;
        let listed = listed.map_err(self.fail("list"))?;
        let names = listed.common_prefixes.iter().filter_map(|p| p.filename());
        Ok(names.map(str::to_owned).collect())
    }
}
