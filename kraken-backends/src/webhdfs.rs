//! A backend on HDFS through its WebHDFS REST API (feature `webhdfs`), for
//! clusters whose blobs already live in Hadoop.
//!
//! Objects live under
//!
//! ```text
//! <root>/<escaped namespace>/<escaped name>
//! <root>/@uploads/<random>            uploads in flight
//! ```
//!
//! escaped as every backend here escapes names (see `crate::names`), and
//! with `:` escaped too, which HDFS refuses in file names. A name too long
//! for one file name is stored as `#<sha256>` with a `#<sha256>.name`
//! companion holding it, as in the object stores. Namespaces hold no `@`,
//! so `@uploads` never meets one.
//!
//! Reads and writes follow the namenode's redirect to a datanode. An upload
//! is written to `@uploads`, then renamed over its target with the
//! `OVERWRITE` rename option, which the namenode applies atomically, so a
//! reader sees the old object or the new one; a body of the wrong length
//! is never renamed into place. Authentication is Hadoop's simple
//! `user.name`; the request carries no other credentials.
//!
//! # Limitations
//!
//! - Tested only against an in-test fake of the WebHDFS REST API: no HDFS
//!   or WebHDFS server installs from the package registries this project
//!   uses.
//! - No Kerberos (SPNEGO) or delegation tokens.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http::header::{CONTENT_LENGTH, LOCATION};
use http::{Method, StatusCode};
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage, Namespace,
    ObjectInfo, UploadBody,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::{BODY_FAILED, BODY_WRONG_LENGTH, HttpTimeouts, empty_body, exact_length};
use crate::status::status_error;
use crate::transport::{self, RequestBody, Response, TlsOptions, Transport};
use crate::{Error, layout, names};

/// Redirects followed per request: one, to a datanode, in practice.
const MAX_REDIRECTS: usize = 3;

/// The largest answer read whole: a listing or a companion name.
const MAX_SMALL_BODY: u64 = 64 * 1024 * 1024;

/// The directory of uploads in flight, under the root.
const UPLOADS: &str = "@uploads";

/// Options of the WebHDFS backend, as they appear in config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebHdfsBackendOptions {
    /// The namenode's HTTP address, such as `http://namenode:9870`.
    pub url: String,
    /// The absolute HDFS directory that holds every object.
    #[serde(default = "default_root")]
    pub root: String,
    /// The `user.name` of Hadoop's simple authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// How long each step may take.
    #[serde(default)]
    pub timeouts: HttpTimeouts,
    /// Which servers to trust on `https://`.
    #[serde(default)]
    pub tls: TlsOptions,
}

fn default_root() -> String {
    "/kraken".to_owned()
}

impl WebHdfsBackendOptions {
    /// Creates options for the namenode at `url`, objects under `/kraken`.
    pub fn new(url: impl Into<String>) -> Self {
        WebHdfsBackendOptions {
            url: url.into(),
            root: default_root(),
            user: None,
            timeouts: HttpTimeouts::default(),
            tls: TlsOptions::default(),
        }
    }

    /// Checks the URL, root, timeouts and TLS options.
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
        match Url::parse(&self.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => return bad("url", "must be an http:// or https:// URL with a host"),
        }
        let segments: Vec<&str> = self.root.split('/').skip(1).collect();
        let bad_segment = |s: &&str| s.is_empty() || *s == "." || *s == ".." || s.contains(':');
        if !self.root.starts_with('/') || self.root == "/" || segments.iter().any(bad_segment) {
            return bad("root", "must be an absolute HDFS directory such as /kraken");
        }
        self.timeouts.validate()?;
        self.tls.validate()
    }
}

/// A [`Backend`] on HDFS through WebHDFS; see the module docs.
#[derive(Debug, Clone)]
pub struct WebHdfsBackend {
    transport: Transport,
    base: Url,
    root: Vec<String>,
    user: Option<String>,
    timeouts: HttpTimeouts,
}

/// An object's file in HDFS: the directory segments and the file name.
struct File {
    dir: Vec<String>,
    name: String,
}

impl File {
    fn display(&self) -> String {
        format!("/{}/{}", self.dir.join("/"), self.name)
    }
}

impl WebHdfsBackend {
    /// Builds the backend; no request is made until the first operation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the options do not validate or the
    /// TLS settings cannot be used.
    pub fn new(options: WebHdfsBackendOptions) -> Result<Self, Error> {
        options.validate()?;
        let t = options.timeouts;
        let transport = Transport::new(t.connect, t.read_idle, &options.tls)?;
        let base = Url::parse(&options.url).expect("validated");
        tracing::info!(backend = "webhdfs", url = %base, root = %options.root, "backend configured");
        Ok(WebHdfsBackend {
            transport,
            base,
            root: options.root.split('/').skip(1).map(str::to_owned).collect(),
            user: options.user,
            timeouts: t,
        })
    }

