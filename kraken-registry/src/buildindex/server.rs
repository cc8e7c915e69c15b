//! The HTTP API of build-index ([`router`]) and a server that runs it
//! ([`BuildIndexServer`]).
//!
//! Names, tags and digests in URLs are validated before anything else, so
//! bad input is a 400 with its OCI code (`NAME_INVALID`, `DIGEST_INVALID`,
//! ...) and never reaches the tables. Query strings are read by hand:
//! `tag` repeats, which form decoding does not keep.

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kraken_core::Digest;
use kraken_p2p::http_tls::HttpListener;
use percent_encoding::percent_decode_str;

use super::{BuildIndex, OriginMembers, Page};
use crate::error::{Error, ErrorCode, Result};
use crate::http::registry_layer;
use crate::reference::{RepoName, Tag};

/// The HTTP API of `index`; the module docs of
/// [`buildindex`](super) list the routes.
pub fn router(index: BuildIndex) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/readiness", get(readiness))
        .route("/origin", get(origin))
        .route("/repositories", get(catalog))
        .route("/repositories/{repo}/tags", get(list_tags))
        .route(
            "/repositories/{repo}/tags/{tag}",
            get(get_tag).delete(delete_tag),
        )
        .route(
            "/repositories/{repo}/manifests/{digest}",
            get(get_manifest).put(put_manifest).delete(delete_manifest),
        )
        .route("/repositories/{repo}/referrers/{digest}", get(referrers))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(registry_layer))
        .with_state(index)
}

type Pair = Result<Path<(String, String)>, PathRejection>;

/// The pairs of a query string, percent-decoded. `+` stays a plus: media
/// types hold it, and nothing here holds a space.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn page(pairs: &[(String, String)]) -> Result<Page> {
    let n = match first(pairs, "n") {
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            Error::new(
                ErrorCode::PaginationNumberInvalid,
                format!("n={n:?} is not a count"),
            )
        })?),
        None => None,
    };
    let last = first(pairs, "last").map(str::to_owned);
    Ok(Page { n, last })
}

fn path_error(rejection: &PathRejection) -> Error {
    Error::new(
        ErrorCode::NameInvalid,
        format!("malformed path: {}", rejection.body_text()),
    )
}

fn repo(name: String) -> Result<RepoName> {
    Ok(RepoName::new(name)?)
}

fn digest(text: &str) -> Result<Digest> {
    text.parse().map_err(|e: kraken_core::DigestError| {
        Error::new(ErrorCode::DigestInvalid, format!("{text:?}: {e}"))
    })
}

fn repo_and_digest(path: Pair) -> Result<(RepoName, Digest)> {
    let Path((name, d)) = path.map_err(|e| path_error(&e))?;
    Ok((repo(name)?, digest(&d)?))
}

fn repo_and_tag(path: Pair) -> Result<(RepoName, Tag)> {
    let Path((name, tag)) = path.map_err(|e| path_error(&e))?;
    Ok((repo(name)?, Tag::new(tag)?))
}

async fn health() -> &'static str {
    "ok\n"
}

async fn readiness(State(index): State<BuildIndex>) -> Result<&'static str> {
    index.readiness().await.map(|()| "ok\n")
}

async fn origin(State(index): State<BuildIndex>) -> Json<OriginMembers> {
    Json(OriginMembers {
        members: index.origin_members(),
    })
}

async fn catalog(State(index): State<BuildIndex>, RawQuery(query): RawQuery) -> Result<Response> {
    let page = page(&query_pairs(query.as_deref()))?;
    Ok(Json(index.catalog(&page).await?).into_response())
}

async fn list_tags(
    State(index): State<BuildIndex>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let Path(name) = path.map_err(|e| path_error(&e))?;
    let repo = repo(name)?;
    let page = page(&query_pairs(query.as_deref()))?;
    Ok(Json(index.list_tags(&repo, &page).await?).into_response())
}

async fn get_tag(
    State(index): State<BuildIndex>,
    path: Pair,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let (repo, tag) = repo_and_tag(path)?;
    let pairs = query_pairs(query.as_deref());
    let digest = index
        .get_tag(&repo, &tag, first(&pairs, "upstream"))
        .await?;
    let text = [(header::CONTENT_TYPE, "text/plain")];
    Ok((text, digest.to_string()).into_response())
}

