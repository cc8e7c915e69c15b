//! The backend body shared by every object store (`s3`, `gcs`, `azure`):
//! `object_store` does the talking, this module the naming, layout,
//! uploads and error classification, so the three behave the same.
//!
//! Objects live under
//!
//! ```text
//! <prefix>/<escaped namespace>/<escaped name>
//! ```
//!
//! escaped as the filesystem backend escapes file names (see
//! `crate::names`): the namespace `library/ubuntu` becomes the one segment
//! `library%2Fubuntu`, so namespaces never nest into each other, and a
//! name's `/` becomes `%2F`, so a name never reaches outside its namespace.
//! A name whose escaped form passes 200 bytes is stored as
//! `#<sha256 of the name>`, with the name itself in a companion object
//! `#<sha256>.name` that `list` reads: AWS ends keys at 1024 bytes and
//! Garage at about 500.
//!
//! Uploads of up to `multipart_threshold` bytes are one `PUT`; larger ones
//! are multipart uploads of `part_size` parts. Either way the store makes
//! the new object visible whole or not at all, and an upload whose body
//! turns out shorter or longer than declared is never completed (a
//! multipart upload is aborted), so nothing is stored.
//!
//! With [`Layout::DockerRegistry`] the store (under `prefix`, a registry's
//! `rootdirectory`) is laid out as docker/distribution lays it out, as
//! `crate::layout` describes, so it can be shared with a vanilla registry.
//!
//! Requests go through this crate's HTTP client (see `client`), over TLS
//! on rustls and ring, and are signed on ring.
//!
//! # Limitations
//!
//! - `list` reads one companion object per hashed (long) name in the
//!   namespace on every page that reaches them.
//! - `list` walks the namespace from the page token (or its start) and
//!   filters by prefix here, because S3 prefixes and `object_store` prefixes
//!   differ in meaning; it stops as soon as keys pass the prefix.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use bytesize::ByteSize;
use futures::{StreamExt, TryStreamExt, stream};
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage, Namespace,
    ObjectInfo, UploadBody,
};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::layout::{DockerObject, Layout};
use crate::names::{self, escape, stored_name, unescape};

pub(crate) mod client;
mod docker;

/// Parts uploaded at once by one multipart upload.
const PART_CONCURRENCY: usize = 4;

/// Implements [`Backend`] for a newtype over [`ObjectBackend`] by passing
/// every call through.
macro_rules! delegate_backend {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl kraken_core::Backend for $backend {
            fn kind(&self) -> &'static str {
                self.0.kind()
            }

            fn capabilities(&self) -> kraken_core::Capabilities {
                self.0.capabilities()
            }

            async fn stat(
                &self,
                namespace: &kraken_core::Namespace,
                name: &str,
            ) -> Result<kraken_core::ObjectInfo, kraken_core::BackendError> {
                self.0.stat(namespace, name).await
            }

            async fn download(
                &self,
                namespace: &kraken_core::Namespace,
                name: &str,
                range: Option<std::ops::Range<u64>>,
            ) -> Result<kraken_core::BackendStream, kraken_core::BackendError> {
                self.0.download(namespace, name, range).await
            }

            async fn upload(
                &self,
                namespace: &kraken_core::Namespace,
                name: &str,
                length: u64,
                body: kraken_core::UploadBody,
            ) -> Result<(), kraken_core::BackendError> {
                self.0.upload(namespace, name, length, body).await
            }

            async fn list(
                &self,
                namespace: &kraken_core::Namespace,
                prefix: &str,
                page: Option<&str>,
                limit: usize,
            ) -> Result<kraken_core::ListPage, kraken_core::BackendError> {
                self.0.list(namespace, prefix, page, limit).await
            }
        }
    };
}
pub(crate) use delegate_backend;

/// A [`Backend`] on any `object_store` store: the body of the S3, GCS and
/// Azure backends, which differ only in how they build the store.
#[derive(Debug, Clone)]
pub(crate) struct ObjectBackend {
    kind: &'static str,
    store: Arc<dyn ObjectStore>,
    /// The key prefix without slashes at either end; empty for the root.
    prefix: String,
    layout: Layout,
    multipart_threshold: u64,
    part_size: usize,
}

/// What an [`ObjectBackend`] talks to, in the words its start-up check
/// uses.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// The store, such as ``bucket `b` at http://127.0.0.1:3900``.
    pub(crate) store: String,
    /// Where the credentials come from, such as `static keys`.
    pub(crate) credentials: String,
    /// What to set to fix refused or missing credentials.
    pub(crate) fix: &'static str,
}

