//! A backend on Amazon S3 or an S3-compatible store (Garage, Ceph RGW,
//! MinIO), through the `object_store` crate, so a cluster can keep its
//! blobs where it already keeps everything else.
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
//! are multipart uploads of `part_size` parts. Either way S3 makes the new
//! object visible whole or not at all, and an upload whose body turns out
//! shorter or longer than declared is never completed (a multipart upload
//! is aborted), so nothing is stored.
//!
//! With `layout = "docker_registry"` the bucket (under `prefix`, the
//! registry's `rootdirectory`) is laid out as docker/distribution's S3
//! driver lays it out, as `crate::layout` describes, so it can be shared
//! with a vanilla registry.
//!
//! Requests go through this crate's HTTP client (see `client`), over TLS
//! on rustls and ring for `https://` endpoints and AWS itself, and are
//! signed (SigV4) on ring.
//!
//! # Limitations
//!
//! - Only static keys are tested; the environment and instance-role chain
//!   is untested here, as no metadata service runs on a test machine.
//! - `list` reads one companion object per hashed (long) name in the
//!   namespace on every page that reaches them.
//! - `list` walks the namespace from the page token (or its start) and
//!   filters by prefix here, because S3 prefixes and `object_store` prefixes
//!   differ in meaning; it stops as soon as keys pass the prefix.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use bytesize::ByteSize;
use futures::{StreamExt, TryStreamExt, stream};
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage, Namespace,
    ObjectInfo, UploadBody,
};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use serde::{Deserialize, Serialize};

use crate::names::{escape, stored_name, unescape};
use crate::{Error, names};

mod client;
mod docker;

use client::Connector;

use crate::layout::{DockerObject, Layout};
use crate::transport::TlsOptions;

/// S3's smallest part (but the last) of a multipart upload.
const MIN_PART: ByteSize = ByteSize::mib(5);
/// S3's largest part.
const MAX_PART: ByteSize = ByteSize::gib(5);
/// Parts uploaded at once by one multipart upload.
const PART_CONCURRENCY: usize = 4;

/// Options of the S3 backend, as they appear in config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3BackendOptions {
    /// The bucket holding every object.
    pub bucket: String,
    /// The region requests are signed for; S3-compatible servers usually
    /// want `us-east-1` unless configured otherwise.
    pub region: String,
    /// The URL of an S3-compatible server, addressed path-style
    /// (`<endpoint>/<bucket>/<key>`); AWS's own endpoint for `region` when
    /// absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The access key id; with `secret_access_key`, overrides any other
    /// source of credentials.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret matching `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// A session token for temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Reads the standard `AWS_*` environment variables (credentials, web
    /// identity, container credentials) before applying these options.
    /// Off by default, so a library never reads the environment unasked;
    /// without it and without keys, credentials come from the instance's
    /// metadata service (an EC2 instance role).
    #[serde(default)]
    pub from_env: bool,
    /// A key prefix under which every object is kept, such as
    /// `kraken/prod`; the bucket's root when empty.
    #[serde(default)]
    pub prefix: String,
    /// How names map to keys: `plain` (the default) or `docker_registry`,
    /// to share the bucket with a registry whose `rootdirectory` is
    /// `prefix`.
    #[serde(default)]
    pub layout: Layout,
    /// Uploads larger than this are multipart uploads.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    /// The part size of multipart uploads, at least 5 MiB (S3's minimum).
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Allows a plain `http://` endpoint, for a server on loopback.
    #[serde(default)]
    pub allow_http: bool,
    /// How often a failed request is retried inside the client before the
    /// failure is returned; 0 leaves retries to the `Retry` wrapper.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// How long connecting may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Which servers to trust on `https://` endpoints.
    #[serde(default)]
    pub tls: TlsOptions,
}

fn default_multipart_threshold() -> ByteSize {
    ByteSize::mib(16)
}

fn default_part_size() -> ByteSize {
    ByteSize::mib(8)
}

