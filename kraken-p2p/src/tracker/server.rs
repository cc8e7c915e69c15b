//! The tracker's HTTP API: agents announce and fetch metainfo over it, and
//! orchestrators probe it. It owns the mapping from [`kraken_core::Error`]
//! to HTTP status, the validation of everything that arrives from the
//! network, and the lifecycle of the listening socket.
//!
//! | route | answer |
//! |---|---|
//! | `POST /announce` | JSON [`AnnounceRequest`] in, JSON [`AnnounceResponse`] out |
//! | `GET /namespace/{ns}/blobs/{digest}/metainfo` | the canonical metainfo, octet-stream |
//! | `GET /health` | 200 `ok` while the process serves |
//! | `GET /readiness` | 200 `ok` when the peer store answers, 503 otherwise |
//!
//! Every failure is a JSON body `{"error": "<message>"}`. Malformed input
//! (JSON, digests, namespaces, hex ids) is 400, a body over
//! [`MAX_BODY_BYTES`] is 413; the rest follows [`status_for`]. Metainfo
//! travels as [`MetaInfo::to_bytes`](kraken_core::MetaInfo::to_bytes)
//! writes it, with `{ns}` percent-encoded as one path segment.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::Listener;
use kraken_core::{Digest, Error, Namespace, Result};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{AnnounceRequest, AnnounceResponse, Tracker, TrackerService};
use crate::http_error::{error_response, log_failures, status_for};
use crate::http_tls::HttpListener;
use crate::metrics::{Metrics, instrument};

/// Largest request body accepted; an announce is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Builds the tracker's routes over `service`.
pub fn router(service: Arc<TrackerService>) -> Router {
    Router::new()
        .route("/announce", post(announce))
        .route("/namespace/{ns}/blobs/{digest}/metainfo", get(metainfo))
        .route("/health", get(health))
        .route("/readiness", get(readiness))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_failures))
        .with_state(service)
}

/// A failed request: its status and message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError {
            status: status_for(&e),
            message: e.to_string(),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        // 413 when the body exceeds the limit; 400 when it broke off.
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            message: format!("reading the body: {}", rejection.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.message)
    }
}

async fn announce(
    State(service): State<Arc<TrackerService>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<Response, ApiError> {
    let request: AnnounceRequest = serde_json::from_slice(&body?)
        .map_err(|e| ApiError::bad_request(format!("invalid announce: {e}")))?;
    let span = tracing::debug_span!(
        "announce",
        digest = %request.digest,
        peer = %request.peer.peer_id,
        complete = request.peer.complete,
    );
    let response = service.announce(&request).instrument(span).await?;
    Ok(json_of(&response))
}

/// Serializes an answer into a buffer sized for it up front (a peer takes
/// about 130 bytes), where `Json` would grow one from 128 bytes, copying
/// a 50-peer answer six times.
fn json_of(response: &AnnounceResponse) -> Response {
    let mut body = Vec::with_capacity(64 + 160 * response.peers.len());
    match serde_json::to_writer(&mut body, response) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metainfo(
    State(service): State<Arc<TrackerService>>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
) -> std::result::Result<Response, ApiError> {
    let Path((namespace, digest)) = path?;
    let namespace = Namespace::new(namespace)
        .map_err(|e| ApiError::bad_request(format!("invalid namespace: {e}")))?;
    let digest: Digest = digest
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid digest: {e}")))?;
    let span = tracing::debug_span!("metainfo", %digest, %namespace);
    let meta = service
        .metainfo(&namespace, &digest)
        .instrument(span)
        .await?;
    let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
    Ok((octets, meta.to_bytes()).into_response())
}

async fn health() -> &'static str {
    "ok"
}

async fn readiness(
    State(service): State<Arc<TrackerService>>,
) -> std::result::Result<&'static str, ApiError> {
    match service.ready().await {
        Ok(()) => Ok("ok"),
        Err(e) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!("peer store does not answer: {e}"),
        }),
    }
}

async fn no_route() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such route".to_owned(),
    }
}

async fn wrong_method() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this route".to_owned(),
    }
}

/// A running tracker HTTP server.
///
/// Dropping it stops the server without waiting; [`TrackerServer::shutdown`]
/// stops it and waits for requests in flight to finish.
#[derive(Debug)]
pub struct TrackerServer {
    local_addr: SocketAddr,
    scheme: &'static str,
    cancel: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl TrackerServer {
    /// Binds `addr` (port 0 picks a free port) and serves [`router`] over
    /// `service` until `cancel` fires or the server is shut down.
    ///
    /// # Errors
    ///
    /// `Io` when the address cannot be bound.
    pub async fn bind(
        addr: SocketAddr,
        service: Arc<TrackerService>,
        cancel: &CancellationToken,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, service, cancel)
    }

    /// Serves [`router`] over `service` on `listener` (a `TcpListener`, or
    /// an [`HttpListener`] that may speak TLS) until `cancel` fires or the
    /// server is shut down.
    ///
    /// # Errors
    ///
    /// `Io` when the listener has no local address.
    pub fn serve(
        listener: impl Into<HttpListener>,
        service: Arc<TrackerService>,
        cancel: &CancellationToken,
    ) -> Result<Self> {
        let listener = listener.into();
        let scheme = if listener.is_tls() { "https" } else { "http" };
        let local_addr = Listener::local_addr(&listener)?;
        let cancel = cancel.child_token();
        let stop = cancel.clone().cancelled_owned();
        let metrics = Metrics::new("tracker");
        let counted = service.clone();
        metrics.counter("tracker_announces", "Announces answered", move || {
            counted.announces()
        });
        let app = instrument(router(service), metrics);
        let span = tracing::info_span!("tracker_http", addr = %local_addr);
        let task = tokio::spawn(
            async move {
                tracing::info!("tracker listening");
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
                match &served {
                    Ok(()) => tracing::info!("tracker stopped"),
                    Err(e) => tracing::error!(error = %e, "tracker server failed"),
                }
                served
            }
            .instrument(span),
        );
        Ok(TrackerServer {
            local_addr,
            scheme,
            cancel,
            task: Some(task),
        })
    }

    /// Returns the address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns the base URL clients use, as `http://<addr>`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// Stops accepting connections, lets requests in flight finish, and
    /// waits for the server to end.
    ///
    /// # Errors
    ///
    /// `Io` when the server had failed while serving.
    pub async fn shutdown(mut self) -> Result<()> {
        self.cancel.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(served) => Ok(served?),
            Err(e) => Err(Error::Io(io::Error::other(format!(
                "tracker server task ended abnormally: {e}"
            )))),
        }
    }
}

impl Drop for TrackerServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
