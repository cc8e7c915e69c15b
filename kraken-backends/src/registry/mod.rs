//! A read-only backend on any OCI or Docker registry: a pull-through
//! source, so a cluster can start in front of the registry it already has
//! (Docker Hub, Harbor, ECR, a `registry:2`) and fetch what it lacks.
//!
//! # What names mean
//!
//! The namespace is the repository, behind an optional
//! `repository_prefix`. A name that is a digest (`sha256:<hex>`) is a
//! blob, read from `/v2/<repo>/blobs/<digest>`, or, when the registry has
//! no such blob, a manifest by digest from `/v2/<repo>/manifests/<digest>`.
//! A name `repo:tag` is a tag, resolved at `/v2/<repo>/manifests/<tag>`
//! (the repository the name spells, behind the same prefix); its object's
//! bytes are the digest it points at as text, such as `sha256:…`, taken
//! from `Docker-Content-Digest` or else hashed from the manifest. Every
//! manifest request accepts the Docker schema 2 manifest and list and the
//! OCI manifest and index. Names of neither shape are never found.
//!
//! `list` lists a repository's tags (`/v2/<repo>/tags/list`) as
//! `<namespace>:<tag>` names. `upload` is refused: the backend is a
//! source, never a destination.
//!
//! # Integrity
//!
//! A whole blob or manifest is hashed as it streams, and a body that does
//! not hash to the digest asked for ends in a `Corrupt` error naming the
//! backend, the URL and both digests, after its last bytes, so a caller
//! that stores as it reads must discard what it stored. Ranged reads
//! cannot be checked here; `fetch_verified` or the P2P layer checks the
//! whole.
//!
//! # Errors
//!
//! `404` is `NotFound`, `401` `Unauthorized` (with what the challenge
//! said), `403` `Forbidden`, `429` `RateLimited` with the `Retry-After`
//! wait; see `auth` for the token flow.
//!
//! # Redirects
//!
//! Blob downloads are often redirected to a CDN or object store. The
//! backend follows up to five redirects itself, sends `Authorization` only
//! to the registry's own origin, and never follows `https` to `http`.

mod auth;
pub(crate) mod manifest;
mod options;
pub(crate) mod reference;

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, Digest, Hasher, ListPage,
    Namespace, ObjectInfo, UploadBody,
};
use serde::Deserialize;
use url::Url;

pub use manifest::{DOCKER_LIST, DOCKER_MANIFEST, MEDIA_TYPES, Manifest, OCI_INDEX, OCI_MANIFEST};
pub use options::{RegistryBackendOptions, RegistryCredentials, RegistryTimeouts};

use self::auth::{Auth, Verdict, pull_scope};
use self::reference::{ObjectName, check_repository};
use crate::Error;
use crate::status::{check_content_range, slice, status_error};
use crate::transport::{self, Response, Transport};

/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;

/// Tags asked for per page of `tags/list`.
const TAGS_PAGE: usize = 100;

/// A read-only [`Backend`] on an OCI registry; see the module docs. Clones
/// share connections and cached tokens.
#[derive(Debug, Clone)]
pub struct RegistryBackend {
    transport: Transport,
    /// The base URL without a trailing `/`.
    base: String,
    origin: url::Origin,
    prefix: String,
    /// Taken off namespaces, with its `/`; empty for none.
    strip: String,
    auth: Arc<Auth>,
    timeouts: RegistryTimeouts,
    max_manifest_size: u64,
}

/// One request to the registry: which repository's scope it needs, what
/// it asks for, and how to describe it in errors.
struct Call {
    method: Method,
    scope: String,
    url: Url,
    headers: HeaderMap,
    what: String,
}