fn default_max_retries() -> usize {
    3
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl S3BackendOptions {
    /// Creates options for `bucket` in `region` with every default, which
    /// address AWS itself.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        S3BackendOptions {
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            from_env: false,
            prefix: String::new(),
            layout: Layout::Plain,
            multipart_threshold: default_multipart_threshold(),
            part_size: default_part_size(),
            allow_http: false,
            max_retries: default_max_retries(),
            connect_timeout: default_connect_timeout(),
            tls: TlsOptions::default(),
        }
    }

    /// Checks the options for values S3 or the client would refuse later.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the first bad option.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.bucket.is_empty() {
            return bad("bucket", "must not be empty");
        }
        if self.region.is_empty() {
            return bad("region", "must not be empty");
        }
        match &self.endpoint {
            None => {}
            Some(e) if url::Url::parse(e).is_err() => {
                return bad("endpoint", "is not a URL");
            }
            Some(e) if e.starts_with("https://") => {}
            Some(e) if !e.starts_with("http://") => {
                return bad("endpoint", "must be an http:// or https:// URL");
            }
            Some(_) if !self.allow_http => {
                return bad("endpoint", "is plain http; set allow_http to use it");
            }
            Some(_) => {}
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return bad("access_key_id", "needs secret_access_key, and the reverse");
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            return bad("session_token", "needs access_key_id");
        }
        if !self.prefix.is_empty() && Path::parse(self.prefix.trim_matches('/')).is_err() {
            return bad("prefix", "must be `/`-separated non-empty segments");
        }
        if self.part_size < MIN_PART || self.part_size > MAX_PART {
            return bad("part_size", "must be between 5 MiB and 5 GiB");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must not be zero");
        }
        self.tls.validate()
    }
}

impl fmt::Debug for S3BackendOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3BackendOptions")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &redact(&self.access_key_id))
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("from_env", &self.from_env)
            .field("prefix", &self.prefix)
            .field("layout", &self.layout)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("allow_http", &self.allow_http)
            .field("max_retries", &self.max_retries)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A [`Backend`] keeping objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Backend {
    store: Arc<AmazonS3>,
    /// The key prefix without slashes at either end; empty for the root.
    prefix: String,
    layout: Layout,
    multipart_threshold: u64,
    part_size: usize,
}

impl S3Backend {
    /// Builds the backend; no request is made until the first operation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the options do not validate or the
    /// client refuses them.
    pub fn new(options: S3BackendOptions) -> Result<Self, Error> {
        options.validate()?;
        let connector = Connector::new(options.connect_timeout, &options.tls)?;
        let store = builder(&options)
            .with_http_connector(connector)
            .build()
            .map_err(|e| Error::InvalidOption {
                option: "s3",
                reason: e.to_string(),
            })?;
        tracing::info!(
            backend = "s3",
            bucket = %options.bucket,
            endpoint = options.endpoint.as_deref().unwrap_or("aws"),
            "backend configured"
        );
        Ok(S3Backend {
            store: Arc::new(store),
            prefix: trim_slashes(options.prefix),
            layout: options.layout,
            multipart_threshold: options.multipart_threshold.as_u64(),
            part_size: usize::try_from(options.part_size.as_u64()).unwrap_or(usize::MAX),
        })
    }

    /// Returns the key of a namespace's directory.
    fn namespace_key(&self, namespace: &Namespace) -> String {
        let namespace = escape(namespace.as_ref());
        if self.prefix.is_empty() {
            namespace
        } else {
            format!("{}/{namespace}", self.prefix)
        }
    }

    fn object_path(&self, namespace: &Namespace, name: &str) -> Result<Path, BackendError> {
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
            Err(e) => return Err(classify(e, "get name")),
        };
        let bytes = got.bytes().await.map_err(|e| classify(e, "get name"))?;
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
            .map_err(|e| classify(e, "put"))?;
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
            .map_err(|e| classify(e, "start multipart upload"))?;
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
                break Some(classify(e, "upload part"));
            }
            writer.put(chunk);
        };
        if let Some(error) = failure {
            // Abort so the parts stop costing storage; failing to abort
            // leaves them to the bucket's lifecycle rules, not the object.
            if let Err(e) = writer.abort().await {
                tracing::debug!(backend = "s3", error = %e, "abort of multipart upload failed");
            }
            return Err(error);
        }
        writer
            .finish()
            .await
            .map_err(|e| classify(e, "complete multipart upload"))?;
        Ok(())
    }
}

fn trim_slashes(mut prefix: String) -> String {
    prefix.truncate(prefix.trim_end_matches('/').len());
    prefix.trim_start_matches('/').to_owned()
}

