//! The OCI distribution API, read/write on the proxy and read-only on
//! agents.
//!
//! One router serves both. What differs is where content comes from, so a
//! [`Registry`] is built over two seams: a [`BlobSource`] for blobs and
//! manifest bytes (the origin cluster on the proxy, the swarm on an agent)
//! and a [`TagIndex`] for tags, repository membership, listings and
//! referrers (build-index). Writes (uploads, manifest pushes, deletes) need
//! a [`Writer`]; a registry without one answers them
//! with 405 `UNSUPPORTED` and a message naming where to push.
//!
//! Content the cluster has is served whatever `?ns=` a containerd mirror
//! adds; `ns` only names the upstream a miss is pulled through from (see
//! [`upstream_namespace`]).

mod blobs;
mod index;
mod lists;
mod manifests;
mod route;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kraken_core::{BlobStream, ByteRange, Digest, Namespace};
use kraken_p2p::metrics::RouteName;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};
use crate::manifest::Descriptor;
use crate::proxy::Writer;
use crate::reference::{RepoName, Tag};
use route::Route;

/// Where a registry reads blobs and manifest bytes.
#[async_trait]
pub trait BlobSource: Send + Sync + fmt::Debug {
    /// The size of a blob.
    ///
    /// # Errors
    ///
    /// `NotFound` when nobody has it; `Unavailable` and the like when that
    /// cannot be told now.
    async fn size(&self, namespace: &Namespace, digest: &Digest) -> kraken_core::Result<u64>;

    /// Streams `range` of a blob.
    ///
    /// # Errors
    ///
    /// As [`BlobSource::size`]; `RangeNotSatisfiable` for a range past the
    /// end.
    async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> kraken_core::Result<BlobStream>;

    /// Reads a whole small blob (a manifest), verified against `digest`.
    ///
    /// # Errors
    ///
    /// As [`BlobSource::size`].
    async fn read(&self, namespace: &Namespace, digest: &Digest) -> kraken_core::Result<Bytes>;

    /// Succeeds when the source can serve, for `/readiness`.
    ///
    /// # Errors
    ///
    /// What keeps it from serving.
    async fn ready(&self) -> kraken_core::Result<()> {
        Ok(())
    }
}

/// Where a registry keeps tags and which manifests each repository holds:
/// build-index.
#[async_trait]
pub trait TagIndex: Send + Sync + fmt::Debug {
    /// The digest `repo:tag` points at; `upstream` is the registry a
    /// containerd mirror request names, asked only when the cluster lacks
    /// the tag.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when nobody has the tag.
    async fn resolve(&self, repo: &RepoName, tag: &Tag, upstream: Option<&str>) -> Result<Digest>;

    /// Whether the manifest `digest` was pushed to `repo`.
    ///
    /// # Errors
    ///
    /// When build-index cannot be reached.
    async fn has_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;

    /// Records a manifest already uploaded to the origins as part of `repo`,
    /// and points `tags` at it, once its whole tree exists. `pushed_as` is
    /// the `Content-Type` it was pushed with.
    ///
    /// # Errors
    ///
    /// `MANIFEST_BLOB_UNKNOWN` naming what is missing; `MANIFEST_INVALID`.
    async fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        tags: &[Tag],
        pushed_as: Option<&str>,
    ) -> Result<()>;

    /// Removes a tag.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when there is no such tag.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<()>;

    /// Removes a manifest from `repo`, with every tag pointing at it.
    ///
    /// # Errors
    ///
    /// `MANIFEST_UNKNOWN` when `repo` does not hold it.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()>;

    /// The tags of `repo`, sorted.
    ///
    /// # Errors
    ///
    /// `NAME_UNKNOWN` for a repository nobody pushed to.
    async fn tags(&self, repo: &RepoName) -> Result<Vec<Tag>>;

    /// The manifests of `repo` whose subject is `digest`, optionally only
    /// those of `artifact_type`.
    ///
    /// # Errors
    ///
    /// When build-index cannot be reached.
    async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>>;

    /// Every repository, sorted.
    ///
    /// # Errors
    ///
    /// When build-index cannot be reached.
    async fn catalog(&self) -> Result<Vec<RepoName>>;

    /// Succeeds when the index answers, for `/readiness`.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when it does not.
    async fn ready(&self) -> Result<()>;
}

