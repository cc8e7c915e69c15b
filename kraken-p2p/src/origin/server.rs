//! The origin's HTTP API.
//!
//! Namespaces travel percent-encoded as one path segment; digests as
//! `sha256:<hex>`. Failures answer JSON `{"error": "..."}`.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /health` | 200 while the process serves |
//! | `GET /readiness` | 200 when the backend answers, else 503 |
//! | `GET /blobs/{d}/locations` | 200 `{"locations": [...]}`, owners best first; also in `Origin-Locations` |
//! | `GET /internal/peer` | 200, this origin as a peer (P2P address, peer id) |
//! | `POST /namespace/{ns}/blobs/{d}/uploads` | 202 and `Location` of a new upload; 201 when the blob is held already |
//! | `PATCH` on the upload | 202 and `Range`; `Content-Range: <start>-<end>` (inclusive) must start where the upload ends, else 416; without it the chunk is appended |
//! | `GET` on the upload | 204 and `Range` of what it holds |
//! | `PUT` on the upload | appends a final body if any, commits: 201; 400 when the bytes hash otherwise (nothing is kept) |
//! | `DELETE` on the upload | 204, discards it |
//! | `PUT /namespace/{ns}/blobs/{d}` | the whole blob in one request: 201, or 400 as above |
//! | `GET`/`HEAD /namespace/{ns}/blobs/{d}` | 200 (206 for a `Range`); 202 while it is read from the backend; 404 when the backend lacks it; 503 when the backend cannot tell |
//! | `GET /namespace/{ns}/blobs/{d}/metainfo` | 200 the metainfo; 202, 404, 503 as above |
//! | `POST /namespace/{ns}/blobs/{d}/prefetch` | 200 held, 202 being read from the backend, 404, 503 |
//! | `POST /namespace/{ns}/blobs/{d}/mount` | 201 when held: kept under this namespace too (its write-back is queued); 404 when not held (no backend read) |
//! | `POST /namespace/{ns}/blobs/{d}/remote` | body `{"members": [...]}`: uploads the blob to that other cluster of origins, 200 once committed there; 202, 404, 503 as for a download |
//! | `DELETE /internal/blobs/{d}` | 204; 409 while its write-back is pending; 404 |
//! | `PUT /internal/namespace/{ns}/blobs/{d}` | 201: a copy from another owner, written back later as a fallback |
//!
//! A commit verifies the digest, stores the blob and its metainfo, queues
//! the write-back durably, copies the blob to the other owners, and only
//! then answers 201, so an acknowledged upload survives the loss of any one
//! origin and of the backend's availability.

use std::ops::Range;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use kraken_core::{
    BackendErrorKind, BlobState, BlobStream, ByteRange, Digest, Error, Namespace, UploadId,
    parse_upload_range, read_range,
};
use percent_encoding::utf8_percent_encode;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::Origin;
use super::client::{OriginClient, RemoteCluster};
use super::readthrough::Lookup;
use crate::blob_http::{blob_headers, blob_response, etag, requested_range};
use crate::http_error::{error_response, log_failures, status_for};
use crate::tracker::SEGMENT;

/// The header that repeats the owners of `GET /blobs/{d}/locations`,
/// comma-separated.
pub const ORIGIN_LOCATIONS: &str = "origin-locations";

/// The body of `GET /blobs/{digest}/locations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locations {
    /// Owner addresses, best first.
    pub locations: Vec<String>,
}

/// Bytes read from the store per chunk of a response body.
const READ_CHUNK: usize = 256 * 1024;

/// Seconds a client should wait before polling a blob read from the backend.
const POLL_AFTER_SECS: &str = "1";

