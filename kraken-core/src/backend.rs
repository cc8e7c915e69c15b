//! The `Backend` trait: the remote source of truth behind origins and
//! build-index.
//!
//! A backend stores opaque objects keyed by a [`Namespace`] and a name: the
//! digest string for blobs, `repo:tag` for tags. Implementations treat the
//! name as opaque bytes and escape it for their medium; they never let it
//! choose a path outside their root.
//!
//! Failures are [`BackendError`]s carrying a small [`BackendErrorKind`] and
//! whether retrying can help, so callers decide between 404, 503 and a retry
//! without knowing which backend answered.

use std::fmt;
use std::io;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::Namespace;

/// The bytes of a download from a backend.
pub type BackendStream = BoxStream<'static, Result<Bytes, BackendError>>;

/// The bytes of an upload to a backend.
pub type UploadBody = BoxStream<'static, io::Result<Bytes>>;

/// The longest object name a backend must accept, in bytes.
pub const MAX_OBJECT_NAME_LEN: usize = 1024;

/// What a backend can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// `upload` is supported; false for read-only sources such as an
    /// upstream registry.
    pub write: bool,
    /// `list` is supported.
    pub list: bool,
}

/// What a backend knows of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    /// The object's size in bytes.
    pub size: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ListPage {
    /// Object names in this page, in the backend's order.
    pub names: Vec<String>,
    /// Pass this to `list` to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The remote source of truth for blobs and tags.
///
/// Object-safe and shared as `Arc<dyn Backend>`; every method may be called
/// concurrently. The `testkit` feature's `backend_suite` checks any
/// implementation against the contracts below.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// Returns a short name of the backend's kind, such as `fs` or `s3`, for
    /// logs and metrics.
    fn kind(&self) -> &'static str;

    /// Returns what this backend supports.
    fn capabilities(&self) -> Capabilities;

    /// Returns an object's size.
    ///
    /// # Errors
    ///
    /// `NotFound` when absent; any other kind when the backend cannot tell,
    /// which callers must not mistake for absence.
    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError>;

    /// Streams an object's bytes: all of them, or `range` (both ends clamped
    /// to the object's end, so an empty range or one starting past the end
    /// yields no bytes).
    ///
    /// The stream may fail midway; callers verify what they receive.
    ///
    /// # Errors
    ///
    /// `NotFound` when absent.
    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError>;

    /// Stores an object of `length` bytes read from `body`, replacing any
    /// object of that name atomically: readers see the old or the new
    /// object, never a mix or a prefix.
    ///
    /// # Errors
    ///
    /// `Unsupported` on a read-only backend; `Corrupt` when `body` yields
    /// other than `length` bytes, in which case nothing is stored.
    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError>;

    /// Lists the names in `namespace` that start with `prefix`, at most
    /// `limit` per page, continuing after `page` (a token from a previous
    /// call). Every name appears in exactly one page.
    ///
    /// # Errors
    ///
    /// `Unsupported` when the backend cannot list.
    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError>;
}

/// Checks an object name against the rules every backend relies on: not
/// empty, at most [`MAX_OBJECT_NAME_LEN`] bytes, no control characters.
///
/// # Errors
///
/// An `Other` error naming the rule broken.
pub fn validate_object_name(name: &str) -> Result<(), BackendError> {
    if name.is_empty() || name.len() > MAX_OBJECT_NAME_LEN {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "object name length out of range",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(BackendError::new(
            BackendErrorKind::Other,
            "object name has control chars",
        ));
    }
    Ok(())
}

/// The kinds of backend failure callers act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendErrorKind {
    /// The object does not exist.
    NotFound,
    /// Credentials are missing or wrong (HTTP 401).
    Unauthorized,
    /// The credentials were accepted but lack permission for the object
    /// (HTTP 403); an operator must grant access, so it is never retried.
    Forbidden,
    /// The backend asked us to slow down.
    RateLimited,
    /// The backend cannot be reached or failed on its side.
    Unavailable,
    /// The backend returned bytes that are not what was stored.
    Corrupt,
    /// The operation is not supported by this backend.
    Unsupported,
    /// Anything else, including bad input.
    Other,
}

impl BackendErrorKind {
    /// Returns whether a failure of this kind is worth retrying by default.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            BackendErrorKind::RateLimited | BackendErrorKind::Unavailable
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            BackendErrorKind::NotFound => "not found",
            BackendErrorKind::Unauthorized => "unauthorized",
            BackendErrorKind::Forbidden => "forbidden",
            BackendErrorKind::RateLimited => "rate limited",
            BackendErrorKind::Unavailable => "unavailable",
            BackendErrorKind::Corrupt => "corrupt",
            BackendErrorKind::Unsupported => "unsupported",
            BackendErrorKind::Other => "error",
        }
    }
}

impl fmt::Display for BackendErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend failure: its kind, whether a retry can help, and context.
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    retryable: bool,
    retry_after: Option<Duration>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl BackendError {
    /// Creates an error of `kind`, retryable when the kind usually is.
    pub fn new(kind: BackendErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            retryable: kind.is_retryable(),
            retry_after: None,
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for a `NotFound` error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::NotFound, message)
    }

    /// Shorthand for an `Unavailable` error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Unavailable, message)
    }

    /// Shorthand for an `Unsupported` error.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(BackendErrorKind::Unsupported, message)
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides whether a retry can help.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Records how long the backend asked us to wait before retrying.
    pub fn with_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Returns the kind.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// Returns whether a retry can help.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// Returns how long the backend asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Returns true for `NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.kind == BackendErrorKind::NotFound
    }

    /// Returns the message, without kind or source.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backend {}: {}", self.kind, self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<io::Error> for BackendError {
    /// Classifies a filesystem error: missing files are `NotFound`,
    /// permission problems `Forbidden`, the rest `Unavailable`.
    fn from(e: io::Error) -> Self {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => BackendErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => BackendErrorKind::Forbidden,
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => BackendErrorKind::Corrupt,
            _ => BackendErrorKind::Unavailable,
        };
        BackendError::new(kind, e.to_string()).with_source(e)
    }
}