impl RegistryBackend {
    /// Builds the backend; no request is made until the first operation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the options do not validate or the
    /// TLS settings cannot be used.
    pub fn new(options: RegistryBackendOptions) -> Result<Self, Error> {
        options.validate()?;
        let base = options.base_url()?;
        let t = options.timeouts;
        let transport = Transport::new(t.connect, t.read_idle, &options.tls)?;
        let auth = Auth::new(
            base.clone(),
            options.credentials,
            transport.clone(),
            t.request,
        );
        tracing::info!(backend = "registry", url = %base, "backend configured");
        Ok(RegistryBackend {
            transport,
            base: base.as_str().trim_end_matches('/').to_owned(),
            origin: base.origin(),
            prefix: options.repository_prefix.trim_matches('/').to_owned(),
            strip: match options.strip_namespace_prefix.trim_matches('/') {
                "" => String::new(),
                strip => format!("{strip}/"),
            },
            auth: Arc::new(auth),
            timeouts: t,
            max_manifest_size: options.max_manifest_size.as_u64(),
        })
    }

    /// Fetches a manifest by tag or digest from the repository of
    /// `namespace`, for a registry that pulls through.
    ///
    /// The bytes are returned verbatim. By digest, they must hash to it;
    /// by tag, to the `Docker-Content-Digest` the registry sent, when it
    /// sent one.
    ///
    /// # Errors
    ///
    /// `NotFound` when the registry has no such manifest; `Corrupt` when
    /// the bytes do not hash to the expected digest; `Unsupported` for a
    /// schema 1 manifest; `Other` for a malformed reference or a manifest
    /// larger than `max_manifest_size`; the kinds of the module docs for
    /// refusals.
    pub async fn manifest(
        &self,
        namespace: &Namespace,
        reference: &str,
    ) -> Result<Manifest, BackendError> {
        let repository = self.repository(namespace.as_str())?;
        let expected = if reference.contains(':') {
            let digest = reference.parse::<Digest>().map_err(|e| {
                let message = format!("{reference:.80} is not a valid digest: {e}");
                BackendError::new(BackendErrorKind::Other, message)
            })?;
            Some(digest)
        } else {
            reference::check_tag(reference)?;
            None
        };
        self.fetch_manifest(&repository, reference, expected.as_ref())
            .await
    }