/// The HTTP API of `origin`; see the module docs for the routes.
pub fn router(origin: Origin) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/readiness", get(readiness))
        .route("/blobs/{digest}/locations", get(locations))
        .route("/internal/peer", get(peer))
        .route(
            "/internal/blobs/{digest}",
            axum::routing::delete(delete_blob),
        )
        .route(
            "/internal/namespace/{namespace}/blobs/{digest}",
            put(put_replica),
        )
        .route(
            "/namespace/{namespace}/blobs/{digest}",
            get(get_blob).head(head_blob).put(put_blob),
        )
        .route(
            "/namespace/{namespace}/blobs/{digest}/metainfo",
            get(metainfo),
        )
        .route(
            "/namespace/{namespace}/blobs/{digest}/prefetch",
            post(prefetch),
        )
        .route(
            "/namespace/{namespace}/blobs/{digest}/mount",
            post(mount_blob),
        )
        .route(
            "/namespace/{namespace}/blobs/{digest}/remote",
            post(copy_to_remote),
        )
        .route(
            "/namespace/{namespace}/blobs/{digest}/uploads",
            post(start_upload),
        )
        .route(
            "/namespace/{namespace}/blobs/{digest}/uploads/{upload}",
            get(upload_status)
                .patch(patch_upload)
                .put(commit_upload)
                .delete(abort_upload),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(log_failures))
        .with_state(origin)
}

/// A failed request to the origin's HTTP API.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    /// The store, backend, or input validation failed.
    #[error(transparent)]
    Core(#[from] Error),
    /// The bytes of an upload hash to another digest; nothing was kept.
    #[error("{0}; nothing was stored")]
    Mismatch(Error),
    /// The path did not decode.
    #[error("malformed path: {0}")]
    BadPath(String),
    /// A header or body the origin cannot use.
    #[error("{0}")]
    BadRequest(String),
    /// A chunk that does not start where the upload ends.
    #[error("chunk starts at {start}, the upload holds {size} bytes")]
    OutOfOrder { start: u64, size: u64 },
    /// The blob's write-back is pending; deleting it would lose it.
    #[error("blob {0} is still being written back to the backend")]
    WriteBackPending(Digest),
    #[error("no such route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Core(error) => status_for(error),
            ApiError::Mismatch(_) | ApiError::BadPath(_) | ApiError::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::OutOfOrder { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::WriteBackPending(_) => StatusCode::CONFLICT,
            ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status(), self.to_string());
        let headers = response.headers_mut();
        match &self {
            ApiError::Core(Error::RangeNotSatisfiable { length, .. }) => {
                headers.insert(
                    header::CONTENT_RANGE,
                    number_header(&format!("bytes */{length}")),
                );
            }
            ApiError::OutOfOrder { size, .. } => {
                headers.insert(header::RANGE, range_header(*size));
            }
            _ => {}
        }
        response
    }
}

/// Upload errors: a digest mismatch is the uploader's fault (400), not an
/// upstream one as when serving.
fn upload_error(error: Error) -> ApiError {
    match error {
        Error::DigestMismatch { .. } => ApiError::Mismatch(error),
        other => ApiError::Core(other),
    }
}

fn number_header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("digits and ascii are a valid header value")
}

/// `Range: 0-<last>` of an upload holding `size` bytes, as the OCI spec has
/// it (`0-0` when empty).
fn range_header(size: u64) -> HeaderValue {
    number_header(&format!("0-{}", size.saturating_sub(1)))
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn health() -> &'static str {
    "ok\n"
}

/// Ready when the backend answers a stat: found, not found and "cannot
/// stat" (a read-only source) all prove it is reachable.
async fn readiness(State(origin): State<Origin>) -> Result<&'static str, ApiError> {
    let inner = &origin.inner;
    match inner
        .backend
        .stat(&inner.config.readiness_namespace, "kraken-readiness-probe")
        .await
    {
        Ok(_) => Ok("ok\n"),
        Err(e)
            if matches!(
                e.kind(),
                BackendErrorKind::NotFound | BackendErrorKind::Unsupported
            ) =>
        {
            Ok("ok\n")
        }
        Err(e) => Err(ApiError::Core(Error::Backend(e))),
    }
}

async fn locations(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(digest) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let digest: Digest = digest.parse().map_err(Error::from)?;
    let owners = origin.cluster().owners(&digest);
    let header = HeaderValue::from_str(&owners.join(","))
        .map_err(|_| ApiError::BadRequest("member addresses are not valid header text".into()))?;
    let mut response = Json(Locations { locations: owners }).into_response();
    response.headers_mut().insert(ORIGIN_LOCATIONS, header);
    Ok(response)
}

