//! Registry errors: an OCI error code, the HTTP status it goes with, and a
//! message, answered as the distribution spec's JSON body.
//!
//! Every failure of the registry APIs ends here. [`ErrorCode::status`] is
//! the one table from code to status; [`Error::from_core`] the one place a
//! failure of the layers below (store, origins, build-index, swarm) becomes
//! a code, given what the request was about. Responses do not log; the
//! middleware of [`crate::http`] logs each failure once.

use std::fmt;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kraken_core::{BackendErrorKind, Digest};
use serde::Serialize;

use crate::manifest::ManifestError;
use crate::reference::ReferenceError;

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error codes of the OCI distribution spec, and two that registries
/// commonly add for failures on their side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The blob is unknown to the registry.
    BlobUnknown,
    /// The upload is invalid (for instance a chunk that breaks off).
    BlobUploadInvalid,
    /// The upload session is unknown or expired.
    BlobUploadUnknown,
    /// A digest is malformed or does not match the content.
    DigestInvalid,
    /// A manifest refers to content the registry does not have.
    ManifestBlobUnknown,
    /// A manifest is malformed.
    ManifestInvalid,
    /// The manifest or tag is unknown.
    ManifestUnknown,
    /// The repository name is malformed.
    NameInvalid,
    /// The repository is unknown.
    NameUnknown,
    /// A length does not match the content, or content is over a limit.
    SizeInvalid,
    /// Authentication is required.
    Unauthorized,
    /// The caller may not do this.
    Denied,
    /// The operation is not supported here.
    Unsupported,
    /// Too many requests; retry later.
    TooManyRequests,
    /// A byte range outside the blob.
    RangeInvalid,
    /// A page size (`n`) that is not a number.
    PaginationNumberInvalid,
    /// A component the registry needs is unreachable or busy; retry later.
    Unavailable,
    /// An internal failure.
    Unknown,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
        ErrorCode::RangeInvalid,
        ErrorCode::PaginationNumberInvalid,
        ErrorCode::Unavailable,
        ErrorCode::Unknown,
    ];

    /// The code spelled `s` in a JSON body, if it is one.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The code as the JSON body spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request was about, which decides the code of a "not found".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// A blob.
    Blob,
    /// A manifest or tag.
    Manifest,
    /// An upload session.
    Upload,
}

/// A failed registry request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    code: ErrorCode,
    message: String,
    /// A status other than the code's usual one (413 for a manifest over
    /// the size limit), when the spec asks for it.
    status: Option<StatusCode>,
    detail: Option<serde_json::Value>,
    retry_after: Option<u64>,
    headers: Vec<(&'static str, String)>,
}

impl Error {
    /// An error with `code` and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            status: None,
            detail: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Adds the spec's free-form `detail`.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Error {
        self.detail = Some(detail);
        self
    }

    /// Answers with `status` instead of the code's usual one.
    pub fn with_status(mut self, status: StatusCode) -> Error {
        self.status = Some(status);
        self
    }

    /// Asks the client to wait `seconds` before retrying.
    pub fn with_retry_after(mut self, seconds: u64) -> Error {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds a response header (`Content-Range` of a 416, say).
    pub fn with_header(mut self, name: &'static str, value: String) -> Error {
        self.headers.push((name, value));
        self
    }

    /// The error's code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or_else(|| self.code.status())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The blob or manifest `digest` is unknown.
    pub fn unknown(subject: Subject, digest: &Digest) -> Error {
        let (code, what) = match subject {
            Subject::Blob => (ErrorCode::BlobUnknown, "blob unknown to registry"),
            Subject::Manifest => (ErrorCode::ManifestUnknown, "manifest unknown"),
            Subject::Upload => (ErrorCode::BlobUploadUnknown, "upload unknown"),
        };
        Error::new(code, what).with_detail(serde_json::json!({ "digest": digest.to_string() }))
    }

    /// Turns a failure of the layers below into a registry error, for a
    /// request about `subject`.
    pub fn from_core(subject: Subject, error: &kraken_core::Error) -> Error {
        use kraken_core::Error as E;
        let message = error.to_string();
        let code = match error {
            E::Digest(_) => ErrorCode::DigestInvalid,
            E::Namespace(_) => ErrorCode::NameInvalid,
            E::NotFound(digest) => return Error::unknown(subject, digest),
            E::UploadNotFound(_) => ErrorCode::BlobUploadUnknown,
            E::RangeNotSatisfiable { length, .. } => {
                return Error::new(ErrorCode::RangeInvalid, message)
                    .with_header("content-range", format!("bytes */{length}"));
            }
            E::UploadOffset { .. } => ErrorCode::RangeInvalid,
            E::DigestMismatch { .. } => ErrorCode::DigestInvalid,
            E::Backend(e) => {
                return Error::from_backend(subject, e.kind(), message, e.retry_after());
            }
            E::Unavailable(_) | E::Cancelled | E::Timeout(_) => ErrorCode::Unavailable,
            E::StoreFull { .. } => ErrorCode::Unavailable,
            // Verified content from upstream that did not add up: the
            // client can only retry.
            E::MetaInfo(_) | E::PieceMismatch { .. } | E::MetaInfoConflict(_) => {
                ErrorCode::Unavailable
            }
            E::PieceOutOfRange { .. } | E::PieceMissing { .. } | E::Incomplete { .. } => {
                ErrorCode::Unknown
            }
            E::Pinned(_) => ErrorCode::Denied,
            E::Io(_) => ErrorCode::Unknown,
            // `kraken_core::Error` is `#[non_exhaustive]`; a variant added
            // later is an internal error until it gets its own arm above.
            _ => ErrorCode::Unknown,
        };
        let error = Error::new(code, message);
        if code == ErrorCode::Unavailable {
            error.with_retry_after(1)
        } else {
            error
        }
    }

    fn from_backend(
        subject: Subject,
        kind: BackendErrorKind,
        message: String,
        retry_after: Option<std::time::Duration>,
    ) -> Error {
        let code = match kind {
            BackendErrorKind::NotFound => match subject {
                Subject::Blob => ErrorCode::BlobUnknown,
                Subject::Manifest => ErrorCode::ManifestUnknown,
                Subject::Upload => ErrorCode::BlobUploadUnknown,
            },
            // The cluster's own credentials to its backend were refused:
            // the client cannot fix that, but retrying will not help either.
            BackendErrorKind::Unauthorized | BackendErrorKind::Forbidden => ErrorCode::Denied,
            BackendErrorKind::RateLimited => ErrorCode::TooManyRequests,
            BackendErrorKind::Unavailable => ErrorCode::Unavailable,
            BackendErrorKind::Corrupt => ErrorCode::Unavailable,
            BackendErrorKind::Unsupported => ErrorCode::Unsupported,
            BackendErrorKind::Other => ErrorCode::Unknown,
        };
        let error = Error::new(code, message);
        match (code, retry_after) {
            (ErrorCode::TooManyRequests | ErrorCode::Unavailable, Some(after)) => {
                error.with_retry_after(after.as_secs().max(1))
            }
            (ErrorCode::TooManyRequests | ErrorCode::Unavailable, None) => {
                error.with_retry_after(1)
            }
            _ => error,
        }
    }
}