    fn namespace_dir(&self, namespace: &Namespace) -> Vec<String> {
        let mut dir = self.root.clone();
        dir.push(hdfs_name(&names::escape(namespace.as_str())));
        dir
    }

    /// Returns the file of an object and whether it is the hashed form.
    fn file(&self, namespace: &Namespace, name: &str) -> Result<(File, bool), BackendError> {
        let stored = names::stored_name(name)?;
        let hashed = stored.starts_with('#');
        let file = File {
            dir: self.namespace_dir(namespace),
            name: hdfs_name(&stored),
        };
        Ok((file, hashed))
    }

    /// Returns the WebHDFS URL of `op` on the path `segments`.
    fn url(&self, segments: &[String], op: &str, params: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("http URLs have a path")
            .pop_if_empty()
            .extend(["webhdfs", "v1"])
            .extend(segments);
        let mut query = url.query_pairs_mut();
        query.append_pair("op", op);
        if let Some(user) = &self.user {
            query.append_pair("user.name", user);
        }
        for (key, value) in params {
            query.append_pair(key, value);
        }
        drop(query);
        url
    }

    fn file_url(&self, file: &File, op: &str, params: &[(&str, &str)]) -> Url {
        let mut segments = file.dir.clone();
        segments.push(file.name.clone());
        self.url(&segments, op, params)
    }

