//! Serving blobs over HTTP, shared by the agent and the origin: which
//! `Range` to honour, the headers of a blob, and a response around a
//! [`BlobStream`].
//!
//! A single `Range` is honoured: 206 with `Content-Range`, or 416 with
//! `Content-Range: bytes */<length>` when it starts past the end. A `Range`
//! header that does not parse (`bytes=5-3`), asks for several ranges, or
//! follows an `If-Range` that does not match the blob's `ETag` is ignored
//! and the whole blob is served with 200, one of the two choices RFC 9110
//! section 14.2 leaves to servers: a client that sent it can always use the
//! whole blob, and it cannot be served a part it did not ask for.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use kraken_core::{BlobStream, ByteRange, Digest, Namespace};

/// Returns the range a GET asks for, or the whole blob when the `Range`
/// header is absent or to be ignored (see the module docs).
pub(crate) fn requested_range(headers: &HeaderMap, etag: &str) -> ByteRange {
    let Some(value) = headers.get(header::RANGE) else {
        return ByteRange::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.as_bytes() != etag.as_bytes()
    {
        return ByteRange::Full;
    }
    let Ok(value) = value.to_str() else {
        return ByteRange::Full;
    };
    // Range units are case-insensitive; the parser expects `bytes=`.
    ByteRange::parse_header(&value.to_ascii_lowercase()).unwrap_or(ByteRange::Full)
}

/// Returns the strong entity tag of a blob: its digest never names other
/// bytes.
pub(crate) fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

pub(crate) fn blob_headers(headers: &mut HeaderMap, digest: &Digest) {
    let value = |s: String| HeaderValue::from_str(&s).expect("a digest is a valid header value");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("docker-content-digest", value(digest.to_string()));
    headers.insert(header::ETAG, value(etag(digest)));
}

/// Builds the response around a stream. A failure after the headers went
/// out ends the body early; the declared `Content-Length` then makes the
/// server abort the connection, so the client sees a truncated transfer
/// rather than a short blob it might take for whole.
pub(crate) fn blob_response(
    stream: BlobStream,
    namespace: &Namespace,
    digest: &Digest,
    partial: bool,
) -> Response {
    let BlobStream {
        length,
        range,
        body,
    } = stream;
    let (namespace, digest_field) = (namespace.clone(), *digest);
    let body = body.inspect_err(move |error| {
        tracing::warn!(
            %namespace,
            digest = %digest_field,
            %error,
            "blob stream failed after headers were sent; aborting response"
        );
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    blob_headers(headers, digest);
    headers.insert(header::CONTENT_LENGTH, (range.end - range.start).into());
    if partial {
        let content_range = format!("bytes {}-{}/{length}", range.start, range.end - 1);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).expect("digits are a valid header value"),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), HeaderValue::from_str(v).unwrap()))
            .collect()
    }

    #[test]
    fn ranges_that_cannot_be_honoured_are_ignored() {
        let tag = "\"sha256:ab\"";
        let range = |pairs| requested_range(&headers(pairs), tag);
        assert_eq!(range(&[]), ByteRange::Full);
        assert_eq!(range(&[(header::RANGE, "bytes=5-")]), ByteRange::From(5));
        assert_eq!(range(&[(header::RANGE, "Bytes=-3")]), ByteRange::Suffix(3));
        assert_eq!(range(&[(header::RANGE, "bytes=5-3")]), ByteRange::Full);
        assert_eq!(range(&[(header::RANGE, "bytes=0-1,4-5")]), ByteRange::Full);
        let matching = [(header::RANGE, "bytes=1-"), (header::IF_RANGE, tag)];
        assert_eq!(range(&matching), ByteRange::From(1));
        let stale = [(header::RANGE, "bytes=1-"), (header::IF_RANGE, "\"other\"")];
        assert_eq!(range(&stale), ByteRange::Full);
    }
}
