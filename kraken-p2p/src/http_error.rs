//! How every HTTP API of this crate (tracker, agent) reports a failure: one
//! table from [`Error`] to a status, one JSON body, one log line per failed
//! request.
//!
//! Responses do not log. They carry a marker that one middleware logs once
//! per request, so an error is neither lost nor reported at every layer it
//! passes through.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kraken_core::{BackendErrorKind, Error};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

/// The JSON body of every failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for people and logs.
    pub error: String,
}

/// Returns the status that tells a client what `error` means for it.
///
/// Malformed input is the client's fault (400); a blob nobody has is 404;
/// anything that may succeed later because an origin, backend or peer is
/// unreachable or busy is 503; a timeout is 504; an inconsistent answer
/// from upstream (bad metainfo, bytes of another blob) is 502. Variants an
/// API never produces still get the status they would have anywhere else,
/// so the table stays total.
pub fn status_for(error: &Error) -> StatusCode {
    match error {
        Error::Digest(_) | Error::Namespace(_) | Error::PieceOutOfRange { .. } => {
            StatusCode::BAD_REQUEST
        }
        Error::NotFound(_) | Error::UploadNotFound(_) | Error::PieceMissing { .. } => {
            StatusCode::NOT_FOUND
        }
        Error::Backend(e) if e.kind() == BackendErrorKind::NotFound => StatusCode::NOT_FOUND,
        Error::RangeNotSatisfiable { .. } | Error::UploadOffset { .. } => {
            StatusCode::RANGE_NOT_SATISFIABLE
        }
        Error::Unavailable(_) | Error::Cancelled | Error::Backend(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Error::StoreFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        Error::Incomplete { .. } | Error::MetaInfoConflict(_) | Error::Pinned(_) => {
            StatusCode::CONFLICT
        }
        // Every byte is verified, so nothing wrong was served; the fault is
        // upstream.
        Error::MetaInfo(_) | Error::DigestMismatch { .. } | Error::PieceMismatch { .. } => {
            StatusCode::BAD_GATEWAY
        }
        Error::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        // `Error` is `#[non_exhaustive]`, so another crate needs this arm; a
        // variant added later answers 500 until it gets its own arm above.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The message of a failed request, for [`log_failures`].
#[derive(Debug, Clone)]
struct Failure(String);

/// Builds a failure response: the JSON body, `Retry-After` on a 503, and
/// the marker [`log_failures`] logs.
pub(crate) fn error_response(status: StatusCode, message: String) -> Response {
    let body = ErrorBody {
        error: message.clone(),
    };
    let mut response = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let retry = HeaderValue::from_static(RETRY_AFTER_SECS);
        response.headers_mut().insert(header::RETRY_AFTER, retry);
    }
    response.extensions_mut().insert(Failure(message));
    response
}

/// Runs each request in a span and logs each failure once: server-side
/// failures at `warn`, client mistakes at `debug`.
pub(crate) async fn log_failures(request: Request, next: Next) -> Response {
    let span = tracing::debug_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
    );
    let response = next.run(request).instrument(span.clone()).await;
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

#[cfg(test)]
mod tests {
    use kraken_core::{BackendError, Digest};

    use super::*;

    #[test]
    fn statuses_follow_what_a_client_can_do() {
        let digest = Digest::sha256_of(b"x");
        let range = Error::RangeNotSatisfiable {
            start: 9,
            end: 10,
            length: 5,
        };
        let down = BackendError::new(BackendErrorKind::Unavailable, "down");
        let cases = [
            (Error::NotFound(digest), 404),
            (Error::Unavailable(digest), 503),
            (Error::Backend(BackendError::not_found("gone")), 404),
            (Error::Backend(down), 503),
            (range, 416),
            (Error::Timeout("no piece".into()), 504),
            (
                Error::DigestMismatch {
                    expected: digest,
                    actual: digest,
                },
                502,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(status_for(&error).as_u16(), status, "{error}");
        }
        let bad: Result<Digest, _> = "sha256:XYZ".parse();
        assert_eq!(
            status_for(&Error::from(bad.unwrap_err())),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn unavailable_answers_say_when_to_retry() {
        let response = error_response(StatusCode::SERVICE_UNAVAILABLE, "busy".into());
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
        let response = error_response(StatusCode::NOT_FOUND, "gone".into());
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }
}
