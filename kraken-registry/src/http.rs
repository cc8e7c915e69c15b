//! What every HTTP server of this crate shares: the distribution API
//! version header, one log line per failed request, and the escaping of
//! repository names in the URLs of build-index.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
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
