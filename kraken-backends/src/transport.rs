//! The HTTP client every network backend here talks through: hyper's
//! pooled client over TCP or TLS (rustls on ring), with the timeouts the
//! backends need and the trust anchors their options name.
//!
//! Why not the workspace's reqwest: reqwest reaches rustls on ring only
//! through its `rustls-no-provider` feature, with which a client built
//! without a ready rustls config panics unless a process-wide crypto
//! provider is installed (the components' clients avoid that by always
//! passing one, through `kraken_p2p::http_tls`). hyper-rustls takes a ready
//! `ClientConfig` by design, so the provider is chosen here, per client.
//!
//! The client does not follow redirects: a file server or object store has
//! no reason to send one, and the registry backend follows them itself so
//! that it never carries credentials to another host.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kraken_core::{BackendError, BackendErrorKind};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, Sleep};

use crate::Error;

/// Any error a body or the client can fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request sent through a [`Transport`].
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// A response as it arrives, its body not yet read.
pub(crate) type Response = http::Response<IdleBody>;

/// How long an idle pooled connection is kept open.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Which servers a backend trusts on `https://` URLs.
///
/// By default the Mozilla root store built into the binary (the same set
/// browsers ship); `ca_file` and `ca_pem` add a private CA, and turning
/// `builtin_roots` off trusts only those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsOptions {
    /// Trust the built-in Mozilla roots. Default true.
    pub builtin_roots: bool,
    /// A PEM file of CA certificates to trust as well, read once when the
    /// backend is built.
    pub ca_file: Option<PathBuf>,
    /// PEM text of CA certificates to trust as well.
    pub ca_pem: Option<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            builtin_roots: true,
            ca_file: None,
            ca_pem: None,
        }
    }
}

impl TlsOptions {
    /// Checks that some root is trusted; the PEMs themselves are checked
    /// when a backend is built.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the built-in roots are off and no CA
    /// is given.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.builtin_roots && self.ca_file.is_none() && self.ca_pem.is_none() {
            let reason = "builtin_roots is off and no ca_file or ca_pem is given";
            return Err(invalid("tls", reason.into()));
        }
        Ok(())
    }

    /// Builds the set of trusted roots.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when `ca_file` cannot be read, a PEM holds
    /// no certificate or a bad one, or no root is left to trust.
    fn roots(&self) -> Result<RootCertStore, Error> {
        let mut roots = RootCertStore::empty();
        if self.builtin_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                invalid(
                    "tls.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            add_pem(&mut roots, &pem, "tls.ca_file")?;
        }
        if let Some(pem) = &self.ca_pem {
            add_pem(&mut roots, pem.as_bytes(), "tls.ca_pem")?;
        }
        self.validate()?;
        Ok(roots)
    }

    fn client_config(&self) -> Result<rustls::ClientConfig, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("tls", e.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_no_client_auth();
        Ok(config)
    }
}

fn add_pem(roots: &mut RootCertStore, pem: &[u8], option: &'static str) -> Result<(), Error> {
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| invalid(option, format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(option, format!("bad CA certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(invalid(option, "holds no PEM certificate".into()));
    }
    Ok(())
}

fn invalid(option: &'static str, reason: String) -> Error {
    Error::InvalidOption { option, reason }
}

/// A pooled HTTP/1.1 client for `http://` and `https://` URLs; cheap to
/// clone, and clones share connections.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: Client<HttpsConnector<HttpConnector>, RequestBody>,
    read_idle: Duration,
}

impl Transport {
    /// Builds a client that gives up connecting after `connect` and
    /// reading a body after `read_idle` without a byte.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the TLS options do not hold.
    pub(crate) fn new(
        connect: Duration,
        read_idle: Duration,
        tls: &TlsOptions,
    ) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.client_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(https);
        Ok(Transport { client, read_idle })
    }

    /// Sends `request` and returns the response once its headers arrive.
    ///
    /// # Errors
    ///
    /// A [`TransportError`] when no response arrives: the connection
    /// failed or the exchange broke.
    pub(crate) async fn send(
        &self,
        request: http::Request<RequestBody>,
    ) -> Result<Response, TransportError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| match tls_failure(&e) {
                Some(reason) => TransportError::Tls(reason),
                None if e.is_connect() => TransportError::Connect(Box::new(e)),
                None => TransportError::Exchange(Box::new(e)),
            })?;
        Ok(response.map(|body| IdleBody::new(body, self.read_idle)))
    }

    /// Returns the bytes of a response body as they arrive.
    pub(crate) fn body_stream(
        &self,
        response: Response,
    ) -> impl Stream<Item = Result<Bytes, TransportError>> + Send + 'static {
        response.into_body().into_data_stream()
    }

    /// Reads a whole response body of at most `limit` bytes.
    ///
    /// # Errors
    ///
    /// A [`TransportError`] when the body fails, stalls or is larger.
    pub(crate) async fn read_body(
        &self,
        response: Response,
        limit: u64,
    ) -> Result<Bytes, TransportError> {
        let mut body = Box::pin(self.body_stream(response));
        let mut data = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if (data.len() + chunk.len()) as u64 > limit {
                return Err(TransportError::TooLarge(limit));
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(data))
    }
}

