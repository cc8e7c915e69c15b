//! The agent's generic blob API over HTTP, for processes on the host that
//! do not embed the agent.
//!
//! `GET /namespace/{ns}/blobs/{digest}` fetches a blob through the swarm and
//! streams it in order as pieces are verified, so a client decompresses a
//! layer while the rest of it still downloads. The namespace travels
//! percent-encoded as one path segment (`library%2Fubuntu`).
//!
//! # Ranges
//!
//! A single `Range` is honoured: 206 with `Content-Range`, or 416 with
//! `Content-Range: bytes */<length>` when it starts past the end. A `Range`
//! header that does not parse (`bytes=5-3`), asks for several ranges, or
//! follows an `If-Range` that does not match the blob's `ETag` is ignored
//! and the whole blob is served with 200, one of the two choices RFC 9110
//! section 14.2 leaves to servers: a client that sent it can always use the
//! whole blob, and it cannot be served a part it did not ask for.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use tracing::Instrument;

use kraken_core::{BlobStream, ByteRange, Digest, Namespace, Scheduler};

use super::error::ApiError;
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

/// Returns the range a GET asks for, or the whole blob when the `Range`
/// header is absent or to be ignored (see the module docs).
fn requested_range(headers: &HeaderMap, etag: &str) -> ByteRange {
    let Some(value) = headers.get(header::RANGE) else {
        return ByteRange::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.as_bytes() != etag.as_bytes()
    {
        return ByteRange::Full;
    }
    let Ok(value) = value.to_str() else {
        return ByteRange::Full;
    };
    // Range units are case-insensitive; the parser expects `bytes=`.
    ByteRange::parse_header(&value.to_ascii_lowercase()).unwrap_or(ByteRange::Full)
}

/// Returns the strong entity tag of a blob: its digest never names other
/// bytes.
fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

fn blob_headers(headers: &mut HeaderMap, digest: &Digest) {
    let value = |s: String| HeaderValue::from_str(&s).expect("a digest is a valid header value");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("docker-content-digest", value(digest.to_string()));
    headers.insert(header::ETAG, value(etag(digest)));
}

/// Builds the response around a stream. A failure after the headers went
/// out ends the body early; the declared `Content-Length` then makes the
/// server abort the connection, so the client sees a truncated transfer
/// rather than a short blob it might take for whole.
fn blob_response(
    stream: BlobStream,
    namespace: &Namespace,
    digest: &Digest,
    partial: bool,
) -> Response {
    let BlobStream {
        length,
        range,
        body,
    } = stream;
    let (namespace, digest_field) = (namespace.clone(), *digest);
    let body = body.inspect_err(move |error| {
        tracing::warn!(
            %namespace,
            digest = %digest_field,
            %error,
            "blob stream failed after headers were sent; aborting response"
        );
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    blob_headers(headers, digest);
    headers.insert(header::CONTENT_LENGTH, (range.end - range.start).into());
    if partial {
        let content_range = format!("bytes {}-{}/{length}", range.start, range.end - 1);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).expect("digits are a valid header value"),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn ranges_that_cannot_be_honoured_are_ignored() {
        let tag = "\"sha256:ab\"";
        let range = |pairs| requested_range(&headers(pairs), tag);
        assert_eq!(range(&[]), ByteRange::Full);
        assert_eq!(range(&[(header::RANGE, "bytes=5-")]), ByteRange::From(5));
        assert_eq!(range(&[(header::RANGE, "Bytes=-3")]), ByteRange::Suffix(3));
        assert_eq!(range(&[(header::RANGE, "bytes=5-3")]), ByteRange::Full);
        assert_eq!(range(&[(header::RANGE, "bytes=0-1,4-5")]), ByteRange::Full);
        let matching = [(header::RANGE, "bytes=1-"), (header::IF_RANGE, tag)];
        assert_eq!(range(&matching), ByteRange::From(1));
        let stale = [(header::RANGE, "bytes=1-"), (header::IF_RANGE, "\"other\"")];
        assert_eq!(range(&stale), ByteRange::Full);
    }
}