    /// Returns the registry repository of a namespace or a tag's
    /// repository: the prefix, then the name.
    fn repository(&self, name: &str) -> Result<String, BackendError> {
        let name = match self.strip.as_str() {
            "" => name,
            strip => name.strip_prefix(strip).unwrap_or(name),
        };
        let repository = if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        };
        check_repository(&repository)?;
        Ok(repository)
    }

    fn call(&self, method: Method, repository: &str, path: &str) -> Result<Call, BackendError> {
        let url = format!("{}/v2/{repository}/{path}", self.base);
        let url = Url::parse(&url).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, format!("bad URL {url}")).with_source(e)
        })?;
        let what = format!("registry {method} {}{}", host(&url), url.path());
        Ok(Call {
            method,
            scope: pull_scope(repository),
            url,
            headers: HeaderMap::new(),
            what,
        })
    }

    fn manifest_call(
        &self,
        method: Method,
        repository: &str,
        reference: &str,
    ) -> Result<Call, BackendError> {
        let mut call = self.call(method, repository, &format!("manifests/{reference}"))?;
        let accept = HeaderValue::from_str(&manifest::accept()).expect("media types are ASCII");
        call.headers.insert(ACCEPT, accept);
        Ok(call)
    }

    /// Sends `call`, answering at most one `401` challenge.
    async fn send(&self, call: &Call) -> Result<Response, BackendError> {
        let mut may_retry = true;
        loop {
            let auth = self.auth.header(&call.scope).await?;
            let response = self.follow(call, auth.as_ref()).await?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return Ok(response);
            }
            let headers = response.headers();
            match self
                .auth
                .challenged(headers, &call.scope, auth.as_ref(), may_retry)
            {
                Verdict::Retry => may_retry = false,
                Verdict::Refused(reason) => {
                    let error = status_error(StatusCode::UNAUTHORIZED, headers, &call.what);
                    let message = format!("{}: {reason}", error.message());
                    return Err(BackendError::new(error.kind(), message));
                }
            }
        }
    }

    /// Sends `call`, following redirects; `Authorization` goes only to
    /// the registry's own origin.
    async fn follow(
        &self,
        call: &Call,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, BackendError> {
        let mut url = call.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = http::Request::builder()
                .method(call.method.clone())
                .uri(url.as_str());
            for (name, value) in &call.headers {
                request = request.header(name, value);
            }
            if let Some(auth) = auth.filter(|_| url.origin() == self.origin) {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            let response = self.exchange(request, &call.what).await?;
            let Some(next) = redirect_target(&response, &url, &call.what)? else {
                return Ok(response);
            };
            tracing::debug!(backend = "registry", to = %host(&next), "following redirect");
            url = next;
        }
        let message = format!("{}: more than {MAX_REDIRECTS} redirects", call.what);
        Err(BackendError::new(BackendErrorKind::Other, message))
    }

    async fn exchange(
        &self,
        request: http::request::Builder,
        what: &str,
    ) -> Result<Response, BackendError> {
        let request = request.body(transport::empty()).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, format!("{what}: bad request"))
                .with_source(e)
        })?;
        let limit = self.timeouts.request;
        match tokio::time::timeout(limit, self.transport.send(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.into_backend(what)),
            Err(_) => Err(BackendError::unavailable(format!(
                "{what}: no response within {limit:?}"
            ))),
        }
    }

    /// Fetches a manifest and checks its digest against `expected`, or
    /// against the digest the registry names.
    async fn fetch_manifest(
        &self,
        repository: &str,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<Manifest, BackendError> {
        let call = self.manifest_call(Method::GET, repository, reference)?;
        let response = self.send(&call).await?;
        expect_status(&response, StatusCode::OK, &call.what)?;
        let headers = response.headers().clone();
        let bytes = self
            .transport
            .read_body(response, self.max_manifest_size)
            .await
            .map_err(|e| e.into_backend(&call.what))?;
        let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let media_type = manifest::media_type(content_type, &bytes, &call.what)?;
        let named = content_digest(&headers);
        let digest = match expected.or(named.as_ref()) {
            Some(expected) => {
                check_digest(&bytes, expected, &call.what)?;
                *expected
            }
            None => Digest::sha256_of(&bytes),
        };
        Ok(Manifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Returns the digest a tag points at.
    async fn resolve_tag(&self, repository: &str, tag: &str) -> Result<Digest, BackendError> {
        let call = self.manifest_call(Method::HEAD, repository, tag)?;
        let response = self.send(&call).await?;
        expect_status(&response, StatusCode::OK, &call.what)?;
        if let Some(digest) = content_digest(response.headers()) {
            return Ok(digest);
        }
        // No digest header: hash the manifest itself.
        let manifest = self.fetch_manifest(repository, tag, None).await?;
        Ok(manifest.digest)
    }

    /// Returns the bytes of a tag's object: the digest it points at.
    async fn tag_object(&self, repository: &str, tag: &str) -> Result<Bytes, BackendError> {
        let repository = self.repository(repository)?;
        let digest = self.resolve_tag(&repository, tag).await?;
        Ok(Bytes::from(digest.to_string()))
    }

    /// Returns a blob's size, or the size of a manifest of that digest.
    async fn stat_digest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<ObjectInfo, BackendError> {
        let call = self.call(Method::HEAD, repository, &format!("blobs/{digest}"))?;
        let response = self.send(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            let call = self.manifest_call(Method::HEAD, repository, &digest.to_string())?;
            let response = self.send(&call).await?;
            return head_size(&response, &call.what);
        }
        head_size(&response, &call.what)
    }

    /// Streams a blob, or a manifest of that digest; whole reads are
    /// checked against the digest.
    async fn download_digest(
        &self,
        repository: &str,
        digest: &Digest,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let mut call = self.call(Method::GET, repository, &format!("blobs/{digest}"))?;
        if let Some(r) = &range {
            let value = format!("bytes={}-{}", r.start, r.end - 1);
            let value = HeaderValue::from_str(&value).expect("digits and dashes");
            call.headers.insert(RANGE, value);
        }
        let response = self.send(&call).await?;
        let what = call.what;
        match (response.status(), range) {
            (StatusCode::NOT_FOUND, range) => {
                let reference = digest.to_string();
                let found = self.fetch_manifest(repository, &reference, Some(digest));
                Ok(bytes_in_range(&found.await?.bytes, range))
            }
            (StatusCode::OK, None) => {
                let body = self.body(response, what.clone());
                Ok(verified(body, *digest, what))
            }
            (StatusCode::OK, Some(r)) => {
                Ok(slice(self.body(response, what), r.start, r.end - r.start))
            }
            (StatusCode::PARTIAL_CONTENT, Some(r)) => {
                check_content_range(response.headers(), r.start, &what)?;
                Ok(slice(self.body(response, what), 0, r.end - r.start))
            }
            // The range starts at or past the end: clamped, that is nothing.
            (StatusCode::RANGE_NOT_SATISFIABLE, Some(_)) => Ok(stream::empty().boxed()),
            (status, _) => Err(status_error(status, response.headers(), &what)),
        }
    }

    fn body(&self, response: Response, what: String) -> BackendStream {
        transport::backend_stream(self.transport.body_stream(response), what)
    }

    /// Reads one page of `tags/list` after `last`; returns the tags and
    /// whether the registry may have more.
    async fn tags_page(
        &self,
        repository: &str,
        last: Option<&str>,
    ) -> Result<(Vec<String>, bool), BackendError> {
        let mut call = self.call(Method::GET, repository, "tags/list")?;
        call.url
            .query_pairs_mut()
            .append_pair("n", &TAGS_PAGE.to_string());
        if let Some(last) = last {
            call.url.query_pairs_mut().append_pair("last", last);
        }
        let response = self.send(&call).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok((Vec::new(), false));
        }
        expect_status(&response, StatusCode::OK, &call.what)?;
        let body = self
            .transport
            .read_body(response, self.max_manifest_size)
            .await
            .map_err(|e| e.into_backend(&call.what))?;
        let list: TagList = serde_json::from_slice(&body).map_err(|e| {
            let message = format!("{}: not a tag list", call.what);
            BackendError::new(BackendErrorKind::Other, message).with_source(e)
        })?;
        let mut tags = list.tags.unwrap_or_default();
        // A registry that ignores `n` sends everything at once.
        let more = tags.len() == TAGS_PAGE;
        tags.sort_unstable();
        Ok((tags, more))
    }
}

/// The body of `tags/list`; `tags` is `null` in an empty repository.
#[derive(Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}

#[async_trait]
impl Backend for RegistryBackend {
    fn kind(&self) -> &'static str {
        "registry"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: false,
            list: true,
        }
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        match reference::parse(name)? {
            Some(ObjectName::Digest(digest)) => {
                let repository = self.repository(namespace.as_str())?;
                self.stat_digest(&repository, &digest).await
            }
            Some(ObjectName::Tag { repository, tag }) => {
                let object = self.tag_object(repository, tag).await?;
                Ok(ObjectInfo {
                    size: object.len() as u64,
                })
            }
            None => Err(not_held(name)),
        }
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        if range.as_ref().is_some_and(|r| r.start >= r.end) {
            // An empty range still owes a NotFound for a missing object.
            self.stat(namespace, name).await?;
            return Ok(stream::empty().boxed());
        }
        match reference::parse(name)? {
            Some(ObjectName::Digest(digest)) => {
                let repository = self.repository(namespace.as_str())?;
                self.download_digest(&repository, &digest, range).await
            }
            Some(ObjectName::Tag { repository, tag }) => {
                let object = self.tag_object(repository, tag).await?;
                Ok(bytes_in_range(&object, range))
            }
            None => Err(not_held(name)),
        }
    }

    async fn upload(
        &self,
        _namespace: &Namespace,
        _name: &str,
        _length: u64,
        _body: UploadBody,
    ) -> Result<(), BackendError> {
        Err(BackendError::unsupported(
            "the registry backend is read-only; route pushes to a writable backend",
        ))
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        let limit = limit.max(1);
        let own = format!("{namespace}:");
        // Names are `<namespace>:<tag>`: a prefix that diverges from that
        // form matches nothing; one inside it narrows the tags.
        let tag_prefix = match prefix.strip_prefix(&own) {
            Some(rest) => rest,
            None if own.starts_with(prefix) => "",
            None => return Ok(ListPage::default()),
        };
        let repository = self.repository(namespace.as_str())?;
        let mut cursor = page.and_then(|p| p.strip_prefix(&own)).map(str::to_owned);
        let mut names = Vec::with_capacity(limit + 1);
        // Tags come sorted, so the ones with the prefix are contiguous and
        // the walk ends once it passes them.
        while names.len() <= limit {
            let (tags, more) = self.tags_page(&repository, cursor.as_deref()).await?;
            let fresh: Vec<String> = tags
                .into_iter()
                .filter(|t| cursor.as_ref().is_none_or(|c| t > c))
                .collect();
            let Some(last) = fresh.last().cloned() else {
                break;
            };
            let matching = fresh.into_iter().filter(|t| t.starts_with(tag_prefix));
            names.extend(matching.map(|t| format!("{own}{t}")));
            let passed = last.as_str() > tag_prefix && !last.starts_with(tag_prefix);
            cursor = Some(last);
            if !more || passed {
                break;
            }
        }
        let more = names.len() > limit;
        names.truncate(limit);
        let next = more.then(|| names.last().cloned()).flatten();
        Ok(ListPage { names, next })
    }
}

