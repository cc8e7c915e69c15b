//! A backend on any HTTP file server: nginx with WebDAV `PUT`, a CDN
//! in front of a bucket, an artifact store. It exists so a cluster can use
//! storage it already has without a bespoke client.
//!
//! The server is described by URL templates, one per operation, holding
//! `{namespace}` and (except `list`) `{name}`:
//!
//! ```toml
//! get = "http://127.0.0.1:8080/{namespace}/{name}"
//! put = "http://127.0.0.1:8080/{namespace}/{name}"
//! list = "http://127.0.0.1:8080/{namespace}/"
//! ```
//!
//! # How names become URLs
//!
//! Names and namespaces are escaped twice, so that a server which decodes
//! the path once (as nginx does before mapping it to a file) still sees a
//! single, harmless file name:
//!
//! 1. The value is escaped into one file name: everything but ASCII letters,
//!    digits and `. _ - : @ + = ,` is percent-encoded (so `/` becomes `%2F`,
//!    `%` becomes `%25`, `#` becomes `%23`), and a leading `.` becomes `%2E`,
//!    so the result is never `.`, `..` or a hidden file. A namespace
//!    `library/ubuntu` becomes the one directory `library%2Fubuntu`, so
//!    namespaces never nest into each other and a namespace directory holds
//!    only objects.
//! 2. That file name is percent-encoded again as a URL path segment (`%`
//!    becomes `%25`), giving `library%252Fubuntu` in the URL.
//!
//! No `/` and no dot segment can come out of a name, however many times the
//! server decodes, so no name reaches outside `{namespace}`'s directory. A
//! name whose file name would pass 200 bytes (file names end at 255) is
//! stored as `#<sha256 of the name>`, with the name itself in a companion
//! object `#<sha256>.name` that `list` reads.
//!
//! # Listing
//!
//! `list` fetches the `list` template's URL and expects nginx's JSON
//! directory listing (`autoindex on; autoindex_format json;`): an array of
//! `{"name": …, "type": "file" | "directory", …}`. A 404 is an empty
//! listing (nothing was ever written to the namespace). Paging happens
//! here, over the whole directory, because autoindex has no paging.
//!
//! # Atomic replace
//!
//! An upload is one `PUT` with a `Content-Length`; making a replaced object
//! appear whole is the server's job. nginx's DAV module writes the body to
//! a temporary file and renames it into place, which is atomic as long as
//! `client_body_temp_path` is on the same filesystem as the root.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, RANGE};
use http::{HeaderValue, Method, StatusCode};
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage, Namespace,
    ObjectInfo, UploadBody,
};
use percent_encoding::{percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::status::{self, check_content_range, slice, status_error};
use crate::transport::{self, RequestBody, Response, TlsOptions, Transport};
use crate::{Error, names};

/// Options of the HTTP backend, as they appear in config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpBackendOptions {
    /// The URL template of downloads, holding `{namespace}` and `{name}`.
    pub get: String,
    /// The URL template of `HEAD` requests for `stat`; `get` when absent.
    #[serde(default)]
    pub head: Option<String>,
    /// The URL template of uploads; the backend is read-only when absent.
    #[serde(default)]
    pub put: Option<String>,
    /// The URL of a namespace's nginx JSON directory listing, holding
    /// `{namespace}` only; the backend cannot list when absent. End it
    /// with `/`: nginx redirects a directory URL without one, and
    /// redirects are not followed.
    #[serde(default)]
    pub list: Option<String>,
    /// How long each step may take.
    #[serde(default)]
    pub timeouts: HttpTimeouts,
    /// Credentials sent with every request.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Which servers to trust on `https://` templates.
    #[serde(default)]
    pub tls: TlsOptions,
}

impl HttpBackendOptions {
    /// Creates options for a server that serves, stores and lists objects
    /// under `base` (such as `http://127.0.0.1:8080/blobs`) with nginx's
    /// layout, and default timeouts.
    pub fn nginx(base: &str) -> Self {
        let base = base.trim_end_matches('/');
        let object = format!("{base}/{{namespace}}/{{name}}");
        HttpBackendOptions {
            get: object.clone(),
            head: None,
            put: Some(object),
            list: Some(format!("{base}/{{namespace}}/")),
            timeouts: HttpTimeouts::default(),
            auth: None,
            tls: TlsOptions::default(),
        }
    }