/// A response body that fails once no bytes arrive for its idle timeout
/// while it is being read, so a server that stops sending cannot hold a
/// download forever; a reader that pauses (a throttled one) is not the
/// server's silence, so the clock runs only while a read waits.
#[derive(Debug)]
pub(crate) struct IdleBody {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// A read is waiting and the timer runs for it.
    waiting: bool,
    timed_out: bool,
}

impl IdleBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        IdleBody {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
            timed_out: false,
        }
    }
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = TransportError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TransportError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            let frame = frame.map(|f| f.map_err(|e| TransportError::Exchange(Box::new(e))));
            return Poll::Ready(frame);
        }
        if !this.waiting {
            this.waiting = true;
            this.timer.as_mut().reset(Instant::now() + this.idle);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(TransportError::Idle(this.idle))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why an exchange with a server failed before a status could say why.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// The connection (TCP or TLS) could not be made.
    #[error("cannot connect")]
    Connect(#[source] BoxError),
    /// The connection broke or the server spoke something other than HTTP.
    #[error("request failed")]
    Exchange(#[source] BoxError),
    /// No body bytes came for this long.
    #[error("no data for {0:?}")]
    Idle(Duration),
    /// The body passed the size allowed.
    #[error("body larger than {0} bytes")]
    TooLarge(u64),
    /// The TLS handshake failed, most often on a certificate no trusted
    /// root vouches for.
    #[error("TLS handshake failed: {0}; set tls.ca_file or tls.ca_pem to trust a private CA")]
    Tls(String),
}

impl TransportError {
    /// Classifies the failure of operation `what`: a body too large is
    /// the server's answer and not worth repeating; every other failure is
    /// an outage a retry may get past.
    pub(crate) fn into_backend(self, what: &str) -> BackendError {
        let kind = match self {
            // An operator must change what the backend trusts or serves.
            TransportError::TooLarge(_) | TransportError::Tls(_) => BackendErrorKind::Other,
            TransportError::Connect(_) | TransportError::Exchange(_) | TransportError::Idle(_) => {
                BackendErrorKind::Unavailable
            }
        };
        BackendError::new(kind, format!("{what}: {self}")).with_source(self)
    }
}

/// Returns what rustls said when `e` is a failed TLS handshake.
///
/// rustls errors reach here wrapped in `io::Error`s, whose `source` skips
/// the error they wrap, so the walk steps into each one's wrapped error.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        let wrapped = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        next = match wrapped {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// Returns an empty request body.
pub(crate) fn empty() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Returns a request body of `data`.
pub(crate) fn full(data: Bytes) -> RequestBody {
    Full::new(data)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Returns a request body streamed from `chunks`.
pub(crate) fn streaming(
    chunks: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> RequestBody {
    let frames = chunks.map_ok(Frame::data).map_err(BoxError::from);
    StreamBody::new(frames).boxed_unsync()
}

/// Returns a body stream as a boxed stream of backend results for
/// operation `what`.
pub(crate) fn backend_stream(
    body: impl Stream<Item = Result<Bytes, TransportError>> + Send + 'static,
    what: String,
) -> BoxStream<'static, Result<Bytes, BackendError>> {
    body.map_err(move |e| e.into_backend(&what)).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_options_are_checked() {
        TlsOptions::default().validate().unwrap();
        let none = TlsOptions {
            builtin_roots: false,
            ..TlsOptions::default()
        };
        assert!(matches!(
            none.validate(),
            Err(Error::InvalidOption { option: "tls", .. })
        ));
        let junk = TlsOptions {
            ca_pem: Some("not a certificate".into()),
            ..TlsOptions::default()
        };
        match junk.roots() {
            Err(Error::InvalidOption { option, reason }) => {
                assert_eq!(option, "tls.ca_pem");
                assert!(reason.contains("no PEM certificate"), "{reason}");
            }
            other => panic!("expected InvalidOption, got {other:?}"),
        }
        let missing = TlsOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        match missing.roots() {
            Err(Error::InvalidOption { option, reason }) => {
                assert_eq!(option, "tls.ca_file");
                assert!(reason.contains("/nonexistent/ca.pem"), "{reason}");
            }
            other => panic!("expected InvalidOption, got {other:?}"),
        }
        let builtin = TlsOptions::default().roots().unwrap();
        assert!(builtin.len() > 100, "the Mozilla roots are built in");
    }
}
