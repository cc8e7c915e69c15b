//! [`BuildIndexClient`]: how the proxy, agents and remote build-indexes
//! talk to a build-index over HTTP.
//!
//! A failed request comes back as the [`Error`] the server answered: the
//! OCI JSON body is read back into the same code, message, detail and
//! status, and `Retry-After` is kept, so a caller can pass it on to its
//! own client unchanged. A build-index that cannot be reached is
//! `UNAVAILABLE`. Given several addresses, a request goes to the first
//! and moves on to the next only when one cannot be reached.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kraken_core::Digest;
use kraken_p2p::http_tls;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{BuildIndexClientConfig, Catalog, ManifestRecord, OriginMembers, Page, TagList};
use crate::error::{Error, ErrorCode, Result};
use crate::http::segment;
use crate::manifest::Descriptor;
use crate::reference::{RepoName, Tag};

/// Longest error message kept from an answer that is not the JSON body.
const MAX_MESSAGE: usize = 512;

/// A client of one build-index. Cheap to clone.
#[derive(Clone)]
pub struct BuildIndexClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    addrs: Vec<String>,
    config: BuildIndexClientConfig,
}

impl fmt::Debug for BuildIndexClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildIndexClient")
            .field("addrs", &self.inner.addrs)
            .finish_non_exhaustive()
    }
}