async fn peer(State(origin): State<Origin>) -> Json<kraken_core::PeerInfo> {
    Json(origin.peer().clone())
}

fn parse_blob(
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(Namespace, Digest), ApiError> {
    let Path((namespace, digest)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let namespace = Namespace::new(namespace).map_err(Error::from)?;
    let digest = digest.parse().map_err(Error::from)?;
    Ok((namespace, digest))
}

fn parse_upload(
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<(Namespace, Digest, UploadId), ApiError> {
    let Path((namespace, digest, upload)) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let namespace = Namespace::new(namespace).map_err(Error::from)?;
    let digest = digest.parse().map_err(Error::from)?;
    let upload = upload
        .parse()
        .map_err(|e| ApiError::BadPath(format!("upload id {upload:?}: {e}")))?;
    Ok((namespace, digest, upload))
}

fn upload_location(namespace: &Namespace, digest: &Digest, id: &UploadId) -> HeaderValue {
    let ns = utf8_percent_encode(namespace.as_str(), SEGMENT);
    HeaderValue::from_str(&format!("/namespace/{ns}/blobs/{digest}/uploads/{id}"))
        .expect("an encoded path is a valid header value")
}

fn blob_location(namespace: &Namespace, digest: &Digest) -> HeaderValue {
    let ns = utf8_percent_encode(namespace.as_str(), SEGMENT);
    HeaderValue::from_str(&format!("/namespace/{ns}/blobs/{digest}"))
        .expect("an encoded path is a valid header value")
}

/// The 202 that tells a caller to poll while the blob is read.
fn fetching(digest: &Digest) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        Json(crate::http_error::ErrorBody {
            error: format!("blob {digest} is being read from the backend; retry"),
        }),
    )
        .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(POLL_AFTER_SECS),
    );
    response
}

async fn is_cached(origin: &Origin, digest: &Digest) -> bool {
    origin
        .store()
        .stat(digest)
        .await
        .is_ok_and(|s| s.state == BlobState::Cached)
}

/// Makes sure the store holds the blob: `Ok(None)` when it does, `Ok(Some(202))`
/// while it is read from the backend.
async fn ensure(
    origin: &Origin,
    namespace: &Namespace,
    digest: &Digest,
) -> Result<Option<Response>, ApiError> {
    match origin.inner.read_through.ensure(namespace, digest).await {
        Ok(Lookup::Present) => Ok(None),
        Ok(Lookup::Fetching) => Ok(Some(fetching(digest))),
        Err(e) => Err(ApiError::Core(e)),
    }
}

async fn get_blob(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    let span = tracing::debug_span!("blob_get", %namespace, %digest);
    async move {
        if let Some(wait) = ensure(&origin, &namespace, &digest).await? {
            return Ok(wait);
        }
        let reader = origin.store().open(&digest).await?;
        let length = reader.len();
        let asked = requested_range(&headers, &etag(&digest));
        let range: Range<u64> = asked.resolve(length).ok_or(Error::RangeNotSatisfiable {
            start: match asked {
                ByteRange::From(s) | ByteRange::Inclusive { start: s, .. } => s,
                _ => length,
            },
            end: length,
            length,
        })?;
        let stream = BlobStream {
            length,
            range: range.clone(),
            body: read_range(reader, range, READ_CHUNK),
        };
        Ok(blob_response(stream, &namespace, &digest, !asked.is_full()))
    }
    .instrument(span)
    .await
}

async fn head_blob(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    if let Some(wait) = ensure(&origin, &namespace, &digest).await? {
        return Ok(wait);
    }
    let stat = origin.store().stat(&digest).await?;
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    blob_headers(headers, &digest);
    headers.insert(header::CONTENT_LENGTH, stat.length.into());
    Ok(response)
}

