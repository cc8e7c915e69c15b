//! A backend kept in a directory tree: the embedded default, also useful on
//! a shared mount (NFS, a CSI volume).
//!
//! Layout under the root:
//!
//! ```text
//! <root>/<namespace components…>/@objects/<escaped name>
//! <root>/@tmp/<random>            uploads in flight
//! ```
//!
//! Namespace components are validated to `[A-Za-z0-9._-]` and so can never
//! be `@objects`, `@names` or `@tmp`, which keeps namespaces and objects
//! apart. Object names are percent-encoded into a single file name (`/` and
//! `%` and a leading `.` escaped), so no name reaches outside its
//! namespace's directory. A name too long for one file name (longer than
//! 200 bytes escaped) is stored as `#<sha256 of the name>`, with the name
//! itself in `<namespace…>/@names/#<sha256>` for listing; `#` is escaped in
//! ordinary names, so the two forms never meet. Uploads are written to `@tmp`, flushed to disk, then renamed
//! into place, so a reader sees the old object or the new one, never a part.
//!
//! Opened with [`Layout::DockerRegistry`], the root is a docker/distribution
//! storage root instead (the `rootdirectory` of a registry's filesystem
//! driver), laid out as `crate::layout` describes, so a vanilla registry
//! and this backend read each other's writes; only digests and `repo:tag`
//! names exist there.

use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage, Namespace,
    ObjectInfo, UploadBody,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::layout::{self, DockerObject, Layout};
use crate::names::{hashed_name, stored_name, unescape};

const OBJECTS_DIR: &str = "@objects";
const NAMES_DIR: &str = "@names";
const TMP_DIR: &str = "@tmp";
const READ_CHUNK: usize = 256 * 1024;

/// Options of the filesystem backend.
///
/// The layout is chosen with [`FsBackend::open_with_layout`].
// TODO: move the layout in here, as `S3BackendOptions::layout`, once
// kraken-p2p's tests build these options with `FsBackendOptions::new`; a
// new field now would break their struct literal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsBackendOptions {
    /// The directory that holds every object; created when missing.
    pub root: PathBuf,
}

impl FsBackendOptions {
    /// Creates options for objects under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsBackendOptions { root: root.into() }
    }
}

/// A [`Backend`] that keeps objects as files under one root directory.
#[derive(Debug, Clone)]
pub struct FsBackend {
    root: PathBuf,
    layout: Layout,
}

impl FsBackend {
    /// Opens the backend in its plain layout, creating its root when
    /// missing.
    ///
    /// # Errors
    ///
    /// When the root cannot be created.
    pub async fn open(options: FsBackendOptions) -> Result<Self, BackendError> {
        Self::open_with_layout(options, Layout::Plain).await
    }

    /// Opens the backend in `layout`, creating its root when missing.
    ///
    /// # Errors
    ///
    /// When the root cannot be created.
    pub async fn open_with_layout(
        options: FsBackendOptions,
        layout: Layout,
    ) -> Result<Self, BackendError> {
        tokio::fs::create_dir_all(options.root.join(TMP_DIR)).await?;
        Ok(FsBackend {
            root: options.root,
            layout,
        })
    }

    /// Returns the file holding an object's bytes.
    fn read_path(&self, namespace: &Namespace, name: &str) -> Result<PathBuf, BackendError> {
        match self.layout {
            Layout::Plain => self.object_path(namespace, name),
            Layout::DockerRegistry => match DockerObject::parse(name)? {
                Some(object) => Ok(self.root.join(object.path())),
                None => Err(BackendError::not_found(format!(
                    "{name:.80}: the docker_registry layout holds only digests and repo:tag"
                ))),
            },
        }
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join(TMP_DIR).join(hex_suffix())
    }

    fn namespace_dir(&self, namespace: &Namespace, which: &str) -> PathBuf {
        let mut dir = self.root.clone();
        dir.extend(namespace.components());
        dir.push(which);
        dir
    }

