//! The agent's HTTP failures: its own (a malformed path, no route) and
//! those of the scheduler, answered through the crate's one table
//! ([`status_for`]) and JSON body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kraken_core::Error;

use crate::http_error::{error_response, status_for};

/// A failed request to the agent's HTTP API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The scheduler, store or input validation failed.
    #[error(transparent)]
    Core(#[from] Error),
    /// The path did not decode into a namespace and a digest.
    #[error("malformed path: {0}")]
    BadPath(String),
    /// No route matches the request path.
    #[error("no such route")]
    NoRoute,
    /// The route exists but not for this method; the agent is read-only.
    #[error("method not allowed: the agent serves GET and HEAD only")]
    MethodNotAllowed,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Core(error) => status_for(error),
            ApiError::BadPath(_) => StatusCode::BAD_REQUEST,
            ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status(), self.to_string());
        // RFC 9110 section 15.5.17: a 416 names the current length.
        if let ApiError::Core(Error::RangeNotSatisfiable { length, .. }) = &self {
            let value = HeaderValue::from_str(&format!("bytes */{length}"))
                .expect("digits and ascii are a valid header value");
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        response
    }
}