    /// Checks the templates and timeouts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the first bad option.
    pub fn validate(&self) -> Result<(), Error> {
        Template::new("get", &self.get, true)?;
        if let Some(head) = &self.head {
            Template::new("head", head, true)?;
        }
        if let Some(put) = &self.put {
            Template::new("put", put, true)?;
        }
        if let Some(list) = &self.list {
            Template::new("list", list, false)?;
        }
        self.tls.validate()?;
        self.timeouts.validate()
    }
}

/// Timeouts of the HTTP backend; every one must be above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpTimeouts {
    /// Opening a TCP connection. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// A whole `stat` or `list`, and a download's wait for its response
    /// headers. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    /// The longest silence while reading a response body; a download's
    /// total time is not bounded, since it grows with the object. Default
    /// `60s`.
    #[serde(with = "humantime_serde")]
    pub read_idle: Duration,
    /// A whole upload, body included. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub upload: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            read_idle: Duration::from_secs(60),
            upload: Duration::from_secs(15 * 60),
        }
    }
}

impl HttpTimeouts {
    /// Checks every timeout is above zero.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the first zero timeout.
    pub fn validate(&self) -> Result<(), Error> {
        let all = [
            ("timeouts.connect", self.connect),
            ("timeouts.request", self.request),
            ("timeouts.read_idle", self.read_idle),
            ("timeouts.upload", self.upload),
        ];
        match all.into_iter().find(|(_, d)| d.is_zero()) {
            Some((option, _)) => Err(Error::InvalidOption {
                option,
                reason: "must be above zero".into(),
            }),
            None => Ok(()),
        }
    }
}

/// Credentials for the file server; `Debug` shows who, never the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// HTTP basic authentication.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token in the `Authorization` header.
    Bearer {
        /// The token.
        token: String,
    },
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            HttpAuth::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// A URL template with `{namespace}` and possibly `{name}`.
#[derive(Debug, Clone)]
struct Template(String);

impl Template {
    fn new(option: &'static str, template: &str, with_name: bool) -> Result<Self, Error> {
        let bad = |reason: &str| Error::InvalidOption {
            option,
            reason: format!("{reason}: {template:?}"),
        };
        if !template.contains("{namespace}") {
            return Err(bad("the template has no {namespace}"));
        }
        if template.contains("{name}") != with_name {
            let reason = if with_name {
                "the template has no {name}"
            } else {
                "a listing template cannot hold {name}"
            };
            return Err(bad(reason));
        }
        let sample = template
            .replace("{namespace}", "ns")
            .replace("{name}", "name");
        match Url::parse(&sample) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                Ok(Template(template.to_owned()))
            }
            Ok(_) => Err(bad("only http:// and https:// URLs are supported")),
            Err(_) => Err(bad("not a URL")),
        }
    }

    /// Expands the template with a namespace and an already escaped file
    /// name.
    fn expand(&self, namespace: &Namespace, file: Option<&str>) -> Result<Url, BackendError> {
        let mut url = self
            .0
            .replace("{namespace}", &segment(&escape(namespace.as_str())));
        if let Some(file) = file {
            url = url.replace("{name}", &segment(file));
        }
        Url::parse(&url).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "bad expanded URL").with_source(e)
        })
    }
}

/// Escapes a value into one file name (step 1 in the module docs).
fn escape(value: &str) -> String {
    names::escape(value)
}

/// Encodes a file name as one URL path segment (step 2).
fn segment(file: &str) -> String {
    utf8_percent_encode(file, names::KEEP).to_string()
}

/// Returns the file name an object is stored under, and whether it is the
/// hashed form.
fn file_name(name: &str) -> Result<(String, bool), BackendError> {
    let stored = names::stored_name(name)?;
    let hashed = stored.starts_with('#');
    Ok((stored, hashed))
}

/// A [`Backend`] on a plain HTTP file server; see the module docs for the
/// URL layout.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    transport: Transport,
    get: Template,
    head: Template,
    put: Option<Template>,
    list: Option<Template>,
    /// The `Authorization` value of every request, marked sensitive.
    auth: Option<HeaderValue>,
    timeouts: HttpTimeouts,
}

impl HttpBackend {
    /// Builds the backend and its HTTP client from `options`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the options do not validate or the
    /// TLS settings cannot be used.
    pub fn new(options: HttpBackendOptions) -> Result<Self, Error> {
        options.validate()?;
        // The transport follows no redirects: a file server has no reason
        // to send one, and following it could carry credentials elsewhere.
        let transport = Transport::new(
            options.timeouts.connect,
            options.timeouts.read_idle,
            &options.tls,
        )?;
        let head = options.head.as_deref().unwrap_or(&options.get);
        let auth = options.auth.map(|auth| match auth {
            HttpAuth::Basic { username, password } => status::basic_auth(&username, &password),
            HttpAuth::Bearer { token } => status::bearer_auth(&token),
        });
        Ok(HttpBackend {
            transport,
            get: Template::new("get", &options.get, true)?,
            head: Template::new("head", head, true)?,
            put: options
                .put
                .as_deref()
                .map(|t| Template::new("put", t, true))
                .transpose()?,
            list: options
                .list
                .as_deref()
                .map(|t| Template::new("list", t, false))
                .transpose()?,
            auth,
            timeouts: options.timeouts,
        })
    }