/// Limits of a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The largest manifest accepted; larger pushes get 413. The spec asks
    /// for at least 4 MB; build-index's `max_manifest_size` must not be
    /// smaller.
    pub max_manifest_size: bytesize::ByteSize,
    /// Most entries a tag list or catalog page holds when the client names
    /// no `n`.
    pub default_page_size: usize,
    /// Where pushes go, for the message of a push to a read-only registry
    /// (an agent).
    pub push_to: Option<String>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            max_manifest_size: bytesize::ByteSize::mib(4),
            default_page_size: 10_000,
            push_to: None,
        }
    }
}

/// A registry's sources and settings; [`router`] serves it.
#[derive(Debug, Clone)]
pub struct Registry {
    blobs: Arc<dyn BlobSource>,
    index: Arc<dyn TagIndex>,
    writer: Option<Writer>,
    config: RegistryConfig,
}

impl Registry {
    /// A read-only registry (an agent's).
    pub fn read_only(
        blobs: Arc<dyn BlobSource>,
        index: Arc<dyn TagIndex>,
        config: RegistryConfig,
    ) -> Registry {
        Registry {
            blobs,
            index,
            writer: None,
            config,
        }
    }

    /// A read/write registry (the proxy's).
    pub fn read_write(
        blobs: Arc<dyn BlobSource>,
        index: Arc<dyn TagIndex>,
        writer: Writer,
        config: RegistryConfig,
    ) -> Registry {
        Registry {
            blobs,
            index,
            writer: Some(writer),
            config,
        }
    }

    fn writer(&self) -> Result<&Writer> {
        self.writer.as_ref().ok_or_else(|| {
            let hint = match &self.config.push_to {
                Some(addr) => format!("; push to the proxy at {addr}"),
                None => "; push to the cluster's proxy".to_owned(),
            };
            Error::new(
                ErrorCode::Unsupported,
                format!("this registry is read-only (a kraken agent){hint}"),
            )
        })
    }
}

/// The distribution API of `registry`, under `/v2/`, with `GET /health`
/// (the process serves) and `GET /readiness` (its blob source and
/// build-index answer; 503 otherwise).
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/health", axum::routing::get(|| async { "ok\n" }))
        .route("/readiness", axum::routing::get(readiness))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn(crate::http::registry_layer))
        .with_state(registry)
}

/// The query parameters of the distribution API, all optional.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub(crate) digest: Option<String>,
    pub(crate) mount: Option<String>,
    pub(crate) from: Option<String>,
    pub(crate) n: Option<String>,
    pub(crate) last: Option<String>,
    pub(crate) ns: Option<String>,
    pub(crate) artifact_type: Option<String>,
    pub(crate) tag: Vec<String>,
}

impl Query {
    fn of(uri: &Uri) -> Result<Query> {
        let Some(query) = uri.query() else {
            return Ok(Query::default());
        };
        let mut parsed = Query::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8()
                .map_err(|_| Error::new(ErrorCode::Unsupported, "query is not UTF-8"))?
                .into_owned();
            let slot = match key {
                "digest" => &mut parsed.digest,
                "mount" => &mut parsed.mount,
                "from" => &mut parsed.from,
                "n" => &mut parsed.n,
                "last" => &mut parsed.last,
                "ns" => &mut parsed.ns,
                "artifactType" => &mut parsed.artifact_type,
                "tag" => {
                    parsed.tag.push(value);
                    continue;
                }
                // `_state`, `digest-algorithm` and anything else: ignored.
                _ => continue,
            };
            *slot = Some(value);
        }
        Ok(parsed)
    }
}

/// One request, parsed.
struct Call {
    method: Method,
    route: Route,
    query: Query,
    headers: axum::http::HeaderMap,
    body: Body,
}

async fn dispatch(State(registry): State<Registry>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let route = match Route::parse(parts.uri.path()) {
        Some(Ok(route)) => route,
        Some(Err(e)) => return e.into_response(),
        None => {
            return Error::new(ErrorCode::Unsupported, "no such endpoint")
                .with_status(StatusCode::NOT_FOUND)
                .into_response();
        }
    };
    let query = match Query::of(&parts.uri) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let name = RouteName(route.name());
    let call = Call {
        method: parts.method,
        route,
        query,
        headers: parts.headers,
        body,
    };
    let mut response = match handle(&registry, call).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(name);
    response
}

