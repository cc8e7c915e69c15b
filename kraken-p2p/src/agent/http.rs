//! The agent's generic blob API over HTTP, for processes on the host that
//! do not embed the agent.
//!
//! `GET /namespace/{ns}/blobs/{digest}` fetches a blob through the swarm and
//! streams it in order as pieces are verified, so a client decompresses a
//! layer while the rest of it still downloads. The namespace travels
//! percent-encoded as one path segment (`library%2Fubuntu`).
//!
//! Ranges follow the rules the origin shares (see `blob_http`): one range is
//! honoured, anything else gets the whole blob with 200.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use tracing::Instrument;

use kraken_core::{ByteRange, Digest, Namespace, Scheduler};

use super::error::ApiError;
use crate::blob_http::{blob_headers, blob_response, etag, requested_range};
use crate::http_error::log_failures;

type Shared = Arc<dyn Scheduler>;

/// Builds the agent's HTTP routes over `scheduler`: the generic blob API,
/// `/health` and `/readiness`.
///
/// Serve it with `axum::serve`, or nest it into a host application's own
/// router.
///
/// | route | answers |
/// |---|---|
/// | `GET /namespace/{ns}/blobs/{digest}` | 200, streamed as it downloads; 206 for a `Range` |
/// | `HEAD /namespace/{ns}/blobs/{digest}` | 200, the headers of a whole-blob GET, no body |
/// | `GET /health`, `GET /readiness` | 200 |
///
/// `{ns}` is percent-encoded as one path segment (`library%2Fubuntu`);
/// `{digest}` is `sha256:<hex>` or `sha512:<hex>`. Blob responses carry
/// `Content-Length`, `Accept-Ranges: bytes`, `Docker-Content-Digest` and
/// the digest as a strong `ETag`.
///
/// Failures carry `{"error": "<message>"}`: 400 for a malformed namespace
/// or digest, 404 when the cluster does not have the blob (or for an
/// unknown route), 416 with `Content-Range: bytes */<length>` for a range
/// that starts past the end, 503 when origins, peers or the backend cannot
/// provide it now, 504 when the download stalls. A `Range` that does not
/// parse, or names several ranges, is ignored and the whole blob served
/// with 200. A failure after the headers were sent aborts the connection,
/// so the client sees a truncated transfer, never a short 200.
pub fn router(scheduler: Arc<dyn Scheduler>) -> Router {
    Router::new()
        .route(
            "/namespace/{namespace}/blobs/{digest}",
            get(get_blob).head(head_blob),
        )
        .route("/health", get(health))
        .route("/readiness", get(readiness))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(log_failures))
        .with_state(scheduler)
}

async fn health() -> &'static str {
    "ok\n"
}

/// Reports ready once the server answers: the scheduler has no state that
/// must warm up, and a tracker that cannot be reached shows as 503 on the
/// blob requests that need it.
async fn readiness() -> &'static str {
    "ok\n"
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn get_blob(
    State(scheduler): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_path(path)?;
    let span = tracing::debug_span!("blob_get", %namespace, %digest);
    async move {
        let range = requested_range(&headers, &etag(&digest));
        tracing::debug!(?range, "serving blob");
        let stream = scheduler.stream(&namespace, &digest, range).await?;
        Ok(blob_response(stream, &namespace, &digest, !range.is_full()))
    }
    .instrument(span)
    .await
}

/// Answers HEAD with the headers a GET of the whole blob would carry.
///
/// The length comes from opening a stream, which for a blob not yet local
/// waits only for its metainfo, not its bytes; the download it starts goes
/// on in the background, which is what a client that asks HEAD before GET
/// wants anyway. A `Range` header is ignored, as RFC 9110 defines range
/// handling only for GET.
async fn head_blob(
    State(scheduler): State<Shared>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_path(path)?;
    let span = tracing::debug_span!("blob_head", %namespace, %digest);
    async move {
        let stream = scheduler
            .stream(&namespace, &digest, ByteRange::Full)
            .await?;
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        blob_headers(headers, &digest);
        headers.insert(header::CONTENT_LENGTH, stream.length.into());
        Ok(response)
    }
    .instrument(span)
    .await
}

fn parse_path(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(Namespace, Digest), ApiError> {
    let Path((namespace, digest)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let namespace = Namespace::new(namespace).map_err(kraken_core::Error::from)?;
    let digest = digest.parse().map_err(kraken_core::Error::from)?;
    Ok((namespace, digest))
}