    fn request(&self, method: Method, url: &Url) -> http::request::Builder {
        let request = http::Request::builder().method(method).uri(url.as_str());
        match &self.auth {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    /// Sends `request` with `body`, waiting at most `limit` for the
    /// response headers.
    async fn send(
        &self,
        request: http::request::Builder,
        body: RequestBody,
        limit: Duration,
        what: &str,
    ) -> Result<Response, BackendError> {
        let request = request.body(body).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, format!("{what}: bad request"))
                .with_source(e)
        })?;
        match tokio::time::timeout(limit, self.transport.send(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.into_backend(what)),
            Err(_) => Err(BackendError::unavailable(format!(
                "{what}: no response within {limit:?}"
            ))),
        }
    }

    /// Sends a request without a body, waiting at most the request timeout.
    async fn send_empty(
        &self,
        method: Method,
        url: &Url,
        what: &str,
    ) -> Result<Response, BackendError> {
        let request = self.request(method, url);
        self.send(request, transport::empty(), self.timeouts.request, what)
            .await
    }

    async fn read_body(&self, response: Response, what: &str) -> Result<Bytes, BackendError> {
        self.transport
            .read_body(response, MAX_SMALL_BODY)
            .await
            .map_err(|e| e.into_backend(what))
    }

    fn body_stream(&self, response: Response, what: String) -> BackendStream {
        transport::backend_stream(self.transport.body_stream(response), what)
    }

    /// Reads a small object whole, such as a hashed name's companion.
    async fn read_small(
        &self,
        namespace: &Namespace,
        file: &str,
    ) -> Result<Option<Bytes>, BackendError> {
        let url = self.get.expand(namespace, Some(file))?;
        let what = format!("get {namespace}/{file}");
        let response = self.send_empty(Method::GET, &url, &what).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => self.read_body(response, &what).await.map(Some),
            s => Err(status_error(s, response.headers(), &what)),
        }
    }

    async fn put_bytes(
        &self,
        template: &Template,
        namespace: &Namespace,
        file: &str,
        data: Bytes,
    ) -> Result<(), BackendError> {
        let url = template.expand(namespace, Some(file))?;
        let what = format!("put {namespace}/{file}");
        let request = self.request(Method::PUT, &url);
        let body = transport::full(data);
        let response = self
            .send(request, body, self.timeouts.request, &what)
            .await?;
        expect_success(&response, &what)
    }

    /// Returns the object name a listed file stands for, if it is one.
    async fn listed_name(&self, namespace: &Namespace, file: &str) -> Option<String> {
        if !file.starts_with('#') {
            let name = percent_decode_str(file).decode_utf8().ok()?;
            return Some(name.into_owned());
        }
        if file.ends_with(names::NAME_SUFFIX) {
            return None;
        }
        let companion = names::companion(file);
        let bytes = self.read_small(namespace, &companion).await.ok()??;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

#[async_trait]
impl Backend for HttpBackend {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: self.put.is_some(),
            list: self.list.is_some(),
        }
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let (file, _) = file_name(name)?;
        let url = self.head.expand(namespace, Some(&file))?;
        let what = format!("stat {namespace}/{name:.80}");
        let response = self.send_empty(Method::HEAD, &url, &what).await?;
        expect_success(&response, &what)?;
        // Read the header itself: a HEAD response has no body, so the
        // client's own length is no guide.
        let size = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let size = size.ok_or_else(|| {
            BackendError::new(
                BackendErrorKind::Other,
                format!("{what}: no Content-Length"),
            )
        })?;
        Ok(ObjectInfo { size })
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
        let (file, _) = file_name(name)?;
        let url = self.get.expand(namespace, Some(&file))?;
        let what = format!("download {namespace}/{name:.80}");
        let mut request = self.request(Method::GET, &url);
        if let Some(r) = &range {
            request = request.header(RANGE, format!("bytes={}-{}", r.start, r.end - 1));
        }
        let response = self
            .send(request, transport::empty(), self.timeouts.request, &what)
            .await?;
        let status = response.status();
        match (status, range) {
            (StatusCode::PARTIAL_CONTENT, Some(r)) => {
                check_content_range(response.headers(), r.start, &what)?;
                Ok(slice(self.body_stream(response, what), 0, r.end - r.start))
            }
            // The server ignored the Range header: cut the slice here.
            (StatusCode::OK, Some(r)) => Ok(slice(
                self.body_stream(response, what),
                r.start,
                r.end - r.start,
            )),
            (StatusCode::OK, None) => Ok(self.body_stream(response, what)),
            // The range starts at or past the end: clamped, that is nothing.
            (StatusCode::RANGE_NOT_SATISFIABLE, Some(_)) => Ok(stream::empty().boxed()),
            (s, _) => Err(status_error(s, response.headers(), &what)),
        }
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let Some(put) = &self.put else {
            return Err(BackendError::unsupported(
                "http backend has no put template",
            ));
        };
        let (file, hashed) = file_name(name)?;
        let body = if length == 0 {
            // The client would never read the body of an empty request, so
            // check here that it really is empty.
            empty_body(body).await?
        } else {
            body
        };
        if hashed {
            let companion = names::companion(&file);
            let name = Bytes::copy_from_slice(name.as_bytes());
            self.put_bytes(put, namespace, &companion, name).await?;
        }
        let url = put.expand(namespace, Some(&file))?;
        let what = format!("upload {namespace}/{name:.80}");
        let state = Arc::new(AtomicU8::new(BODY_OK));
        let body = transport::streaming(exact_length(body, length, state.clone()));
        let request = self
            .request(Method::PUT, &url)
            .header(CONTENT_LENGTH, length);
        let sent = self.send(request, body, self.timeouts.upload, &what).await;
        match state.load(Ordering::Acquire) {
            BODY_WRONG_LENGTH => Err(BackendError::new(
                BackendErrorKind::Corrupt,
                format!("{what}: body is not the {length} bytes declared"),
            )),
            BODY_FAILED => Err(BackendError::new(
                BackendErrorKind::Other,
                format!("{what}: upload body failed"),
            )),
            _ => expect_success(&sent?, &what),
        }?;
        tracing::debug!(backend = "http", %namespace, name, length, "object stored");
        Ok(())
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        let Some(list) = &self.list else {
            return Err(BackendError::unsupported(
                "http backend has no list template",
            ));
        };
        let url = list.expand(namespace, None)?;
        let what = format!("list {namespace}");
        let response = self.send_empty(Method::GET, &url, &what).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(ListPage::default());
        }
        expect_success(&response, &what)?;
        let body = self.read_body(response, &what).await?;
        let mut names = Vec::new();
        for file in parse_autoindex(&body, &what)? {
            names.extend(self.listed_name(namespace, &file).await);
        }
        names.retain(|n| n.starts_with(prefix) && page.is_none_or(|after| n.as_str() > after));
        names.sort_unstable();
        let more = names.len() > limit.max(1);
        names.truncate(limit.max(1));
        let next = more.then(|| names.last().cloned()).flatten();
        Ok(ListPage { names, next })
    }
}