    fn object_path(&self, namespace: &Namespace, name: &str) -> Result<PathBuf, BackendError> {
        Ok(self
            .namespace_dir(namespace, OBJECTS_DIR)
            .join(stored_name(name)?))
    }

    /// Records the full name of an object stored under its hash.
    async fn write_long_name(&self, namespace: &Namespace, name: &str) -> io::Result<()> {
        let dir = self.namespace_dir(namespace, NAMES_DIR);
        tokio::fs::create_dir_all(&dir).await?;
        let tmp = self.tmp_path();
        tokio::fs::write(&tmp, name).await?;
        tokio::fs::rename(&tmp, dir.join(hashed_name(name))).await
    }

    /// Returns the object name a stored file name stands for.
    async fn name_of(&self, namespace: &Namespace, file_name: &str) -> Option<String> {
        if file_name.starts_with('#') {
            let path = self.namespace_dir(namespace, NAMES_DIR).join(file_name);
            return tokio::fs::read_to_string(path).await.ok();
        }
        unescape(file_name)
    }
}

#[async_trait]
impl Backend for FsBackend {
    fn kind(&self) -> &'static str {
        "fs"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            list: true,
        }
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let meta = tokio::fs::metadata(self.read_path(namespace, name)?).await?;
        Ok(ObjectInfo { size: meta.len() })
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let mut file = tokio::fs::File::open(self.read_path(namespace, name)?).await?;
        let size = file.metadata().await?.len();
        let range = range.unwrap_or(0..size);
        let start = range.start.min(size);
        let len = range.end.min(size).saturating_sub(start);
        file.seek(SeekFrom::Start(start)).await?;
        let reader = ReaderStream::with_capacity(file.take(len), READ_CHUNK);
        Ok(reader.map_err(BackendError::from).boxed())
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        if self.layout == Layout::DockerRegistry {
            return self.upload_docker(namespace, name, length, body).await;
        }
        let target = self.object_path(namespace, name)?;
        let tmp = self.tmp_path();
        let written = write_file(&tmp, length, body).await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        if target
            .file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with('#'))
        {
            self.write_long_name(namespace, name).await?;
        }
        place(&tmp, &target).await?;
        tracing::debug!(backend = "fs", %namespace, name, length, "object stored");
        Ok(())
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        if self.layout == Layout::DockerRegistry {
            let names = self.docker_names(namespace).await?;
            return Ok(layout::page(names, prefix, page, limit));
        }
        let files = read_names_or_none(&self.namespace_dir(namespace, OBJECTS_DIR)).await?;
        let mut names = Vec::with_capacity(files.len());
        for file in files {
            names.extend(self.name_of(namespace, &file).await);
        }
        Ok(layout::page(names, prefix, page, limit))
    }
}

impl FsBackend {
    /// Stores an object in the docker layout: the bytes in a temp file
    /// first, then the links a registry needs, then the object in place.
    async fn upload_docker(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let object = DockerObject::parse_for_upload(name)?;
        let tmp = self.tmp_path();
        let stored = match write_file(&tmp, length, body).await {
            Ok(()) => self.docker_links(namespace, &object, &tmp, length).await,
            Err(e) => Err(e),
        };
        let placed = match stored {
            Ok(()) => place(&tmp, &self.root.join(object.path())).await,
            Err(e) => Err(e),
        };
        if placed.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        placed?;
        tracing::debug!(backend = "fs", %namespace, name, length, "object stored");
        Ok(())
    }

    /// Writes the links of an object whose bytes are in `tmp`.
    async fn docker_links(
        &self,
        namespace: &Namespace,
        object: &DockerObject,
        tmp: &Path,
        length: u64,
    ) -> Result<(), BackendError> {
        let links = match object {
            DockerObject::Blob(digest) => {
                let repository = layout::repository_of(namespace)?;
                let head = if length <= layout::MAX_MANIFEST {
                    Some(tokio::fs::read(tmp).await?)
                } else {
                    None
                };
                layout::blob_links(repository, digest, head.as_deref())
            }
            DockerObject::Tag { repository, tag } => {
                if length > layout::MAX_TAG_OBJECT {
                    return Err(layout::bad_tag_object());
                }
                let target = layout::tag_target(&tokio::fs::read(tmp).await?)?;
                layout::tag_links(repository, tag, &target)
            }
        };
        for link in links {
            let tmp = self.tmp_path();
            tokio::fs::write(&tmp, &link.target).await?;
            place(&tmp, &self.root.join(&link.path)).await?;
        }
        Ok(())
    }

