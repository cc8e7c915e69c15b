//! The HTTP client under `object_store`: the workspace's reqwest, plugged in
//! as an `HttpConnector`.
//!
//! `object_store`'s own reqwest client comes only with reqwest's rustls
//! features, which would unify into every reqwest client of the workspace
//! and make each one need a process-wide crypto provider (or aws-lc-rs,
//! which needs cmake). This adapter keeps the workspace's reqwest as it is:
//! plain HTTP until the workspace adopts TLS for reqwest.

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::BodyExt;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService,
};

/// Connects `object_store` through one shared reqwest client.
#[derive(Debug, Clone)]
pub(super) struct Connector(reqwest::Client);

impl Connector {
    /// Builds the client; redirects are not followed, as S3 clients must
    /// see a redirect to learn of a wrong region.
    pub(super) fn new(connect_timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Connector(client))
    }
}

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Service(self.0.clone())))
    }
}

#[derive(Debug)]
struct Service(reqwest::Client);

#[async_trait]
impl HttpService for Service {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts
            .uri
            .to_string()
            .parse()
            .map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
        let mut outgoing = reqwest::Request::new(parts.method, url);
        *outgoing.headers_mut() = parts.headers;
        *outgoing.body_mut() = Some(reqwest::Body::wrap(body));

        let response = self.0.execute(outgoing).await.map_err(http_error)?;
        let (status, version) = (response.status(), response.version());
        let headers = response.headers().clone();
        let body = reqwest::Body::from(response).map_err(http_error);
        let mut incoming = HttpResponse::new(HttpResponseBody::new(body));
        *incoming.status_mut() = status;
        *incoming.version_mut() = version;
        *incoming.headers_mut() = headers;
        Ok(incoming)
    }
}

/// Classifies a reqwest failure the way `object_store` decides retries:
/// connecting, timing out and a broken exchange are worth another try; a
/// request that could not be built is not.
fn http_error(e: reqwest::Error) -> HttpError {
    let kind = if e.is_timeout() {
        HttpErrorKind::Timeout
    } else if e.is_connect() {
        HttpErrorKind::Connect
    } else if e.is_decode() {
        HttpErrorKind::Decode
    } else if e.is_builder() {
        HttpErrorKind::Unknown
    } else if e.is_body() || e.is_request() {
        HttpErrorKind::Request
    } else if e.source().is_some() {
        HttpErrorKind::Interrupted
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, e)
}