impl From<ReferenceError> for Error {
    fn from(error: ReferenceError) -> Error {
        let code = match &error {
            ReferenceError::Name { .. } => ErrorCode::NameInvalid,
            ReferenceError::Tag { .. } => ErrorCode::ManifestInvalid,
            ReferenceError::Reference { .. } => ErrorCode::DigestInvalid,
        };
        Error::new(code, error.to_string())
    }
}

impl From<ManifestError> for Error {
    fn from(error: ManifestError) -> Error {
        Error::new(ErrorCode::ManifestInvalid, error.to_string())
    }
}

/// The JSON body of a failed request, as the spec defines it.
#[derive(Debug, Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Debug, Serialize)]
struct Entry<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

/// Marks a failed response for the logging middleware.
#[derive(Debug, Clone)]
pub(crate) struct Failure(pub(crate) String);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = Body {
            errors: [Entry {
                code: self.code.as_str(),
                message: &self.message,
                detail: self.detail.as_ref(),
            }],
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(after) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after));
        }
        for (name, value) in &self.headers {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.insert(*name, value);
            }
        }
        response.extensions_mut().insert(Failure(self.to_string()));
        response
    }
}

#[cfg(test)]
mod tests {
    use kraken_core::BackendError;

    use super::*;

    #[test]
    fn not_found_depends_on_the_subject() {
        let digest = Digest::sha256_of(b"x");
        let nf = kraken_core::Error::NotFound(digest);
        assert_eq!(
            Error::from_core(Subject::Blob, &nf).code(),
            ErrorCode::BlobUnknown
        );
        assert_eq!(
            Error::from_core(Subject::Manifest, &nf).code(),
            ErrorCode::ManifestUnknown
        );
        let backend = kraken_core::Error::Backend(BackendError::not_found("gone"));
        assert_eq!(
            Error::from_core(Subject::Manifest, &backend).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn failures_upstream_are_unavailable_with_a_retry_hint() {
        let down = kraken_core::Error::Unavailable(Digest::sha256_of(b"x"));
        let response = Error::from_core(Subject::Blob, &down).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let slow = kraken_core::Error::Backend(
            BackendError::new(BackendErrorKind::RateLimited, "slow down")
                .with_retry_after(std::time::Duration::from_secs(7)),
        );
        let error = Error::from_core(Subject::Blob, &slow);
        assert_eq!(error.code(), ErrorCode::TooManyRequests);
        assert_eq!(error.into_response().headers()[header::RETRY_AFTER], "7");
    }

    #[tokio::test]
    async fn the_body_is_the_spec_json() {
        let error = Error::unknown(Subject::Blob, &Digest::sha256_of(b"x"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN");
        assert!(body["errors"][0]["detail"]["digest"].is_string());
        let big = Error::new(ErrorCode::SizeInvalid, "too big")
            .with_status(StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.into_response().status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn every_code_has_a_spec_spelling_and_a_status() {
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{s}"
            );
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert_eq!(ErrorCode::parse(s), Some(code));
        }
        assert_eq!(ErrorCode::parse("NOT_A_CODE"), None);
    }
}
