//! How HTTP answers become backend results, shared by every backend that
//! speaks HTTP itself (the file server and registry backends): the one
//! table from status to [`BackendErrorKind`], `Retry-After`, credentials
//! headers and the checks on ranged answers.

use std::time::{Duration, SystemTime};

use base64::Engine;
use futures::stream::{self, StreamExt};
use http::header::{CONTENT_RANGE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use kraken_core::{BackendError, BackendErrorKind, BackendStream};

/// Classifies an HTTP status that is not the success an operation expects.
///
/// This is the one place statuses become kinds, so every operation of
/// every HTTP backend answers the same way for the same status.
pub(crate) fn status_error(status: StatusCode, headers: &HeaderMap, what: &str) -> BackendError {
    let message = format!("{what}: server answered {status}");
    let kind = match status.as_u16() {
        // Absent. 410 is absence the server is sure of.
        404 | 410 => BackendErrorKind::NotFound,
        // Missing or wrong credentials: retrying with the same ones cannot
        // help.
        401 => BackendErrorKind::Unauthorized,
        // The server knows who we are and refuses anyway; an operator must
        // grant access, so this stays apart from 401.
        403 => BackendErrorKind::Forbidden,
        // The server asks us to slow down, maybe saying for how long.
        429 => BackendErrorKind::RateLimited,
        // The server gave up waiting for our request; a retry may fit.
        408 => BackendErrorKind::Unavailable,
        // The server or something in front of it failed: 500, 502, 503,
        // 504 and the rest are all worth another try later.
        500..=599 => BackendErrorKind::Unavailable,
        // Every other 4xx says the request itself is wrong (405 method not
        // allowed, 413 too large, 416 outside the object where a range was
        // not expected), which a retry repeats.
        400..=499 => BackendErrorKind::Other,
        // Redirects not followed and informational or unexpected success
        // statuses are protocol surprises.
        _ => BackendErrorKind::Other,
    };
    let error = BackendError::new(kind, message);
    match retry_after(headers) {
        Some(wait) if kind.is_retryable() => error.with_retry_after(wait),
        _ => error,
    }
}

/// Parses `Retry-After` as seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

/// Returns an `Authorization` value for basic credentials, marked
/// sensitive so it never shows in logs of the HTTP stack.
pub(crate) fn basic_auth(username: &str, password: &str) -> HeaderValue {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    sensitive(&format!("Basic {encoded}"))
}

/// Returns an `Authorization` value for a bearer token.
pub(crate) fn bearer_auth(token: &str) -> HeaderValue {
    sensitive(&format!("Bearer {token}"))
}

fn sensitive(value: &str) -> HeaderValue {
    // Credentials with bytes a header cannot hold are sent as nothing,
    // and the server's 401 says so.
    let mut value = HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

/// Checks a 206 answer starts where we asked; a server that sends another
/// slice would hand the caller the wrong bytes.
pub(crate) fn check_content_range(
    headers: &HeaderMap,
    start: u64,
    what: &str,
) -> Result<(), BackendError> {
    let given = headers
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse::<u64>().ok());
    if given == Some(start) {
        return Ok(());
    }
    let message = format!("{what}: partial content does not start at byte {start}");
    Err(BackendError::new(BackendErrorKind::Other, message))
}

/// Drops the first `skip` bytes of `body` and ends it after `take` more.
pub(crate) fn slice(body: BackendStream, skip: u64, take: u64) -> BackendStream {
    stream::unfold(
        (body, skip, take),
        |(mut body, mut skip, mut take)| async move {
            while take > 0 {
                let mut chunk = match body.next().await? {
                    Ok(chunk) => chunk,
                    Err(e) => return Some((Err(e), (body, 0, 0))),
                };
                let dropped = skip.min(chunk.len() as u64);
                skip -= dropped;
                let _ = chunk.split_to(dropped as usize);
                chunk.truncate(take.min(chunk.len() as u64) as usize);
                take -= chunk.len() as u64;
                if !chunk.is_empty() {
                    return Some((Ok(chunk), (body, skip, take)));
                }
            }
            None
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        let kind = |code: u16| {
            let status = StatusCode::from_u16(code).unwrap();
            status_error(status, &headers, "op")
        };
        assert_eq!(kind(404).kind(), BackendErrorKind::NotFound);
        assert_eq!(kind(401).kind(), BackendErrorKind::Unauthorized);
        assert_eq!(kind(403).kind(), BackendErrorKind::Forbidden);
        assert!(!kind(403).is_retryable());
        assert_eq!(kind(429).kind(), BackendErrorKind::RateLimited);
        assert_eq!(kind(429).retry_after(), Some(Duration::from_secs(7)));
        for code in [500, 502, 503, 504] {
            assert_eq!(kind(code).kind(), BackendErrorKind::Unavailable);
            assert!(kind(code).is_retryable());
        }
        assert_eq!(kind(400).kind(), BackendErrorKind::Other);
        assert!(!kind(400).is_retryable());
        assert_eq!(kind(405).kind(), BackendErrorKind::Other);
        assert_eq!(kind(401).retry_after(), None, "only retryable kinds wait");
    }

    #[test]
    fn retry_after_takes_dates() {
        let mut headers = HeaderMap::new();
        let later = SystemTime::now() + Duration::from_secs(120);
        let date = httpdate::fmt_http_date(later);
        headers.insert(RETRY_AFTER, date.parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
    }

    #[test]
    fn basic_credentials_are_encoded_and_sensitive() {
        let value = basic_auth("Aladdin", "open sesame");
        assert_eq!(value, "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(value.is_sensitive());
        assert!(bearer_auth("t").is_sensitive());
    }
}