/// How an [`ObjectBackend`] lays out and uploads objects.
#[derive(Debug, Clone)]
pub(crate) struct Placement {
    /// The key prefix, slashes at either end allowed.
    pub(crate) prefix: String,
    pub(crate) layout: Layout,
    pub(crate) multipart_threshold: ByteSize,
    pub(crate) part_size: ByteSize,
}

impl ObjectBackend {
    /// Wraps `store` as a backend of `kind` (`s3`, `gcs`, `azure`).
    pub(crate) fn new(
        kind: &'static str,
        store: Arc<dyn ObjectStore>,
        placement: Placement,
    ) -> Self {
        ObjectBackend {
            kind,
            store,
            prefix: trim_slashes(placement.prefix),
            layout: placement.layout,
            multipart_threshold: placement.multipart_threshold.as_u64(),
            part_size: usize::try_from(placement.part_size.as_u64()).unwrap_or(usize::MAX),
        }
    }

    /// Classifies a failure of operation `what` of this backend.
    fn fail(&self, what: &'static str) -> impl Fn(object_store::Error) -> BackendError + 'static {
        let kind = self.kind;
        move |e| classify(kind, e, what)
    }

    /// Lists the store once under the prefix, so a missing bucket or bad
    /// credentials show at start-up rather than on the first pull; the
    /// error says what `setup` is and how to fix it.
    ///
    /// # Errors
    ///
    /// The listing's error, of the same kind, with a message that names
    /// the store, the source of the credentials and what to set.
    pub(crate) async fn check(&self, setup: &Setup) -> Result<(), BackendError> {
        let dir = Path::parse(&self.prefix).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "bad key prefix").with_source(e)
        })?;
        let dir = (!self.prefix.is_empty()).then_some(dir);
        let listed = self.store.list_with_delimiter(dir.as_ref()).await;
        let Err(e) = listed else {
            tracing::info!(backend = self.kind, store = %setup.store, "backend reachable");
            return Ok(());
        };
        let error = self.fail("check")(e);
        let message = match error.kind() {
            BackendErrorKind::NotFound => format!(
                "{} does not exist or is not visible to these credentials: create it or \
                 correct the options",
                setup.store
            ),
            BackendErrorKind::Unauthorized | BackendErrorKind::Forbidden => format!(
                "{} refused the {}: {}",
                setup.store, setup.credentials, setup.fix
            ),
            _ => format!(
                "{} is not usable with the {} ({}): {}",
                setup.store,
                setup.credentials,
                error.message(),
                setup.fix
            ),
        };
        Err(BackendError::new(error.kind(), message).with_source(error))
    }

    fn stream_of(
        &self,
        body: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
    ) -> BackendStream {
        body.map_err(self.fail("read body")).boxed()
    }
}

impl ObjectBackend {
    /// Returns the key of a namespace's directory.
    fn namespace_key(&self, namespace: &Namespace) -> String {
        let namespace = escape(namespace.as_ref());
        if self.prefix.is_empty() {
            namespace
        } else {
            format!("{}/{namespace}", self.prefix)
        }
    }