    /// Lists the digests linked in, and the tags of, a namespace's
    /// repository in the docker layout.
    async fn docker_names(&self, namespace: &Namespace) -> Result<Vec<String>, BackendError> {
        let listing = layout::listing(namespace)?;
        let mut names = Vec::new();
        for (dir, algorithm) in &listing.digest_dirs {
            let entries = read_names_or_none(&self.root.join(dir)).await?;
            names.extend(
                entries
                    .iter()
                    .filter_map(|e| layout::digest_entry(algorithm, e)),
            );
        }
        let tags = self.root.join(&listing.tags_dir);
        for entry in read_names_or_none(&tags).await? {
            let current = tags.join(&entry).join("current/link");
            if tokio::fs::try_exists(&current).await? {
                names.extend(layout::tag_entry(namespace, &entry));
            }
        }
        Ok(names)
    }
}

/// Renames `tmp` to `target`, creating its directory; removes `tmp` if
/// that fails.
async fn place(tmp: &Path, target: &Path) -> Result<(), BackendError> {
    let parent = target.parent().expect("object paths have a parent");
    let renamed = match tokio::fs::create_dir_all(parent).await {
        Ok(()) => tokio::fs::rename(tmp, target).await,
        Err(e) => Err(e),
    };
    if let Err(e) = renamed {
        let _ = tokio::fs::remove_file(tmp).await;
        return Err(e.into());
    }
    Ok(())
}

/// Returns the entry names of `dir`, none when it does not exist.
async fn read_names_or_none(dir: &Path) -> Result<Vec<String>, BackendError> {
    match read_file_names(dir).await {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        other => Ok(other?),
    }
}

/// Writes exactly `length` bytes of `body` to `path` and flushes them.
async fn write_file(path: &Path, length: u64, mut body: UploadBody) -> Result<(), BackendError> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "upload body failed").with_source(e)
        })?;
        written += chunk.len() as u64;
        if written > length {
            return Err(length_mismatch(length, written));
        }
        file.write_all(&chunk).await?;
    }
    if written != length {
        return Err(length_mismatch(length, written));
    }
    file.sync_all().await?;
    Ok(())
}

fn length_mismatch(expected: u64, got: u64) -> BackendError {
    let message = format!("upload body has {got}+ bytes, expected {expected}");
    BackendError::new(BackendErrorKind::Corrupt, message)
}

async fn read_file_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        names.extend(entry.file_name().into_string().ok());
    }
    Ok(names)
}

fn hex_suffix() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_into_one_file_name() {
        assert_eq!(
            stored_name("library/ubuntu:latest").unwrap(),
            "library%2Fubuntu:latest"
        );
        assert_eq!(stored_name("..").unwrap(), "%2E.");
        assert_eq!(stored_name("a%2Fb").unwrap(), "a%252Fb");
        for name in [
            "library/ubuntu:latest",
            "..",
            "a%2Fb",
            "sha256:abc",
            "x y/ü",
            "#1",
        ] {
            let encoded = stored_name(name).unwrap();
            assert!(!encoded.contains('/') && encoded != "." && encoded != "..");
            assert!(!encoded.starts_with('#'), "only hashed names start with #");
            assert_eq!(unescape(&encoded).unwrap(), name);
        }
        assert!(stored_name("").is_err());
        assert!(stored_name("a\nb").is_err());
        let long = stored_name(&"/".repeat(100)).unwrap();
        assert!(long.starts_with('#') && long.len() == 65, "{long}");
    }
}