fn not_held(name: &str) -> BackendError {
    BackendError::not_found(format!(
        "registry backend: {name:.80} is neither a digest nor repo:tag, so no registry holds it"
    ))
}

fn host(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => String::new(),
    }
}

/// Returns where a redirect points, or `None` for any other answer.
fn redirect_target(
    response: &Response,
    from: &Url,
    what: &str,
) -> Result<Option<Url>, BackendError> {
    let status = response.status();
    if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    let location = response.headers().get(LOCATION);
    let target = location
        .and_then(|l| l.to_str().ok())
        .and_then(|l| from.join(l).ok());
    let bad = |reason: &str| {
        let message = format!("{what}: {status} {reason}");
        Err(BackendError::new(BackendErrorKind::Other, message))
    };
    match target {
        None => bad("without a usable Location"),
        Some(to) if from.scheme() == "https" && to.scheme() != "https" => {
            bad("to a plain-http URL, refused")
        }
        Some(to) if !matches!(to.scheme(), "http" | "https") => bad("to a non-HTTP URL"),
        Some(to) => Ok(Some(to)),
    }
}

fn expect_status(response: &Response, want: StatusCode, what: &str) -> Result<(), BackendError> {
    let status = response.status();
    if status == want {
        return Ok(());
    }
    Err(status_error(status, response.headers(), what))
}