/// One entry of nginx's JSON directory listing; other fields are ignored.
#[derive(Deserialize)]
struct AutoindexEntry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Returns the file names in an nginx `autoindex_format json` listing.
fn parse_autoindex(body: &[u8], what: &str) -> Result<Vec<String>, BackendError> {
    let entries: Vec<AutoindexEntry> = serde_json::from_slice(body).map_err(|e| {
        let message = format!("{what}: the listing is not nginx autoindex JSON");
        BackendError::new(BackendErrorKind::Other, message).with_source(e)
    })?;
    let files = entries.into_iter().filter(|e| e.kind == "file");
    Ok(files.map(|e| e.name).collect())
}

fn expect_success(response: &Response, what: &str) -> Result<(), BackendError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    Err(status_error(status, response.headers(), what))
}

/// Drains a body declared empty, failing with `Corrupt` if it is not.
pub(crate) async fn empty_body(mut body: UploadBody) -> Result<UploadBody, BackendError> {
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "upload body failed").with_source(e)
        })?;
        if !chunk.is_empty() {
            let message = "upload body has bytes, but 0 were declared";
            return Err(BackendError::new(BackendErrorKind::Corrupt, message));
        }
    }
    Ok(stream::empty().boxed())
}

/// The largest body read whole: a listing or a hashed name's companion.
const MAX_SMALL_BODY: u64 = 64 * 1024 * 1024;

pub(crate) const BODY_OK: u8 = 0;
pub(crate) const BODY_WRONG_LENGTH: u8 = 1;
pub(crate) const BODY_FAILED: u8 = 2;