    pub(crate) fn object_path(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Path, BackendError> {
        self.path_in(namespace, &stored_name(name)?)
    }

    fn path_in(&self, namespace: &Namespace, segment: &str) -> Result<Path, BackendError> {
        let key = format!("{}/{segment}", self.namespace_key(namespace));
        Path::parse(key).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "bad object key").with_source(e)
        })
    }

    /// Returns the name a listed key segment stands for, reading the
    /// companion of a hashed name; `None` for companions themselves and
    /// for segments that are not ours.
    async fn name_of(
        &self,
        namespace: &Namespace,
        segment: &str,
    ) -> Result<Option<String>, BackendError> {
        if !segment.starts_with('#') {
            return Ok(unescape(segment));
        }
        if segment.ends_with(names::NAME_SUFFIX) {
            return Ok(None);
        }
        let companion = self.path_in(namespace, &names::companion(segment))?;
        let got = match self.store.get(&companion).await {
            Ok(got) => got,
            // An object whose companion is gone cannot be named; skip it
            // rather than fail the whole listing.
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail("get name")(e)),
        };
        let bytes = got.bytes().await.map_err(self.fail("get name"))?;
        Ok(String::from_utf8(bytes.to_vec()).ok())
    }

    /// Returns the key of an object's bytes, in either layout.
    fn read_path(&self, namespace: &Namespace, name: &str) -> Result<Path, BackendError> {
        match self.layout {
            Layout::Plain => self.object_path(namespace, name),
            Layout::DockerRegistry => match DockerObject::parse(name)? {
                Some(object) => self.key(&object.path()),
                None => Err(BackendError::not_found(format!(
                    "{name:.80}: the docker_registry layout holds only digests and repo:tag"
                ))),
            },
        }
    }

    /// Returns the key of `path` below the prefix.
    fn key(&self, path: &str) -> Result<Path, BackendError> {
        let key = if self.prefix.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{path}", self.prefix)
        };
        Path::parse(key).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "bad object key").with_source(e)
        })
    }

    async fn put_single(
        &self,
        path: &Path,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let payload: PutPayload = collect_exact(body, length).await?.into_iter().collect();
        self.store
            .put(path, payload)
            .await
            .map_err(self.fail("put"))?;
        Ok(())
    }

    /// Uploads a body of any size: one `PUT` or a multipart upload.
    async fn put_any(
        &self,
        path: &Path,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        if length > self.multipart_threshold {
            self.put_multipart(path, length, body).await
        } else {
            self.put_single(path, length, body).await
        }
    }

    async fn put_multipart(
        &self,
        path: &Path,
        length: u64,
        mut body: UploadBody,
    ) -> Result<(), BackendError> {
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(self.fail("start multipart upload"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut received = 0u64;
        let failure = loop {
            let chunk = match body.next().await {
                None if received == length => break None,
                None => break Some(length_mismatch(length, received)),
                Some(Err(e)) => break Some(body_failed(e)),
                Some(Ok(chunk)) => chunk,
            };
            received += chunk.len() as u64;
            if received > length {
                break Some(length_mismatch(length, received));
            }
            // Bounds memory to a few parts in flight.
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                break Some(self.fail("upload part")(e));
            }
            writer.put(chunk);
        };
        if let Some(error) = failure {
            // Abort so the parts stop costing storage; failing to abort
            // leaves them to the bucket's lifecycle rules, not the object.
            if let Err(e) = writer.abort().await {
                tracing::debug!(backend = self.kind, error = %e, "abort of multipart upload failed");
            }
            return Err(error);
        }
        writer
            .finish()
            .await
            .map_err(self.fail("complete multipart upload"))?;
        Ok(())
    }
}

fn trim_slashes(mut prefix: String) -> String {
    prefix.truncate(prefix.trim_end_matches('/').len());
    prefix.trim_start_matches('/').to_owned()
}

#[async_trait]
impl Backend for ObjectBackend {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            list: true,
        }
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let path = self.read_path(namespace, name)?;
        let meta = self.store.head(&path).await.map_err(self.fail("head"))?;
        Ok(ObjectInfo { size: meta.size })
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let path = self.read_path(namespace, name)?;
        let Some(range) = range else {
            let got = self.store.get(&path).await.map_err(self.fail("get"))?;
            return Ok(self.stream_of(got.into_stream()));
        };
        if range.start >= range.end {
            // S3 has no empty range; the object must still exist.
            self.stat(namespace, name).await?;
            return Ok(stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            ..GetOptions::default()
        };
        match self.store.get_opts(&path, options).await {
            Ok(got) => Ok(self.stream_of(got.into_stream())),
            Err(e) => {
                let error = self.fail("ranged get")(e);
                if error.kind() != BackendErrorKind::Other {
                    return Err(error);
                }
                // A range starting at or past the end is refused (416) by
                // S3 but is an empty read by our contract.
                let size = self.stat(namespace, name).await?.size;
                if range.start >= size {
                    return Ok(stream::empty().boxed());
                }
                Err(error)
            }
        }
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
        let segment = stored_name(name)?;
        let path = self.path_in(namespace, &segment)?;
        if segment.starts_with('#') {
            // The name goes first, so a listed hashed object always has it;
            // a failed upload leaves only an unlisted companion behind.
            let companion = self.path_in(namespace, &names::companion(&segment))?;
            let name = PutPayload::from(name.to_owned());
            self.store
                .put(&companion, name)
                .await
                .map_err(self.fail("put name"))?;
        }
        self.put_any(&path, length, body).await?;
        tracing::debug!(backend = self.kind, %namespace, name, length, "object stored");
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
            return Ok(crate::layout::page(names, prefix, page, limit));
        }
        let limit = limit.max(1);
        let dir = self.namespace_key(namespace);
        let dir_path = Path::parse(&dir).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "bad namespace key").with_source(e)
        })?;
        let escaped_prefix = escape(prefix);
        let mut listing = match page {
            Some(after) => {
                let offset = self.object_path(namespace, after)?;
                self.store.list_with_offset(Some(&dir_path), &offset)
            }
            None => self.store.list(Some(&dir_path)),
        };
        // Keys come in stored order, which is the order pages follow; the
        // token is the last name, whose key is where the next page starts.
        // Hashed names (`#…`) sort before every escaped one, so once an
        // escaped key passes the escaped prefix nothing later can match.
        let offset = page.map(stored_name).transpose()?;
        let mut names = Vec::with_capacity(limit + 1);
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(self.fail("list"))?;
            let Some(segment) = meta.location.filename() else {
                continue;
            };
            // Stores that ignore the offset (Azurite) repeat earlier keys.
            if offset.as_deref().is_some_and(|o| segment <= o) {
                continue;
            }
            let hashed = segment.starts_with('#');
            if !hashed && !segment.starts_with(&escaped_prefix) {
                if segment > escaped_prefix.as_str() {
                    break;
                }
                continue;
            }
            let Some(name) = self.name_of(namespace, segment).await? else {
                continue;
            };
            if name.starts_with(prefix) {
                names.push(name);
            }
            if names.len() > limit {
                break;
            }
        }
        let more = names.len() > limit;
        names.truncate(limit);
        let next = more.then(|| names.last().cloned()).flatten();
        Ok(ListPage { names, next })
    }
}