async fn metainfo(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    if let Some(wait) = ensure(&origin, &namespace, &digest).await? {
        return Ok(wait);
    }
    let meta = origin.store().metainfo(&digest).await?;
    let mut response = Response::new(Body::from(meta.to_bytes()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

async fn prefetch(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    Ok(match ensure(&origin, &namespace, &digest).await? {
        Some(wait) => wait,
        None => (StatusCode::OK, "held\n").into_response(),
    })
}

async fn start_upload(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    if is_cached(&origin, &digest).await {
        // Held already: make sure the backend gets it under this
        // namespace too, as an upload would.
        origin
            .writeback()
            .enqueue(&namespace, &digest, Duration::ZERO)
            .await?;
        return Ok(created(&namespace, &digest));
    }
    let id = origin.store().create_upload().await?;
    let mut response = StatusCode::ACCEPTED.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, upload_location(&namespace, &digest, &id));
    headers.insert(header::RANGE, range_header(0));
    Ok(response)
}

async fn mount_blob(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    if !is_cached(&origin, &digest).await {
        return Err(ApiError::Core(Error::NotFound(digest)));
    }
    origin
        .writeback()
        .enqueue(&namespace, &digest, Duration::ZERO)
        .await?;
    Ok(created(&namespace, &digest))
}

async fn copy_to_remote(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    let remote: RemoteCluster = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not {{\"members\": [...]}}: {e}")))?;
    let span = tracing::info_span!("copy_to_remote", %namespace, %digest);
    async move {
        if let Some(wait) = ensure(&origin, &namespace, &digest).await? {
            return Ok(wait);
        }
        let client = OriginClient::new(remote.members, origin.inner.config.client.clone())
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let reader = origin.store().open(&digest).await?;
        client.upload(&namespace, &digest, reader).await?;
        tracing::info!("copied to the remote cluster");
        Ok((StatusCode::OK, "copied\n").into_response())
    }
    .instrument(span)
    .await
}

fn created(namespace: &Namespace, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, blob_location(namespace, digest));
    headers.insert(
        "docker-content-digest",
        HeaderValue::from_str(&digest.to_string()).expect("a digest is a valid header value"),
    );
    response
}

/// The chunk an upload request's `Content-Range` names, if it has one.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || ApiError::BadRequest(format!("Content-Range {value:?} is not <start>-<end>"));
    let text = value.to_str().map_err(|_| bad())?;
    parse_upload_range(text).map(Some).map_err(|_| bad())
}

/// Appends a request body to an upload from `offset`; returns the new size.
/// A body that breaks off (the client went away, a proxy cut it) discards
/// the whole upload, so no truncated bytes are ever committed.
async fn append_body(
    origin: &Origin,
    id: &UploadId,
    mut offset: u64,
    body: Body,
) -> Result<u64, ApiError> {
    let store = origin.store();
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                let _ = store.abort_upload(id).await;
                return Err(ApiError::BadRequest(format!(
                    "request body broke off after {offset} bytes ({e}); the upload was discarded"
                )));
            }
        };
        if chunk.is_empty() {
            continue;
        }
        offset = store.append_upload(id, offset, chunk).await?;
    }
    Ok(offset)
}

async fn patch_upload(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (namespace, digest, id) = parse_upload(path)?;
    let range = content_range(&headers)?;
    let size = origin.store().upload_size(&id).await?;
    if let Some((start, _)) = range
        && start != size
    {
        return Err(ApiError::OutOfOrder { start, size });
    }
    let new_size = append_body(&origin, &id, size, body).await?;
    if let Some((start, end)) = range
        && new_size - size != end - start + 1
    {
        let _ = origin.store().abort_upload(&id).await;
        return Err(ApiError::BadRequest(format!(
            "Content-Range {start}-{end} announces {} bytes, the body held {}; the upload was discarded",
            end - start + 1,
            new_size - size
        )));
    }
    let mut response = StatusCode::ACCEPTED.into_response();
    let out = response.headers_mut();
    out.insert(header::LOCATION, upload_location(&namespace, &digest, &id));
    out.insert(header::RANGE, range_header(new_size));
    Ok(response)
}