/// Passes `body` on while checking it holds exactly `length` bytes; on a
/// mismatch or a failure it records why in `state` and fails the stream,
/// which aborts the request so the server stores nothing.
///
/// The last chunk is held back until the body is known to end there: the
/// HTTP client stops reading once `Content-Length` bytes went out, so extra
/// bytes would otherwise go unnoticed.
pub(crate) fn exact_length(
    body: UploadBody,
    length: u64,
    state: Arc<AtomicU8>,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    stream::unfold(Some((body, 0u64)), move |cursor| {
        let state = state.clone();
        async move {
            let (mut body, seen) = cursor?;
            let fail = |code: u8, e: io::Error| {
                state.store(code, Ordering::Release);
                Some((Err(e), None))
            };
            let chunk = match body.next().await {
                None if seen == length => return None,
                None => return fail(BODY_WRONG_LENGTH, io::Error::other("body too short")),
                Some(Err(e)) => return fail(BODY_FAILED, e),
                Some(Ok(chunk)) => chunk,
            };
            let seen = seen + chunk.len() as u64;
            if seen > length {
                return fail(BODY_WRONG_LENGTH, io::Error::other("body too long"));
            }
            if seen == length {
                loop {
                    match body.next().await {
                        None => return Some((Ok(chunk), None)),
                        Some(Ok(more)) if more.is_empty() => continue,
                        Some(Ok(_)) => {
                            return fail(BODY_WRONG_LENGTH, io::Error::other("body too long"));
                        }
                        Some(Err(e)) => return fail(BODY_FAILED, e),
                    }
                }
            }
            Some((Ok(chunk), Some((body, seen))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_leave_their_segment() {
        for name in [
            "../../etc/passwd",
            "..",
            ".",
            "a/b",
            "%2F",
            "x y",
            "#1",
            "a:b@c",
        ] {
            let (file, hashed) = file_name(name).unwrap();
            assert!(!hashed);
            let url = segment(&file);
            for decoded in [
                file.as_str(),
                &percent_decode_str(&url).decode_utf8().unwrap(),
            ] {
                assert!(!decoded.contains('/'), "{name} -> {decoded}");
                assert!(decoded != "." && decoded != "..", "{name}");
                assert!(!decoded.starts_with('#'), "only hashed names start with #");
            }
            assert_eq!(percent_decode_str(&file).decode_utf8().unwrap(), name);
        }
        assert_eq!(
            file_name("library/ubuntu:latest").unwrap().0,
            "library%2Fubuntu:latest"
        );
        assert_eq!(
            segment("library%2Fubuntu:latest"),
            "library%252Fubuntu:latest"
        );
        let (long, hashed) = file_name(&"/".repeat(100)).unwrap();
        assert!(hashed && long.starts_with('#') && long.len() == 65);
    }

    #[test]
    fn namespaces_become_one_segment() {
        let ns = Namespace::new("library/ubuntu").unwrap();
        let template = Template::new("get", "http://h:1/b/{namespace}/{name}", true).unwrap();
        let url = template.expand(&ns, Some("sha256:ab")).unwrap();
        assert_eq!(url.as_str(), "http://h:1/b/library%252Fubuntu/sha256:ab");
    }

    #[test]
    fn options_validate() {
        let mut options = HttpBackendOptions::nginx("http://127.0.0.1:1/root/");
        options.validate().unwrap();
        options.list = Some("http://127.0.0.1:1/{namespace}/{name}".into());
        assert!(options.validate().is_err());
        HttpBackendOptions::nginx("https://127.0.0.1:1")
            .validate()
            .unwrap();
        let mut options = HttpBackendOptions::nginx("ftp://127.0.0.1:1");
        assert!(options.validate().is_err());
        options = HttpBackendOptions::nginx("http://127.0.0.1:1");
        options.timeouts.connect = Duration::ZERO;
        assert!(options.validate().is_err());
        let toml_like = serde_json::json!({
            "get": "http://h/{namespace}/{name}",
            "timeouts": {"connect": "2s"},
            "auth": {"bearer": {"token": "s3cr3t"}},
        });
        let options: HttpBackendOptions = serde_json::from_value(toml_like).unwrap();
        assert_eq!(options.timeouts.connect, Duration::from_secs(2));
        assert!(!format!("{options:?}").contains("s3cr3t"));
        let unknown = serde_json::json!({"get": "http://h/{namespace}/{name}", "gett": "x"});
        assert!(serde_json::from_value::<HttpBackendOptions>(unknown).is_err());
    }
}