/// Turns the options into a client builder; reads the environment only
/// when `from_env` asks for it.
fn builder(options: &S3BackendOptions) -> AmazonS3Builder {
    let mut builder = if options.from_env {
        AmazonS3Builder::from_env()
    } else {
        AmazonS3Builder::new()
    };
    // Client options first: `with_client_options` replaces them whole,
    // `allow_http` included. The connect timeout is the connector's.
    builder = builder
        .with_client_options(ClientOptions::new().with_allow_http(options.allow_http))
        .with_bucket_name(&options.bucket)
        .with_region(&options.region)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig {
            max_retries: options.max_retries,
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let (Some(id), Some(secret)) = (&options.access_key_id, &options.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
    }
    if let Some(token) = &options.session_token {
        builder = builder.with_token(token);
    }
    builder
}

#[async_trait]
impl Backend for S3Backend {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            list: true,
        }
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let path = self.read_path(namespace, name)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| classify(e, "head"))?;
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
            let got = self
                .store
                .get(&path)
                .await
                .map_err(|e| classify(e, "get"))?;
            return Ok(stream_of(got.into_stream()));
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
            Ok(got) => Ok(stream_of(got.into_stream())),
            Err(e) => {
                let error = classify(e, "ranged get");
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
                .map_err(|e| classify(e, "put name"))?;
        }
        self.put_any(&path, length, body).await?;
        tracing::debug!(backend = "s3", %namespace, name, length, "object stored");
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
        let mut names = Vec::with_capacity(limit + 1);
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| classify(e, "list"))?;
            let Some(segment) = meta.location.filename() else {
                continue;
            };
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

fn stream_of(
    body: futures::stream::BoxStream<'static, object_store::Result<Bytes>>,
) -> BackendStream {
    body.map_err(|e| classify(e, "read body")).boxed()
}

/// Reads a body that must hold exactly `length` bytes.
async fn collect_exact(mut body: UploadBody, length: u64) -> Result<Vec<Bytes>, BackendError> {
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

/// Classifies an `object_store` failure of operation `what`.
///
/// `object_store` names the statuses it understands (404, 401, 403) as
/// variants and folds the rest into `Generic`; for those the status is read
/// from the error chain (see [`http_status`]), and transport failures are
/// recognised by their `HttpError`.
fn classify(e: object_store::Error, what: &str) -> BackendError {
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
    BackendError::new(kind, format!("s3 {what}: {e}")).with_source(e)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> S3BackendOptions {
        S3BackendOptions {
            endpoint: Some("http://127.0.0.1:3900".into()),
            allow_http: true,
            access_key_id: Some("AK".into()),
            secret_access_key: Some("very secret".into()),
            ..S3BackendOptions::new("bucket", "us-east-1")
        }
    }

    #[test]
    fn options_validate() {
        options().validate().unwrap();
        type Break = fn(&mut S3BackendOptions);
        let cases: [(&str, Break); 8] = [
            ("endpoint", |o| o.endpoint = Some("http//s3.example".into())),
            ("tls", |o| o.tls.builtin_roots = false),
            ("bucket", |o| o.bucket.clear()),
            ("endpoint", |o| o.allow_http = false),
            ("endpoint", |o| o.endpoint = Some("ftp://x".into())),
            ("access_key_id", |o| o.secret_access_key = None),
            ("part_size", |o| o.part_size = ByteSize::mib(1)),
            ("prefix", |o| o.prefix = "a//b".into()),
        ];
        for (option, break_it) in cases {
            let mut o = options();
            break_it(&mut o);
            match o.validate() {
                Err(Error::InvalidOption { option: got, .. }) => assert_eq!(got, option),
                other => panic!("{option}: expected InvalidOption, got {other:?}"),
            }
        }
    }

    #[test]
    fn options_parse_with_defaults_and_hide_secrets() {
        let o: S3BackendOptions = serde_json::from_str(
            r#"{"bucket": "b", "region": "r", "secret_access_key": "s3cr3t",
                "access_key_id": "AK", "part_size": "5 MiB"}"#,
        )
        .unwrap();
        assert_eq!(o.part_size, ByteSize::mib(5));
        assert_eq!(o.multipart_threshold, default_multipart_threshold());
        assert!(!o.from_env);
        assert!(!format!("{o:?}").contains("s3cr3t"));
        let unknown =
            serde_json::from_str::<S3BackendOptions>(r#"{"bucket":"b","region":"r","x":1}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn keys_keep_namespaces_apart() {
        let backend = S3Backend::new(S3BackendOptions {
            prefix: "/kraken/prod/".into(),
            ..options()
        })
        .unwrap();
        let ns = Namespace::new("library/ubuntu").unwrap();
        let path = backend.object_path(&ns, "a/../b:latest").unwrap();
        assert_eq!(
            path.as_ref(),
            "kraken/prod/library%2Fubuntu/a%2F..%2Fb:latest"
        );
        assert!(backend.object_path(&ns, "").is_err());
    }
}
