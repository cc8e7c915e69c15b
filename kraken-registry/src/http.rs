//! What every HTTP server of this crate shares: the distribution API
//! version header, one log line per failed request, the escaping of
//! repository names in the URLs of build-index, and a [`Server`] that runs
//! a router until it is shut down.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::Listener;
use kraken_p2p::http_tls::HttpListener;
use kraken_p2p::metrics::{Metrics, instrument};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Failure;

/// The header every registry response carries.
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

/// Bytes escaped in a path segment: everything but unreserved characters,
/// so a repository name with `/` travels as one segment.
pub const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` as one path segment.
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// Runs each request in a span, stamps the API version header, and logs a
/// failure once: server-side failures at `warn`, client mistakes at
/// `debug`.
pub async fn registry_layer(request: Request, next: Next) -> Response {
    let span = tracing::debug_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    let _entered = span.enter();
    if let Some(Failure(error)) = response.extensions().get::<Failure>() {
        let status = response.status().as_u16();
        if response.status().is_server_error() {
            tracing::warn!(status, %error, "request failed");
        } else {
            tracing::debug!(status, %error, "request rejected");
        }
    }
    response
}

/// A running HTTP server.
///
/// Dropping it stops the server without waiting; [`Server::shutdown`]
/// stops it and waits for requests in flight (uploads included) to finish.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Serves `app` on `listener` (a `TcpListener`, or an [`HttpListener`]
    /// that may speak TLS) until shut down, with `GET /metrics` and
    /// every request counted in `metrics`; `name` labels its logs (`proxy`,
    /// `agent_registry`, ...).
    ///
    /// # Errors
    ///
    /// When the listener has no local address.
    pub fn serve(
        listener: impl Into<HttpListener>,
        app: Router,
        name: &'static str,
        metrics: Metrics,
    ) -> io::Result<Server> {
        let listener = listener.into();
        let app = instrument(app, metrics);
        let local_addr = Listener::local_addr(&listener)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone().cancelled_owned();
        let span = tracing::info_span!("http_server", server = name, addr = %local_addr);
        let task = tokio::spawn(
            async move {
                tracing::info!("listening");
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
                if let Err(e) = &served {
                    tracing::error!(error = %e, "server failed");
                }
                served
            }
            .instrument(span),
        );
        Ok(Server {
            local_addr,
            cancel,
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in flight finish, and
    /// waits for the server to end.
    ///
    /// # Errors
    ///
    /// When the server had failed while serving.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.cancel.cancel();
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| io::Error::other(format!("server task ended abnormally: {e}")))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_travel_as_one_segment() {
        assert_eq!(segment("library/ubuntu"), "library%2Fubuntu");
        assert_eq!(segment("a.b_c-d"), "a.b_c-d");
        assert_eq!(segment("app:v1"), "app%3Av1");
    }
}
