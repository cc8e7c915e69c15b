//! Manifest endpoints: `GET`, `HEAD`, `PUT` and `DELETE` of
//! `/v2/<name>/manifests/<reference>`.
//!
//! A tag resolves through build-index on every request, so a pull right
//! after a push sees the new digest. The bytes come from the blob source
//! verified against their digest and are served as stored, with the media
//! type they declare (or the one their shape implies). A push uploads the
//! exact bytes to the origins, then has build-index record them (after it
//! checked that their whole tree exists) and move the tags.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use kraken_core::{Algorithm, Digest};

use super::route::ManifestRef;
use super::{Query, Registry, namespaces};
use crate::error::{Error, ErrorCode, Result, Subject};
use crate::manifest::Manifest;
use crate::proxy::Writer;
use crate::reference::{Reference, RepoName, Tag};

pub(super) async fn get(
    registry: &Registry,
    repo: &RepoName,
    reference: ManifestRef,
    query: &Query,
    head: bool,
) -> Result<Response> {
    // A tag that breaks the grammar names nothing: 404, as clients expect.
    let ManifestRef::Valid(reference) = reference else {
        return Err(Error::new(ErrorCode::ManifestUnknown, "manifest unknown"));
    };
    let upstream = query.ns.as_deref();
    let digest = match &reference {
        Reference::Tag(tag) => registry.index.resolve(repo, tag, upstream).await?,
        Reference::Digest(digest) => *digest,
    };
    if registry.writer.is_some()
        && matches!(reference, Reference::Digest(_))
        && !registry.index.has_manifest(repo, &digest).await?
    {
        return Err(Error::unknown(Subject::Manifest, &digest));
    }
    let bytes = read(registry, repo, &digest, upstream).await?;
    let media_type = served_media_type(&bytes);
    let mut response = if head {
        let mut r = Response::new(Body::empty());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        r
    } else {
        Response::new(Body::from(bytes))
    };
    manifest_headers(response.headers_mut(), &digest, &media_type);
    Ok(response)
}

/// The media type a stored manifest is served with. Pushed manifests
/// parse; one pulled through from an upstream may not (a schema 1 image),
/// and is still served as it is, with the type it declares.
fn served_media_type(bytes: &[u8]) -> String {
    if let Ok(manifest) = Manifest::parse(bytes, None) {
        return manifest.media_type;
    }
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "application/octet-stream".to_owned())
}

/// Reads manifest bytes under the repository's namespace, then the
/// pull-through one.
async fn read(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    upstream: Option<&str>,
) -> Result<Bytes> {
    let mut last = None;
    for namespace in namespaces(repo, upstream) {
        match registry.blobs.read(&namespace, digest).await {
            Ok(bytes) => return Ok(bytes),
            Err(e @ kraken_core::Error::NotFound(_)) => last = Some(e),
            Err(e) => return Err(Error::from_core(Subject::Manifest, &e)),
        }
    }
    let e = last.expect("there is always the repository's own namespace");
    Err(Error::from_core(Subject::Manifest, &e))
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

fn manifest_headers(headers: &mut HeaderMap, digest: &Digest, media_type: &str) {
    headers.insert(header::CONTENT_TYPE, header_value(media_type));
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
}

pub(super) async fn put(
    registry: &Registry,
    writer: &Writer,
    repo: &RepoName,
    reference: ManifestRef,
    query: &Query,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let reference = match reference {
        ManifestRef::Valid(r) => r,
        ManifestRef::Invalid(e) => return Err(e),
    };
    let bytes = read_limited(body, registry.config.max_manifest_size.as_u64()).await?;
    let digest = digest_of(&reference, &bytes)?;
    let pushed_as = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let manifest = Manifest::parse(&bytes, pushed_as)?;
    let mut tags: Vec<Tag> = query
        .tag
        .iter()
        .map(|t| Tag::new(t.as_str()))
        .collect::<std::result::Result<_, _>>()?;
    if let Reference::Tag(tag) = &reference {
        tags.push(tag.clone());
    }
    writer.put_manifest(repo, &digest, bytes).await?;
    registry
        .index
        .put_manifest(repo, &digest, &tags, pushed_as)
        .await?;
    tracing::info!(%repo, %digest, tags = tags.len(), "manifest pushed");
    Ok(created(repo, &digest, &manifest, &tags, &reference))
}

fn created(
    repo: &RepoName,
    digest: &Digest,
    manifest: &Manifest,
    tags: &[Tag],
    reference: &Reference,
) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{repo}/manifests/{digest}")),
    );
    headers.insert("docker-content-digest", header_value(&digest.to_string()));
    if let Some(subject) = &manifest.subject {
        headers.insert("oci-subject", header_value(&subject.digest.to_string()));
    }
    // `OCI-Tag` lists the tags taken from `?tag=`; a push by tag names
    // its tag in the URL already.
    let from_query: Vec<&str> = tags
        .iter()
        .filter(|t| !matches!(reference, Reference::Tag(r) if r == *t))
        .map(Tag::as_str)
        .collect();
    if !from_query.is_empty() {
        headers.insert("oci-tag", header_value(&from_query.join(", ")));
    }
    response
}

/// The digest of pushed bytes: checked against the URL's when it names one,
/// else SHA-256.
fn digest_of(reference: &Reference, bytes: &[u8]) -> Result<Digest> {
    match reference {
        Reference::Digest(expected) => {
            let actual = Digest::of(expected.algorithm(), bytes);
            if actual != *expected {
                return Err(Error::new(
                    ErrorCode::DigestInvalid,
                    format!("manifest bytes hash to {actual}, not {expected}; nothing was stored"),
                ));
            }
            Ok(actual)
        }
        Reference::Tag(_) => Ok(Digest::of(Algorithm::Sha256, bytes)),
    }
}

/// Reads a request body of at most `limit` bytes; more is 413.
async fn read_limited(body: Body, limit: u64) -> Result<Bytes> {
    let mut stream = body.into_data_stream();
    let mut buffer = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Error::new(
                ErrorCode::ManifestInvalid,
                format!("manifest body broke off: {e}"),
            )
        })?;
        if (buffer.len() + chunk.len()) as u64 > limit {
            return Err(Error::new(
                ErrorCode::SizeInvalid,
                format!("manifest is larger than the limit of {limit} bytes"),
            )
            .with_status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

pub(super) async fn delete(
    registry: &Registry,
    repo: &RepoName,
    reference: ManifestRef,
) -> Result<Response> {
    match reference {
        ManifestRef::Valid(Reference::Tag(tag)) => registry.index.delete_tag(repo, &tag).await?,
        ManifestRef::Valid(Reference::Digest(d)) => {
            registry.index.delete_manifest(repo, &d).await?
        }
        ManifestRef::Invalid(e) => return Err(e),
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_over_the_limit_are_413() {
        let e = read_limited(Body::from(vec![b'x'; 11]), 10)
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            read_limited(Body::from("0123456789"), 10)
                .await
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn a_digest_in_the_url_must_match_the_bytes() {
        let bytes = b"{}";
        let right = Reference::Digest(Digest::sha256_of(bytes));
        assert_eq!(digest_of(&right, bytes).unwrap(), Digest::sha256_of(bytes));
        let wrong = Reference::Digest(Digest::sha256_of(b"other"));
        assert_eq!(
            digest_of(&wrong, bytes).unwrap_err().code(),
            ErrorCode::DigestInvalid
        );
        let sha512 = Reference::Digest(Digest::of(Algorithm::Sha512, bytes));
        assert_eq!(
            digest_of(&sha512, bytes).unwrap().algorithm(),
            Algorithm::Sha512
        );
    }
}
