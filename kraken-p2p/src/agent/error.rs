//! How the agent's HTTP API reports failures: each error kind maps to one
//! status in one `match`, and the body is always `{"error": "<message>"}`.
//!
//! Responses do not log. They carry a [`Failure`] extension that the
//! [`log_failures`] middleware logs once per request, so an error is
//! neither lost nor reported at every layer it passes through.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use kraken_core::{BackendErrorKind, Error};

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
            ApiError::Core(error) => status_of(error),
            ApiError::BadPath(_) => StatusCode::BAD_REQUEST,
            ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// Returns the HTTP status that tells a client what `error` means for it.
fn status_of(error: &Error) -> StatusCode {
    match error {
        // The client sent a name that cannot exist.
        Error::Digest(_) | Error::Namespace(_) => StatusCode::BAD_REQUEST,
        // The cluster does not have the blob; asking again will not help.
        Error::NotFound(_) | Error::UploadNotFound(_) => StatusCode::NOT_FOUND,
        Error::Backend(e) if e.kind() == BackendErrorKind::NotFound => StatusCode::NOT_FOUND,
        Error::RangeNotSatisfiable { .. } | Error::UploadOffset { .. } => {
            StatusCode::RANGE_NOT_SATISFIABLE
        }
        // The blob may exist but cannot be fetched now: worth a retry.
        Error::Unavailable(_) | Error::Cancelled | Error::Backend(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::StoreFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        Error::Pinned(_) | Error::MetaInfoConflict(_) => StatusCode::CONFLICT,
        // The tracker or the swarm handed over something inconsistent.
        // Every byte is verified, so nothing wrong was served; the fault is
        // upstream.
        Error::MetaInfo(_) | Error::DigestMismatch { .. } | Error::PieceMismatch { .. } => {
            StatusCode::BAD_GATEWAY
        }
        Error::PieceOutOfRange { .. }
        | Error::PieceMissing { .. }
        | Error::Incomplete { .. }
        | Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // `Error` is `#[non_exhaustive]`, so this crate needs an arm for
        // variants added later; a new variant should get its own arm above.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// The message of a failed request, for [`log_failures`].
#[derive(Debug, Clone)]
pub(crate) struct Failure(pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = self.to_string();
        let mut response = (
            status,
            Json(ErrorBody {
                error: message.clone(),
            }),
        )
            .into_response();
        // RFC 9110 section 15.5.17: a 416 names the current length.
        if let ApiError::Core(Error::RangeNotSatisfiable { length, .. }) = &self {
            let value = HeaderValue::from_str(&format!("bytes */{length}"))
                .expect("digits and ascii are a valid header value");
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        response.extensions_mut().insert(Failure(message));
        response
    }
}

/// Logs each failed request once: client errors at debug, server errors
/// at warn, since only those may need an operator.
pub(crate) async fn log_failures(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    if let Some(Failure(error)) = response.extensions().get::<Failure>() {
        let status = response.status().as_u16();
        if response.status().is_server_error() {
            tracing::warn!(%method, %path, status, %error, "request failed");
        } else {
            tracing::debug!(%method, %path, status, %error, "request failed");
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use kraken_core::{BackendError, Digest};

    use super::*;

    #[test]
    fn statuses_follow_what_a_client_can_do() {
        let digest = Digest::sha256_of(b"x");
        let cases = [
            (Error::NotFound(digest), 404),
            (Error::Unavailable(digest), 503),
            (Error::Backend(BackendError::not_found("gone")), 404),
            (
                Error::Backend(BackendError::new(BackendErrorKind::Unavailable, "down")),
                503,
            ),
            (
                Error::RangeNotSatisfiable {
                    start: 9,
                    end: 10,
                    length: 5,
                },
                416,
            ),
            (Error::Timeout("no piece".into()), 504),
        ];
        for (error, status) in cases {
            assert_eq!(status_of(&error).as_u16(), status, "{error}");
        }
        let bad: Result<Digest, _> = "sha256:XYZ".parse();
        let error = Error::from(bad.unwrap_err());
        assert_eq!(status_of(&error), StatusCode::BAD_REQUEST);
    }
}