async fn upload_status(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (namespace, digest, id) = parse_upload(path)?;
    let size = origin.store().upload_size(&id).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(header::LOCATION, upload_location(&namespace, &digest, &id));
    out.insert(header::RANGE, range_header(size));
    Ok(response)
}

async fn abort_upload(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (_, _, id) = parse_upload(path)?;
    origin.store().abort_upload(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn commit_upload(
    State(origin): State<Origin>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (namespace, digest, id) = parse_upload(path)?;
    let span = tracing::info_span!("upload", %namespace, %digest);
    async move {
        let size = origin.store().upload_size(&id).await?;
        append_body(&origin, &id, size, body).await?;
        commit(&origin, &namespace, &digest, &id, Placement::Upload).await?;
        Ok(created(&namespace, &digest))
    }
    .instrument(span)
    .await
}

async fn put_blob(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    let span = tracing::info_span!("upload", %namespace, %digest);
    async move {
        let id = origin.store().create_upload().await?;
        append_body(&origin, &id, 0, body).await?;
        commit(&origin, &namespace, &digest, &id, Placement::Upload).await?;
        Ok(created(&namespace, &digest))
    }
    .instrument(span)
    .await
}

async fn put_replica(
    State(origin): State<Origin>,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let (namespace, digest) = parse_blob(path)?;
    let span = tracing::info_span!("replica", %namespace, %digest);
    async move {
        let id = origin.store().create_upload().await?;
        append_body(&origin, &id, 0, body).await?;
        commit(&origin, &namespace, &digest, &id, Placement::Replica).await?;
        Ok(created(&namespace, &digest))
    }
    .instrument(span)
    .await
}

/// Whether a commit came from a client (copy to the other owners, write
/// back now) or from another owner (write back later, as a fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    Upload,
    Replica,
}

async fn commit(
    origin: &Origin,
    namespace: &Namespace,
    digest: &Digest,
    id: &UploadId,
    placement: Placement,
) -> Result<(), ApiError> {
    let inner = &origin.inner;
    let meta = inner
        .store
        .commit_upload(id, digest, &inner.config.piece_lengths)
        .await
        .map_err(upload_error)?;
    let delay = match placement {
        Placement::Upload => Duration::ZERO,
        Placement::Replica => inner.config.replica_writeback_delay,
    };
    inner.writeback.enqueue(namespace, digest, delay).await?;
    if placement == Placement::Replica {
        tracing::debug!(length = meta.length(), "replica stored");
        return Ok(());
    }
    let others: Vec<String> = inner
        .cluster
        .owners(digest)
        .into_iter()
        .filter(|o| o != origin.addr())
        .collect();
    let copies = others.iter().map(|owner| async move {
        let reader = inner.store.open(digest).await?;
        inner
            .client
            .replicate(owner, namespace, digest, reader)
            .await
    });
    let results = futures::future::join_all(copies).await;
    let mut copied = 0;
    for (owner, result) in others.iter().zip(results) {
        match result {
            Ok(()) => copied += 1,
            Err(error) => {
                tracing::warn!(%owner, %error, "could not copy the blob to an owner; the backend write-back still covers it");
            }
        }
    }
    tracing::info!(length = meta.length(), copies = copied, "upload committed");
    Ok(())
}

async fn delete_blob(
    State(origin): State<Origin>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(digest) = path.map_err(|e| ApiError::BadPath(e.body_text()))?;
    let digest: Digest = digest.parse().map_err(Error::from)?;
    if origin.writeback().is_pending(&digest) {
        return Err(ApiError::WriteBackPending(digest));
    }
    origin.store().delete(&digest).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_range_must_parse() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_range(&headers).unwrap(), None);
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("0-9"));
        assert_eq!(content_range(&headers).unwrap(), Some((0, 9)));
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes=0-9"));
        assert!(content_range(&headers).is_err());
    }

    #[test]
    fn upload_ranges_follow_the_oci_spelling() {
        assert_eq!(range_header(0), "0-0");
        assert_eq!(range_header(1), "0-0");
        assert_eq!(range_header(100), "0-99");
    }
}