/// Reads the size of a `HEAD` answer from `Content-Length`.
fn head_size(response: &Response, what: &str) -> Result<ObjectInfo, BackendError> {
    expect_status(response, StatusCode::OK, what)?;
    let size = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    match size {
        Some(size) => Ok(ObjectInfo { size }),
        None => Err(BackendError::new(
            BackendErrorKind::Other,
            format!("{what}: no Content-Length"),
        )),
    }
}

/// The digest a registry says its answer has.
fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    let value = headers.get("docker-content-digest")?.to_str().ok()?;
    value.trim().parse().ok()
}

fn check_digest(bytes: &[u8], expected: &Digest, what: &str) -> Result<(), BackendError> {
    let actual = Digest::of(expected.algorithm(), bytes);
    if actual == *expected {
        return Ok(());
    }
    Err(mismatch(what, expected, &actual, bytes.len() as u64))
}

fn mismatch(what: &str, expected: &Digest, actual: &Digest, len: u64) -> BackendError {
    let message = format!("{what}: {len} bytes hash to {actual}, expected {expected}");
    BackendError::new(BackendErrorKind::Corrupt, message)
}

/// Returns `data`, or its part in `range` clamped to its end, as a stream.
fn bytes_in_range(data: &Bytes, range: Option<Range<u64>>) -> BackendStream {
    let len = data.len() as u64;
    let range = range.unwrap_or(0..len);
    let start = range.start.min(len) as usize;
    let end = range.end.min(len) as usize;
    let part = data.slice(start..end.max(start));
    stream::iter((!part.is_empty()).then_some(Ok(part))).boxed()
}