async fn handle(registry: &Registry, call: Call) -> Result<Response> {
    let Call {
        method,
        route,
        query,
        headers,
        body,
    } = call;
    let head = method == Method::HEAD;
    match (route, method.clone()) {
        (Route::Ping, Method::GET | Method::HEAD) => Ok(ping()),
        (Route::Catalog, Method::GET) => lists::catalog(registry, &query).await,
        (Route::Tags(repo), Method::GET) => lists::tags(registry, &repo, &query).await,
        (Route::Referrers(repo, digest), Method::GET) => {
            lists::referrers(registry, &repo, &digest, &query).await
        }
        (Route::Blob(repo, digest), Method::GET | Method::HEAD) => {
            blobs::get(registry, &repo, &digest, &query, &headers, head).await
        }
        (Route::Blob(..), Method::DELETE) => Err(Error::new(
            ErrorCode::Unsupported,
            "blobs are shared by every repository of the cluster and are not deleted one by one",
        )),
        (Route::Manifest(repo, reference), Method::GET | Method::HEAD) => {
            manifests::get(registry, &repo, reference, &query, head).await
        }
        (Route::Manifest(repo, reference), Method::PUT) => {
            let writer = registry.writer()?;
            manifests::put(registry, writer, &repo, reference, &query, &headers, body).await
        }
        (Route::Manifest(repo, reference), Method::DELETE) => {
            registry.writer()?;
            manifests::delete(registry, &repo, reference).await
        }
        (Route::Uploads(repo), Method::POST) => registry.writer()?.start(&repo, &query, body).await,
        (Route::Upload(repo, id), Method::PATCH) => {
            registry.writer()?.patch(&repo, &id, &headers, body).await
        }
        (Route::Upload(repo, id), Method::PUT) => {
            registry
                .writer()?
                .finish(&repo, &id, &query, &headers, body)
                .await
        }
        (Route::Upload(repo, id), Method::GET) => registry.writer()?.status(&repo, &id).await,
        (Route::Upload(_, id), Method::DELETE) => registry.writer()?.cancel(&id).await,
        (Route::Uploads(_) | Route::Upload(..), _) if registry.writer.is_none() => {
            Err(registry.writer().unwrap_err())
        }
        _ => Err(Error::new(
            ErrorCode::Unsupported,
            format!("method {method} is not allowed here"),
        )),
    }
}

async fn readiness(State(registry): State<Registry>) -> Result<&'static str> {
    registry.index.ready().await?;
    registry.blobs.ready().await.map_err(|e| {
        Error::new(ErrorCode::Unavailable, format!("cannot serve blobs: {e}")).with_retry_after(1)
    })?;
    Ok("ok\n")
}

fn ping() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        "{}",
    )
        .into_response()
}

/// The namespace a pull-through miss is read under when a containerd
/// mirror request names its upstream registry (`?ns=docker.io`):
/// `<upstream>/<repo>`, with `:` of a port as `_` (namespaces have no
/// `:`), so backend routing can send each upstream to its own registry
/// backend. `None` without an upstream or when the result is no valid
/// namespace.
pub fn upstream_namespace(upstream: Option<&str>, repo: &RepoName) -> Option<Namespace> {
    let upstream = upstream?.trim();
    if upstream.is_empty() {
        return None;
    }
    Namespace::new(format!("{}/{}", upstream.replace(':', "_"), repo)).ok()
}

/// The namespaces to try for content of `repo`: the repository itself,
/// then the pull-through namespace of `upstream` if there is one.
fn namespaces(repo: &RepoName, upstream: Option<&str>) -> Vec<Namespace> {
    let mut all = vec![repo.namespace()];
    all.extend(upstream_namespace(upstream, repo));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded_and_unknown_keys_ignored() {
        let uri: Uri = "/v2/a/blobs/uploads/x?_state=abc&digest=sha256%3Aab&tag=a&tag=b&n=3"
            .parse()
            .unwrap();
        let q = Query::of(&uri).unwrap();
        assert_eq!(q.digest.as_deref(), Some("sha256:ab"));
        assert_eq!(q.tag, vec!["a", "b"]);
        assert_eq!(q.n.as_deref(), Some("3"));
    }

    #[test]
    fn upstreams_become_namespaces() {
        let repo = RepoName::new("library/ubuntu").unwrap();
        assert_eq!(
            upstream_namespace(Some("docker.io"), &repo)
                .unwrap()
                .as_str(),
            "docker.io/library/ubuntu"
        );
        assert_eq!(
            upstream_namespace(Some("registry:5000"), &repo)
                .unwrap()
                .as_str(),
            "registry_5000/library/ubuntu"
        );
        assert!(upstream_namespace(Some("bad host"), &repo).is_none());
        assert!(upstream_namespace(None, &repo).is_none());
        assert_eq!(namespaces(&repo, Some("docker.io")).len(), 2);
    }
}