async fn delete_tag(State(index): State<BuildIndex>, path: Pair) -> Result<StatusCode> {
    let (repo, tag) = repo_and_tag(path)?;
    index.delete_tag(&repo, &tag).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn put_manifest(
    State(index): State<BuildIndex>,
    path: Pair,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let (repo, digest) = repo_and_digest(path)?;
    let pairs = query_pairs(query.as_deref());
    let tags = pairs
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| Tag::new(v.as_str()))
        .collect::<Result<Vec<Tag>, _>>()?;
    let media_type = first(&pairs, "media_type");
    let record = index
        .put_manifest(&repo, &digest, &tags, media_type)
        .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

async fn get_manifest(State(index): State<BuildIndex>, path: Pair) -> Result<Response> {
    let (repo, digest) = repo_and_digest(path)?;
    Ok(Json(index.get_manifest(&repo, &digest).await?).into_response())
}

async fn delete_manifest(State(index): State<BuildIndex>, path: Pair) -> Result<StatusCode> {
    let (repo, digest) = repo_and_digest(path)?;
    index.delete_manifest(&repo, &digest).await?;
    Ok(StatusCode::ACCEPTED)
}

async fn referrers(
    State(index): State<BuildIndex>,
    path: Pair,
    RawQuery(query): RawQuery,
) -> Result<Response> {
    let (repo, digest) = repo_and_digest(path)?;
    let pairs = query_pairs(query.as_deref());
    let artifact_type = first(&pairs, "artifactType");
    let found = index.referrers(&repo, &digest, artifact_type).await?;
    Ok(Json(found).into_response())
}

async fn no_route() -> Error {
    Error::new(
        ErrorCode::Unsupported,
        "no such route (repository names travel percent-encoded as one path segment)",
    )
    .with_status(StatusCode::NOT_FOUND)
}

async fn method_not_allowed() -> Error {
    Error::new(ErrorCode::Unsupported, "method not allowed on this route")
}

/// A running build-index HTTP server.
///
/// Dropping it stops the server without waiting;
/// [`BuildIndexServer::shutdown`] stops it and waits for requests in
/// flight to finish.
#[derive(Debug)]
pub struct BuildIndexServer {
    server: crate::http::Server,
}

impl BuildIndexServer {
    /// Serves `index`'s [`router`] on `listener` until shut down, with
    /// `GET /metrics` and every request counted in
    /// [`BuildIndex::metrics`]; writes need one of the config's `auth`
    /// tokens when it names any.
    ///
    /// # Errors
    ///
    /// `UNKNOWN` when the listener has no local address.
    pub fn serve(listener: impl Into<HttpListener>, index: BuildIndex) -> Result<BuildIndexServer> {
        let metrics = index.metrics().clone();
        let auth = index.auth().clone();
        let app = auth.require_for_writes(router(index), unauthorized);
        let server = crate::http::Server::serve(listener, app, "build_index", metrics)
            .map_err(|e| Error::new(ErrorCode::Unknown, format!("listener address: {e}")))?;
        Ok(BuildIndexServer { server })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting connections, lets requests in flight finish, and
    /// waits for the server to end.
    ///
    /// # Errors
    ///
    /// `UNKNOWN` when the server had failed while serving.
    pub async fn shutdown(self) -> Result<()> {
        self.server.shutdown().await.map_err(|e| {
            Error::new(
                ErrorCode::Unknown,
                format!("build-index server failed: {e}"),
            )
        })
    }
}

/// The answer to a write without an accepted token.
fn unauthorized() -> Response {
    Error::new(
        ErrorCode::Unauthorized,
        "build-index takes writes only with a token (Authorization: Bearer <token>)",
    )
    .with_header(
        "www-authenticate",
        "Bearer realm=\"kraken-build-index\"".into(),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_keep_repeated_keys_and_plus_signs() {
        let pairs = query_pairs(Some("tag=a&tag=b&media_type=x%2Fy+json&flag&&n=3"));
        let tags: Vec<&str> = pairs
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(first(&pairs, "media_type"), Some("x/y+json"));
        assert_eq!(first(&pairs, "flag"), Some(""));
        assert_eq!(page(&pairs).unwrap().n, Some(3));
        let bad = query_pairs(Some("n=-1"));
        assert_eq!(page(&bad).unwrap_err().status(), StatusCode::BAD_REQUEST);
        assert!(query_pairs(None).is_empty());
    }
}