impl BuildIndexClient {
    /// Creates a client of the build-index at `addrs` (`host:port` each),
    /// tried in order.
    ///
    /// # Errors
    ///
    /// `UNKNOWN` when no address is given, the config does not validate
    /// or the HTTP client cannot be built.
    pub fn new<I, S>(addrs: I, config: BuildIndexClientConfig) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        config
            .validate()
            .map_err(|m| Error::new(ErrorCode::Unknown, m))?;
        let addrs: Vec<String> = addrs.into_iter().map(Into::into).collect();
        if addrs.is_empty() {
            return Err(Error::new(
                ErrorCode::Unknown,
                "no build-index address given",
            ));
        }
        let http = http_tls::client_builder(config.tls.as_ref())
            .map_err(|e| Error::new(ErrorCode::Unknown, format!("build-index client tls: {e}")))?
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| {
                Error::new(ErrorCode::Unknown, format!("building the http client: {e}"))
            })?;
        Ok(BuildIndexClient {
            inner: Arc::new(Inner {
                http,
                addrs,
                config,
            }),
        })
    }

    /// The addresses this client talks to, in the order it tries them.
    pub fn addrs(&self) -> &[String] {
        &self.inner.addrs
    }

    /// Records the manifest `digest` (already uploaded to the origins) in
    /// `repo` and points each of `tags` at it. `media_type` is the
    /// `Content-Type` the manifest was pushed with, used only when its
    /// bytes name none.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when the origins lack the manifest,
    /// `MANIFEST_INVALID`, `MANIFEST_BLOB_UNKNOWN` naming every missing
    /// digest; `UNAVAILABLE` when build-index or the origins are down.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tags: &[Tag],
        media_type: Option<&str>,
    ) -> Result<ManifestRecord> {
        let mut query: Vec<(&str, &str)> = tags.iter().map(|t| ("tag", t.as_str())).collect();
        query.extend(media_type.map(|t| ("media_type", t)));
        let path = format!(
            "{}/manifests/{digest}{}",
            repo_path(repo),
            query_string(&query)
        );
        let timeout = self.inner.config.put_timeout;
        let body = self.send(Method::PUT, &path, timeout).await?;
        decode(&body)
    }

    /// The digest `tag` points at. With `upstream` (the `ns` of a
    /// containerd mirror request), a tag the cluster lacks is looked up
    /// in that upstream's pull-through namespace.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` for an unknown tag.
    pub async fn get_tag(
        &self,
        repo: &RepoName,
        tag: &Tag,
        upstream: Option<&str>,
    ) -> Result<Digest> {
        let query: Vec<(&str, &str)> = upstream.map(|u| ("upstream", u)).into_iter().collect();
        let path = format!(
            "{}/tags/{}{}",
            repo_path(repo),
            segment(tag.as_str()),
            query_string(&query)
        );
        let body = self.get(&path).await?;
        let text = String::from_utf8_lossy(&body);
        text.trim().parse().map_err(|e| {
            Error::new(
                ErrorCode::Unavailable,
                format!("build-index sent a tag that is not a digest: {e}"),
            )
        })
    }

    /// Deletes `tag`.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` for an unknown tag.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        let path = format!("{}/tags/{}", repo_path(repo), segment(tag.as_str()));
        self.delete(&path).await
    }

    /// The record of the manifest `digest` in `repo`.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when `repo` has no such manifest.
    pub async fn get_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<ManifestRecord> {
        let path = format!("{}/manifests/{digest}", repo_path(repo));
        decode(&self.get(&path).await?)
    }

    /// Deletes the manifest `digest` from `repo`, with every tag of `repo`
    /// that points at it.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when `repo` has no such manifest.
    pub async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        let path = format!("{}/manifests/{digest}", repo_path(repo));
        self.delete(&path).await
    }

    /// The tags of `repo` in byte order, from `page`.
    ///
    /// # Errors
    ///
    /// `NAME_UNKNOWN` for a repository build-index does not know.
    pub async fn list_tags(&self, repo: &RepoName, page: &Page) -> Result<TagList> {
        let path = format!("{}/tags{}", repo_path(repo), page_query(page));
        decode(&self.get(&path).await?)
    }

    /// Descriptors of the manifests in `repo` whose subject is `digest`,
    /// of `artifact_type` when given; empty for an unknown subject.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when build-index cannot be reached.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let query: Vec<(&str, &str)> = artifact_type
            .map(|t| ("artifactType", t))
            .into_iter()
            .collect();
        let path = format!(
            "{}/referrers/{digest}{}",
            repo_path(repo),
            query_string(&query)
        );
        decode(&self.get(&path).await?)
    }

    /// The repositories build-index knows, sorted, from `page`.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when build-index cannot be reached.
    pub async fn catalog(&self, page: &Page) -> Result<Catalog> {
        decode(
            &self
                .get(&format!("/repositories{}", page_query(page)))
                .await?,
        )
    }

    /// The HTTP addresses of the origins of the build-index's cluster.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when build-index cannot be reached.
    pub async fn origin_members(&self) -> Result<Vec<String>> {
        let members: OriginMembers = decode(&self.get("/origin").await?)?;
        Ok(members.members)
    }

    /// Succeeds when build-index says it is ready.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when it is not, or cannot be reached.
    pub async fn readiness(&self) -> Result<()> {
        self.get("/readiness").await.map(drop)
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let timeout = self.inner.config.request_timeout;
        self.send(Method::GET, path, timeout).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let timeout = self.inner.config.request_timeout;
        self.send(Method::DELETE, path, timeout).await.map(drop)
    }

    /// Sends a request to the first address that can be reached; the
    /// body of a success, or the error answered.
    async fn send(&self, method: Method, path: &str, timeout: Duration) -> Result<Bytes> {
        let mut last = None;
        for addr in &self.inner.addrs {
            match self.send_to(addr, method.clone(), path, timeout).await {
                Ok(answered) => return answered,
                Err(unreachable) => {
                    tracing::debug!(
                        build_index = %addr,
                        error = %unreachable,
                        "build-index unreachable"
                    );
                    last = Some(unreachable);
                }
            }
        }
        Err(last.expect("a client has at least one address"))
    }

    /// Sends one request to `addr`: the outer error when it cannot be
    /// reached, the inner result when it answered.
    async fn send_to(
        &self,
        addr: &str,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<Result<Bytes>> {
        let scheme = http_tls::scheme(self.inner.config.tls.as_ref());
        let url = format!("{scheme}://{addr}{path}");
        let answer = async {
            let mut request = self.inner.http.request(method, &url).timeout(timeout);
            if let Some(token) = &self.inner.config.token {
                request = request.bearer_auth(token.expose());
            }
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
        };
        let (status, headers, body) = answer.await.map_err(|e| unreachable(addr, &e))?;
        if status.is_success() {
            Ok(Ok(body))
        } else {
            Ok(Err(answered_error(addr, status, &headers, &body)))
        }
    }
}

