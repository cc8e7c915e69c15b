//! The HTTP client under `object_store`: this crate's [`Transport`],
//! plugged in as an `HttpConnector` for every object-store backend.
//!
//! `object_store`'s own client is reqwest with its rustls features, which
//! would unify into every reqwest client of the workspace and bring
//! aws-lc-rs (cmake) or a process-wide crypto provider with them. The
//! transport speaks TLS on ring with the trust anchors of the backend's
//! options instead, and is shared by every object-store backend here.

use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};

use crate::Error;
use crate::transport::{TlsOptions, Transport, TransportError};

/// How long a response body may stall before the read fails; object
/// stores stream steadily, so a long silence means a dead connection.
const READ_IDLE: Duration = Duration::from_secs(60);

/// Connects `object_store` through one shared [`Transport`].
#[derive(Debug, Clone)]
pub(crate) struct Connector(Transport);

impl Connector {
    /// Builds the transport; it follows no redirects, as S3 clients must
    /// see a redirect to learn of a wrong region.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the TLS options do not hold.
    pub(crate) fn new(connect_timeout: Duration, tls: &TlsOptions) -> Result<Self, Error> {
        Ok(Connector(Transport::new(connect_timeout, READ_IDLE, tls)?))
    }
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Service(self.0.clone())))
    }
}

#[derive(Debug)]
struct Service(Transport);

#[async_trait]
impl HttpService for Service {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let body = body.map_err(Into::into).boxed_unsync();
        let outgoing = http::Request::from_parts(parts, body);
        let response = self.0.send(outgoing).await.map_err(http_error)?;
        let (parts, body) = response.into_parts();
        let body = body.map_err(http_error);
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
    }
}

/// Classifies a transport failure the way `object_store` decides retries:
/// connecting and a broken exchange are worth another try.
fn http_error(e: TransportError) -> HttpError {
    let kind = match &e {
        TransportError::Connect(_) => HttpErrorKind::Connect,
        // Not retried: the same certificate fails the same way.
        TransportError::Tls(_) => HttpErrorKind::Unknown,
        TransportError::Exchange(_) => HttpErrorKind::Request,
        TransportError::Idle(_) => HttpErrorKind::Timeout,
        // Only bodies read whole by this crate have a size limit.
        TransportError::TooLarge(_) => HttpErrorKind::Decode,
    };
    HttpError::new(kind, e)
}