/// Passes `body` on while hashing it; if the whole does not hash to
/// `digest`, the stream ends with a `Corrupt` error instead of cleanly.
fn verified(body: BackendStream, digest: Digest, what: String) -> BackendStream {
    let hasher = Hasher::new(digest.algorithm());
    stream::unfold(Some((body, hasher, 0u64)), move |state| {
        let what = what.clone();
        async move {
            let (mut body, mut hasher, seen) = state?;
            match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    let seen = seen + chunk.len() as u64;
                    Some((Ok(chunk), Some((body, hasher, seen))))
                }
                Some(Err(e)) => Some((Err(e), None)),
                None => {
                    let actual = hasher.finish();
                    let done = actual == digest;
                    (!done).then(|| (Err(mismatch(&what, &digest, &actual, seen)), None))
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_through_namespaces_lose_their_upstream() {
        let mut options = RegistryBackendOptions::new("http://127.0.0.1:1/");
        options.strip_namespace_prefix = "docker.io".into();
        let backend = RegistryBackend::new(options).unwrap();
        assert_eq!(
            backend.repository("docker.io/library/ubuntu").unwrap(),
            "library/ubuntu"
        );
        assert_eq!(
            backend.repository("library/ubuntu").unwrap(),
            "library/ubuntu"
        );
        assert_eq!(backend.repository("docker.iox/a").unwrap(), "docker.iox/a");
    }

    #[test]
    fn repositories_take_the_prefix() {
        let mut options = RegistryBackendOptions::new("http://127.0.0.1:1/");
        options.repository_prefix = "/mirror/".into();
        let backend = RegistryBackend::new(options).unwrap();
        assert_eq!(
            backend.repository("library/ubuntu").unwrap(),
            "mirror/library/ubuntu"
        );
        assert!(backend.repository("CI-cache").is_err());
        let call = backend.call(Method::GET, "mirror/a", "tags/list").unwrap();
        assert_eq!(
            call.url.as_str(),
            "http://127.0.0.1:1/v2/mirror/a/tags/list"
        );
        assert_eq!(call.scope, "repository:mirror/a:pull");
    }

    async fn collect(mut stream: BackendStream) -> Result<Vec<u8>, BackendError> {
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn ranges_of_small_objects_are_cut_here() {
        let data = Bytes::from_static(b"sha256:abc");
        let cut = |range| collect(bytes_in_range(&data, range));
        assert_eq!(cut(None).await.unwrap(), b"sha256:abc");
        assert_eq!(cut(Some(0..6)).await.unwrap(), b"sha256");
        assert_eq!(cut(Some(7..100)).await.unwrap(), b"abc");
        assert_eq!(cut(Some(50..60)).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn whole_reads_that_hash_wrong_end_in_corrupt() {
        let data = Bytes::from_static(b"layer bytes");
        let chunks = || stream::iter([Ok(data.slice(..5)), Ok(data.slice(5..))]).boxed();
        let right = Digest::sha256_of(&data);
        let got = collect(verified(chunks(), right, "w".into())).await;
        assert_eq!(got.unwrap(), data);
        let wrong = Digest::sha256_of(b"other bytes");
        let error = collect(verified(chunks(), wrong, "GET x".into()))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Corrupt);
        let message = error.message();
        assert!(message.contains(&wrong.to_string()), "{message}");
        assert!(
            message.contains(&Digest::sha256_of(&data).to_string()),
            "{message}"
        );
        assert!(message.starts_with("GET x: 11 bytes"), "{message}");
    }
}