fn unreachable(addr: &str, e: &reqwest::Error) -> Error {
    let cause = std::error::Error::source(e).map_or_else(String::new, |s| format!(": {s}"));
    let message = format!("build-index {addr} cannot be reached: {e}{cause}");
    Error::new(ErrorCode::Unavailable, message).with_retry_after(1)
}

/// `/repositories/<repo>`, the repository as one segment.
fn repo_path(repo: &RepoName) -> String {
    format!("/repositories/{}", segment(repo.as_str()))
}

/// `?k=v&...`, each part percent-encoded; empty for no pairs.
fn query_string(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", segment(k), segment(v)))
        .collect();
    format!("?{}", parts.join("&"))
}

fn page_query(page: &Page) -> String {
    let n = page.n.map(|n| n.to_string());
    let mut pairs = Vec::new();
    pairs.extend(n.as_deref().map(|n| ("n", n)));
    pairs.extend(page.last.as_deref().map(|l| ("last", l)));
    query_string(&pairs)
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Error::new(
            ErrorCode::Unavailable,
            format!("build-index sent an unreadable answer: {e}"),
        )
    })
}

/// The OCI error body, as answered.
#[derive(Deserialize)]
struct Body {
    errors: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Reads a failed answer back into the error the server had.
fn answered_error(addr: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Error {
    let entry = serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.errors.into_iter().next());
    let mut error = match entry {
        Some(entry) => {
            let code = ErrorCode::parse(&entry.code).unwrap_or(ErrorCode::Unknown);
            let error = Error::new(code, entry.message);
            match entry.detail {
                Some(detail) => error.with_detail(detail),
                None => error,
            }
        }
        None => {
            let text: String = String::from_utf8_lossy(body)
                .chars()
                .take(MAX_MESSAGE)
                .collect();
            let code = match status {
                StatusCode::TOO_MANY_REQUESTS => ErrorCode::TooManyRequests,
                s if s.is_server_error() => ErrorCode::Unavailable,
                _ => ErrorCode::Unknown,
            };
            Error::new(
                code,
                format!("build-index {addr} answered {status}: {text}"),
            )
        }
    };
    if error.status() != status {
        error = error.with_status(status);
    }
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match retry_after {
        Some(after) => error.with_retry_after(after),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[tokio::test]
    async fn an_answered_error_reads_back_into_the_same_error() {
        let sent = Error::new(ErrorCode::ManifestBlobUnknown, "missing things")
            .with_detail(serde_json::json!({"missing": ["a"]}))
            .with_retry_after(3);
        let response = sent.clone().into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let read = answered_error("bi:1", status, &headers, &body);
        assert_eq!(read, sent);
    }

    #[test]
    fn odd_answers_are_kept() {
        let error = answered_error("bi:1", StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"nginx");
        assert_eq!(error.code(), ErrorCode::Unavailable);
        assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
        assert!(error.message().contains("nginx"));
    }

    #[test]
    fn queries_are_escaped() {
        assert_eq!(query_string(&[]), "");
        assert_eq!(
            query_string(&[("tag", "v1"), ("media_type", "a/b+json")]),
            "?tag=v1&media_type=a%2Fb%2Bjson"
        );
        let page = Page {
            n: Some(2),
            last: Some("v1".into()),
        };
        assert_eq!(page_query(&page), "?n=2&last=v1");
    }
}
