//! Blob reads: `HEAD` and `GET /v2/<name>/blobs/<digest>`, with `Range`.
//!
//! A single range is honoured with 206; a range that starts past the end,
//! or one that does not parse (`bytes=500-0`), is 416 with
//! `Content-Range: bytes */<length>`; several ranges at once are answered
//! with the whole blob (200), which clients that ask for them accept.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::TryStreamExt;
use kraken_core::{BlobStream, ByteRange, Digest, RangeError};

use super::{Query, Registry, namespaces};
use crate::error::{Error, ErrorCode, Result, Subject};
use crate::reference::RepoName;

pub(super) async fn get(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    query: &Query,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let range = requested(headers)?;
    if head {
        let size = with_namespaces(repo, query, |ns| async move {
            registry.blobs.size(&ns, digest).await
        })
        .await?;
        return Ok(head_response(digest, size));
    }
    let stream = with_namespaces(repo, query, |ns| async move {
        registry.blobs.stream(&ns, digest, range).await
    })
    .await?;
    Ok(body_response(
        digest,
        stream,
        !matches!(range, ByteRange::Full),
    ))
}

/// Tries the repository's namespace, then the pull-through one of `?ns=`,
/// moving on only when the first does not have the blob.
async fn with_namespaces<T, F, Fut>(repo: &RepoName, query: &Query, mut op: F) -> Result<T>
where
    F: FnMut(kraken_core::Namespace) -> Fut,
    Fut: std::future::Future<Output = kraken_core::Result<T>>,
{
    let mut last = None;
    for namespace in namespaces(repo, query.ns.as_deref()) {
        match op(namespace).await {
            Ok(value) => return Ok(value),
            Err(e @ kraken_core::Error::NotFound(_)) => last = Some(e),
            Err(e) => return Err(blob_error(&e)),
        }
    }
    let e = last.expect("there is always the repository's own namespace");
    Err(blob_error(&e))
}

fn blob_error(e: &kraken_core::Error) -> Error {
    Error::from_core(Subject::Blob, e)
}

/// The range a GET asks for: see the module docs.
fn requested(headers: &HeaderMap) -> Result<ByteRange> {
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(ByteRange::Full);
    };
    let text = value
        .to_str()
        .map_err(|_| unsatisfiable("Range header is not text"))?
        .to_ascii_lowercase();
    match ByteRange::parse_header(&text) {
        Ok(range) => Ok(range),
        Err(RangeError::Multiple) => Ok(ByteRange::Full),
        Err(RangeError::Malformed) => Err(unsatisfiable(&format!(
            "Range {text:?} is not bytes=<start>-<end> with start <= end"
        ))),
    }
}

fn unsatisfiable(message: &str) -> Error {
    Error::new(ErrorCode::RangeInvalid, message)
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("digests and numbers are valid header values")
}

fn blob_headers(headers: &mut HeaderMap, digest: &Digest) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert("docker-content-digest", value(&digest.to_string()));
    headers.insert(header::ETAG, value(&format!("\"{digest}\"")));
}

fn head_response(digest: &Digest, size: u64) -> Response {
    let mut response = Response::new(Body::empty());
    blob_headers(response.headers_mut(), digest);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    response
}

/// Streams the bytes. A failure after the headers went out ends the body
/// short of its `Content-Length`, so the client sees a broken transfer,
/// never a blob it could take for whole.
fn body_response(digest: &Digest, stream: BlobStream, partial: bool) -> Response {
    let BlobStream {
        length,
        range,
        body,
    } = stream;
    let digest_field = *digest;
    let body = body.inspect_err(move |error| {
        tracing::warn!(digest = %digest_field, %error, "blob stream failed after the headers");
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    blob_headers(headers, digest);
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    if partial {
        let end = range.end.saturating_sub(1);
        headers.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {}-{end}/{length}", range.start)),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(range: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
        h
    }

    #[test]
    fn ranges_follow_the_conformance_suite() {
        assert_eq!(requested(&HeaderMap::new()).unwrap(), ByteRange::Full);
        assert_eq!(
            requested(&with("bytes=500-1499")).unwrap(),
            ByteRange::Inclusive {
                start: 500,
                end: 1499
            }
        );
        assert_eq!(
            requested(&with("Bytes=-500")).unwrap(),
            ByteRange::Suffix(500)
        );
        assert_eq!(requested(&with("bytes=0-1,5-6")).unwrap(), ByteRange::Full);
        let bad = requested(&with("bytes=500-0")).unwrap_err();
        assert_eq!(bad.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert!(requested(&with("items=1-2")).is_err());
    }
}