    /// Sends one request, without following redirects.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: RequestBody,
        length: Option<u64>,
        what: &str,
    ) -> Result<Response, BackendError> {
        let mut request = http::Request::builder().method(method).uri(url.as_str());
        if let Some(length) = length {
            request = request.header(CONTENT_LENGTH, length);
        }
        let request = request.body(body).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, format!("{what}: bad request"))
                .with_source(e)
        })?;
        let limit = if length.is_some_and(|l| l > 0) {
            self.timeouts.upload
        } else {
            self.timeouts.request
        };
        match tokio::time::timeout(limit, self.transport.send(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(e.into_backend(what)),
            Err(_) => Err(BackendError::unavailable(format!(
                "{what}: no response within {limit:?}"
            ))),
        }
    }

    /// Sends a bodiless request, following redirects to datanodes.
    async fn follow(&self, method: Method, url: Url, what: &str) -> Result<Response, BackendError> {
        let mut url = url;
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .send(method.clone(), &url, transport::empty(), None, what)
                .await?;
            match redirect(&response, &url) {
                Some(next) => url = next,
                None => return Ok(response),
            }
        }
        let message = format!("{what}: more than {MAX_REDIRECTS} redirects");
        Err(BackendError::new(BackendErrorKind::Other, message))
    }

    async fn read_small(&self, response: Response, what: &str) -> Result<Bytes, BackendError> {
        let read = self.transport.read_body(response, MAX_SMALL_BODY).await;
        read.map_err(|e| e.into_backend(what))
    }

    /// Sends `op` and expects a success, returning the answer's body.
    async fn call(&self, method: Method, url: Url, what: &str) -> Result<Bytes, BackendError> {
        let response = self.follow(method, url, what).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(status, response.headers(), what));
        }
        self.read_small(response, what).await
    }

    /// Returns a file's length, or `None` when there is no such file.
    async fn length_of(&self, file: &File) -> Result<Option<u64>, BackendError> {
        let what = format!("webhdfs stat {}", file.display());
        let url = self.file_url(file, "GETFILESTATUS", &[]);
        let response = self.follow(Method::GET, url, &what).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(status_error(response.status(), response.headers(), &what));
        }
        let body = self.read_small(response, &what).await?;
        let status: FileStatusAnswer = parse(&body, &what)?;
        let file_status = status.file_status;
        Ok((file_status.kind == "FILE").then_some(file_status.length))
    }

    /// Writes `body` to `file`, replacing it: `CREATE` at the namenode,
    /// then the bytes to the datanode it names.
    async fn create(
        &self,
        file: &File,
        length: u64,
        body: RequestBody,
    ) -> Result<(), BackendError> {
        let what = format!("webhdfs create {}", file.display());
        let url = self.file_url(file, "CREATE", &[("overwrite", "true")]);
        let asked = self
            .send(Method::PUT, &url, transport::empty(), Some(0), &what)
            .await?;
        let target = match redirect(&asked, &url) {
            Some(target) => target,
            None => return Err(unexpected(&asked, &what)),
        };
        let written = self
            .send(Method::PUT, &target, body, Some(length), &what)
            .await?;
        if written.status().is_success() {
            return Ok(());
        }
        Err(status_error(written.status(), written.headers(), &what))
    }

    async fn mkdirs(&self, dir: &[String]) -> Result<(), BackendError> {
        let what = format!("webhdfs mkdirs /{}", dir.join("/"));
        let url = self.url(dir, "MKDIRS", &[]);
        let body = self.call(Method::PUT, url, &what).await?;
        let made: BooleanAnswer = parse(&body, &what)?;
        if made.boolean {
            return Ok(());
        }
        Err(BackendError::unavailable(format!("{what}: refused")))
    }

    /// Renames `from` over `to`, atomically replacing it.
    async fn rename_over(&self, from: &File, to: &File) -> Result<(), BackendError> {
        let what = format!("webhdfs rename {} to {}", from.display(), to.display());
        let destination = to.display();
        let params = [
            ("destination", destination.as_str()),
            ("renameoptions", "OVERWRITE"),
        ];
        let url = self.file_url(from, "RENAME", &params);
        self.call(Method::PUT, url, &what).await.map(drop)
    }

    async fn delete(&self, file: &File) {
        let what = format!("webhdfs delete {}", file.display());
        let url = self.file_url(file, "DELETE", &[]);
        if let Err(e) = self.call(Method::DELETE, url, &what).await {
            tracing::debug!(backend = "webhdfs", error = %e, "delete of an upload failed");
        }
    }

    /// Uploads `body` to a fresh file in `@uploads`, then renames it over
    /// `target`; a failed or wrong-length body is deleted, never renamed.
    async fn upload_file(
        &self,
        target: &File,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let mut uploads = self.root.clone();
        uploads.push(UPLOADS.to_owned());
        let tmp = File {
            dir: uploads,
            name: format!("{:032x}", rand::random::<u128>()),
        };
        let state = Arc::new(AtomicU8::new(0));
        let checked = transport::streaming(exact_length(body, length, state.clone()));
        let created = self.create(&tmp, length, checked).await;
        let result = match state.load(Ordering::Acquire) {
            BODY_WRONG_LENGTH => Err(BackendError::new(
                BackendErrorKind::Corrupt,
                format!("webhdfs upload: body is not the {length} bytes declared"),
            )),
            BODY_FAILED => Err(BackendError::new(
                BackendErrorKind::Other,
                "webhdfs upload: upload body failed",
            )),
            _ => created,
        };
        let placed = match result {
            Ok(()) => match self.mkdirs(&target.dir).await {
                Ok(()) => self.rename_over(&tmp, target).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if placed.is_err() {
            self.delete(&tmp).await;
        }
        placed
    }

    /// Returns the object name a listed file stands for, if it is one.
    async fn listed_name(&self, namespace: &Namespace, file: &str) -> Option<String> {
        if !file.starts_with('#') {
            return names::unescape(file);
        }
        if file.ends_with(names::NAME_SUFFIX) {
            return None;
        }
        let companion = File {
            dir: self.namespace_dir(namespace),
            name: names::companion(file),
        };
        let what = format!("webhdfs read {}", companion.display());
        let url = self.file_url(&companion, "OPEN", &[]);
        let bytes = self.call(Method::GET, url, &what).await.ok()?;
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Escapes what HDFS refuses in a file name beyond what `names` escapes.
fn hdfs_name(escaped: &str) -> String {
    escaped.replace(':', "%3A")
}

/// Returns where a redirect points, or `None` for any other answer.
fn redirect(response: &Response, from: &Url) -> Option<Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    from.join(location).ok()
}

fn unexpected(response: &Response, what: &str) -> BackendError {
    if response.status().is_success() {
        let message = format!("{what}: the namenode did not redirect to a datanode");
        return BackendError::new(BackendErrorKind::Other, message);
    }
    status_error(response.status(), response.headers(), what)
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, BackendError> {
    serde_json::from_slice(body).map_err(|e| {
        let message = format!("{what}: unexpected answer");
        BackendError::new(BackendErrorKind::Other, message).with_source(e)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileStatusAnswer {
    file_status: FileStatus,
}

#[derive(Deserialize)]
struct FileStatus {
    #[serde(default, rename = "pathSuffix")]
    path_suffix: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    length: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListAnswer {
    file_statuses: FileStatuses,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileStatuses {
    file_status: Vec<FileStatus>,
}

#[derive(Deserialize)]
struct BooleanAnswer {
    boolean: bool,
}

#[async_trait]
impl Backend for WebHdfsBackend {
    fn kind(&self) -> &'static str {
        "webhdfs"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: true,
            list: true,
        }
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let (file, _) = self.file(namespace, name)?;
        match self.length_of(&file).await? {
            Some(size) => Ok(ObjectInfo { size }),
            None => Err(BackendError::not_found(format!(
                "webhdfs: no file {}",
                file.display()
            ))),
        }
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let (file, _) = self.file(namespace, name)?;
        let what = format!("webhdfs read {}", file.display());
        let url = match range {
            None => self.file_url(&file, "OPEN", &[]),
            Some(r) => {
                // WebHDFS refuses offsets past the end; the contract clamps.
                let size = self.stat(namespace, name).await?.size;
                let (start, end) = (r.start.min(size), r.end.min(size));
                if start >= end {
                    return Ok(stream::empty().boxed());
                }
                let (offset, length) = (start.to_string(), (end - start).to_string());
                let params = [("offset", offset.as_str()), ("length", length.as_str())];
                self.file_url(&file, "OPEN", &params)
            }
        };
        let response = self.follow(Method::GET, url, &what).await?;
        if !response.status().is_success() {
            return Err(status_error(response.status(), response.headers(), &what));
        }
        let body = self.transport.body_stream(response);
        Ok(transport::backend_stream(body, what))
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let (target, hashed) = self.file(namespace, name)?;
        let body = if length == 0 {
            empty_body(body).await?
        } else {
            body
        };
        if hashed {
            let companion = File {
                dir: target.dir.clone(),
                name: names::companion(&target.name),
            };
            let full = Bytes::copy_from_slice(name.as_bytes());
            let chunks = stream::iter([Ok::<_, io::Error>(full)]).boxed();
            self.upload_file(&companion, name.len() as u64, chunks)
                .await?;
        }
        self.upload_file(&target, length, body).await?;
        tracing::debug!(backend = "webhdfs", %namespace, name, length, "object stored");
        Ok(())
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        let dir = self.namespace_dir(namespace);
        let what = format!("webhdfs list /{}", dir.join("/"));
        let url = self.url(&dir, "LISTSTATUS", &[]);
        let response = self.follow(Method::GET, url, &what).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(ListPage::default());
        }
        if !response.status().is_success() {
            return Err(status_error(response.status(), response.headers(), &what));
        }
        let body = self.read_small(response, &what).await?;
        let listed: ListAnswer = parse(&body, &what)?;
        let mut names = Vec::new();
        for status in listed.file_statuses.file_status {
            if status.kind == "FILE" {
                names.extend(self.listed_name(namespace, &status.path_suffix).await);
            }
        }
        Ok(layout::page(names, prefix, page, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate() {
        WebHdfsBackendOptions::new("http://nn:9870")
            .validate()
            .unwrap();
        for (url, root) in [
            ("nn:9870", "/kraken"),
            ("ftp://nn", "/kraken"),
            ("http://nn", "kraken"),
            ("http://nn", "/"),
            ("http://nn", "/a//b"),
            ("http://nn", "/a/../b"),
            ("http://nn", "/a:b"),
        ] {
            let mut options = WebHdfsBackendOptions::new(url);
            options.root = root.into();
            assert!(options.validate().is_err(), "{url} {root}");
        }
    }

    #[test]
    fn urls_escape_names_into_one_hdfs_file() {
        let mut options = WebHdfsBackendOptions::new("http://nn:9870/");
        options.root = "/data/kraken".into();
        options.user = Some("kraken".into());
        let backend = WebHdfsBackend::new(options).unwrap();
        let ns = Namespace::new("library/ubuntu").unwrap();
        let (file, hashed) = backend.file(&ns, "sha256:ab/..").unwrap();
        assert!(!hashed);
        assert_eq!(
            file.display(),
            "/data/kraken/library%2Fubuntu/sha256%3Aab%2F.."
        );
        let url = backend.file_url(&file, "OPEN", &[("offset", "5")]);
        assert_eq!(
            url.as_str(),
            "http://nn:9870/webhdfs/v1/data/kraken/library%252Fubuntu/sha256%253Aab%252F..\
             ?op=OPEN&user.name=kraken&offset=5"
        );
        let long = "x".repeat(300);
        assert!(backend.file(&ns, &long).unwrap().1);
    }

    #[test]
    fn answers_parse() {
        let status: FileStatusAnswer = parse(
            br#"{"FileStatus":{"length":24930,"pathSuffix":"","type":"FILE","owner":"x"}}"#,
            "w",
        )
        .unwrap();
        assert_eq!(
            (status.file_status.length, status.file_status.kind.as_str()),
            (24930, "FILE")
        );
        let listed: ListAnswer = parse(
            br#"{"FileStatuses":{"FileStatus":[{"pathSuffix":"a","type":"FILE","length":1},
                {"pathSuffix":"d","type":"DIRECTORY","length":0}]}}"#,
            "w",
        )
        .unwrap();
        assert_eq!(listed.file_statuses.file_status.len(), 2);
        let made: BooleanAnswer = parse(br#"{"boolean": true}"#, "w").unwrap();
        assert!(made.boolean);
        assert!(parse::<BooleanAnswer>(b"<html>", "w").is_err());
    }
}