/// Reads a body that must hold exactly `length` bytes.
pub(crate) async fn collect_exact(
    mut body: UploadBody,
    length: u64,
) -> Result<Vec<Bytes>, BackendError> {
    let mut chunks = Vec::new();
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(body_failed)?;
        received += chunk.len() as u64;
        if received > length {
            return Err(length_mismatch(length, received));
        }
        chunks.push(chunk);
    }
    if received != length {
        return Err(length_mismatch(length, received));
    }
    Ok(chunks)
}

fn body_failed(e: std::io::Error) -> BackendError {
    BackendError::new(BackendErrorKind::Other, "upload body failed").with_source(e)
}

fn length_mismatch(expected: u64, got: u64) -> BackendError {
    let message = format!("upload body has {got}+ bytes, expected {expected}");
    BackendError::new(BackendErrorKind::Corrupt, message)
}

/// Classifies an `object_store` failure of operation `what` of the
/// `backend` kind.
///
/// `object_store` names the statuses it understands (404, 401, 403) as
/// variants and folds the rest into `Generic`; for those the status is read
/// from the error chain (see [`http_status`]), and transport failures are
/// recognised by their `HttpError`.
fn classify(backend: &str, e: object_store::Error, what: &str) -> BackendError {
    use object_store::Error as E;

    let kind = match &e {
        E::NotFound { .. } => BackendErrorKind::NotFound,
        // S3 answers 403 both for a bad signature and a missing grant.
        E::Unauthenticated { .. } | E::PermissionDenied { .. } => BackendErrorKind::Unauthorized,
        E::NotSupported { .. } | E::NotImplemented { .. } => BackendErrorKind::Unsupported,
        // Conditional requests are never sent, so these mean a confused
        // server rather than a lost race.
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
            BackendErrorKind::Other
        }
        // Client-side problems: a key `object_store` refuses, a config key.
        E::InvalidPath { .. } | E::UnknownConfigurationKey { .. } => BackendErrorKind::Other,
        // `Generic` and variants added later: classify by what the chain
        // says about the HTTP exchange.
        _ => match http_status(&e) {
            Some(429) => BackendErrorKind::RateLimited,
            Some(501) => BackendErrorKind::Unsupported,
            // 503 is also S3's "SlowDown", which a retry with backoff suits.
            Some(500..=599) => BackendErrorKind::Unavailable,
            Some(401 | 403) => BackendErrorKind::Unauthorized,
            Some(404) => BackendErrorKind::NotFound,
            Some(_) => BackendErrorKind::Other,
            None if is_transport(&e) => BackendErrorKind::Unavailable,
            None => BackendErrorKind::Other,
        },
    };
    BackendError::new(kind, format!("{backend} {what}: {e}")).with_source(e)
}

/// Whether the failure was in connecting or talking to the server. An
/// `Unknown` kind is left out: it is what a request the client could not
/// even build (a bad URL, a refused scheme) comes back as, which no retry
/// fixes.
fn is_transport(e: &object_store::Error) -> bool {
    chain(e).any(|source| {
        source.downcast_ref::<HttpError>().is_some_and(|http| {
            matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Decode
            )
        })
    })
}

/// Reads the HTTP status of a failed request from the error chain.
///
/// `object_store` keeps the status in an error type it does not export, so
/// it is read from that error's message, `Server returned non-2xx status
/// code: <status>`; `tests/s3.rs` pins the format against chosen statuses.
fn http_status(e: &object_store::Error) -> Option<u16> {
    const MARK: &str = "status code: ";
    chain(e).find_map(|source| {
        let text = source.to_string();
        let at = text.find(MARK)? + MARK.len();
        text.get(at..at + 3)?.parse().ok()
    })
}

fn chain(e: &object_store::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
}
