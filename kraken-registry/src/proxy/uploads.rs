//! Blob uploads, in every shape clients send them: monolithic (`POST`
//! then one `PUT` with the body, or a single `POST ?digest=`), chunked
//! (`PATCH` with `Content-Range`, 416 when a chunk does not start where
//! the upload ends), streamed (`PATCH` without `Content-Range`, as Docker
//! does), a final chunk in the closing `PUT`, cross-repository mounts, and
//! cancels.
//!
//! A body that breaks off discards its upload, so truncated bytes are never
//! committed; the closing `PUT` verifies the whole blob against `?digest=`
//! (any algorithm the store supports), and a mismatch discards it.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use kraken_core::{Digest, PieceLengths, UploadId, parse_upload_range};
use serde::{Deserialize, Serialize};

use super::Writer;
use crate::api::Query;
use crate::error::{Error, ErrorCode, Result, Subject};
use crate::reference::RepoName;

/// Upload settings of the proxy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadConfig {
    /// The smallest chunk clients are asked to send (`OCI-Chunk-Min-Length`);
    /// 0 sends no such header.
    pub chunk_min_length: u64,
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("paths, digests and numbers are valid header values")
}

fn location(repo: &RepoName, id: &UploadId) -> String {
    format!("/v2/{repo}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>` of an upload holding `size` bytes (`0-0` when
/// empty, as registries answer).
fn range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn session_response(status: StatusCode, repo: &RepoName, id: &UploadId, size: u64) -> Response {
    let mut response = status.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, value(&location(repo, id)));
    headers.insert(header::RANGE, value(&range(size)));
    headers.insert("docker-upload-uuid", value(id.as_str()));
    response
}

fn blob_created(repo: &RepoName, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        value(&format!("/v2/{repo}/blobs/{digest}")),
    );
    headers.insert("docker-content-digest", value(&digest.to_string()));
    response
}

fn upload_error(e: &kraken_core::Error) -> Error {
    match e {
        kraken_core::Error::DigestMismatch { .. } => Error::new(
            ErrorCode::DigestInvalid,
            format!("{e}; the upload was discarded"),
        ),
        other => Error::from_core(Subject::Upload, other),
    }
}

/// The chunk an upload request's `Content-Range` names, if it has one.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        Error::new(
            ErrorCode::BlobUploadInvalid,
            format!("Content-Range {value:?} is not <start>-<end>"),
        )
    };
    let text = value.to_str().map_err(|_| bad())?;
    parse_upload_range(text).map(Some).map_err(|_| bad())
}

impl Writer {
    /// `POST /v2/<name>/blobs/uploads/`: a mount, a monolithic upload, or
    /// a new session.
    pub(crate) async fn start(
        &self,
        repo: &RepoName,
        query: &Query,
        body: Body,
    ) -> Result<Response> {
        if let Some(mount) = &query.mount
            && let Ok(digest) = mount.parse::<Digest>()
            && self.mount(repo, &digest, query.from.as_deref()).await?
        {
            return Ok(blob_created(repo, &digest));
        }
        let id = self
            .scratch()
            .create_upload()
            .await
            .map_err(|e| upload_error(&e))?;
        if let Some(digest) = &query.digest {
            let digest = parse_digest(digest)?;
            self.append(&id, 0, None, body).await?;
            return self.commit(repo, &id, &digest).await;
        }
        let mut response = session_response(StatusCode::ACCEPTED, repo, &id, 0);
        if self.inner.config.chunk_min_length > 0 {
            response.headers_mut().insert(
                "oci-chunk-min-length",
                HeaderValue::from(self.inner.config.chunk_min_length),
            );
        }
        Ok(response)
    }

    /// Mounts a blob another repository (or, without `from`, any) holds.
    async fn mount(&self, repo: &RepoName, digest: &Digest, from: Option<&str>) -> Result<bool> {
        let origins = &self.inner.origins;
        if let Some(from) = from {
            let Ok(source) = RepoName::new(from) else {
                return Ok(false);
            };
            let held = origins
                .stat(&source.namespace(), digest)
                .await
                .map_err(|e| Error::from_core(Subject::Blob, &e))?;
            if held.is_none() {
                return Ok(false);
            }
        }
        origins
            .mount(&repo.namespace(), digest)
            .await
            .map_err(|e| Error::from_core(Subject::Blob, &e))
    }

    /// `PATCH` on an upload: a chunk, or with no `Content-Range` the rest
    /// of a streamed body.
    pub(crate) async fn patch(
        &self,
        repo: &RepoName,
        id: &UploadId,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response> {
        let range = content_range(headers)?;
        let size = self.size(id).await?;
        if let Some((start, _)) = range
            && start != size
        {
            return Err(self.out_of_order(repo, id, start, size));
        }
        let size = self.append(id, size, range, body).await?;
        Ok(session_response(StatusCode::ACCEPTED, repo, id, size))
    }

    /// `PUT` on an upload: an optional final chunk, then the commit.
    pub(crate) async fn finish(
        &self,
        repo: &RepoName,
        id: &UploadId,
        query: &Query,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response> {
        let Some(digest) = &query.digest else {
            return Err(Error::new(
                ErrorCode::DigestInvalid,
                "the closing PUT of an upload needs ?digest=",
            ));
        };
        let digest = parse_digest(digest)?;
        let range = content_range(headers)?;
        let size = self.size(id).await?;
        if let Some((start, _)) = range
            && start != size
        {
            return Err(self.out_of_order(repo, id, start, size));
        }
        self.append(id, size, range, body).await?;
        self.commit(repo, id, &digest).await
    }

    /// `GET` on an upload: how much it holds.
    pub(crate) async fn status(&self, repo: &RepoName, id: &UploadId) -> Result<Response> {
        let size = self.size(id).await?;
        Ok(session_response(StatusCode::NO_CONTENT, repo, id, size))
    }

    /// `DELETE` on an upload.
    pub(crate) async fn cancel(&self, id: &UploadId) -> Result<Response> {
        self.scratch()
            .abort_upload(id)
            .await
            .map_err(|e| upload_error(&e))?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    fn scratch(&self) -> &dyn kraken_core::BlobStore {
        &*self.inner.scratch
    }

    async fn size(&self, id: &UploadId) -> Result<u64> {
        self.scratch()
            .upload_size(id)
            .await
            .map_err(|e| upload_error(&e))
    }

    fn out_of_order(&self, repo: &RepoName, id: &UploadId, start: u64, size: u64) -> Error {
        Error::new(
            ErrorCode::RangeInvalid,
            format!("chunk starts at {start}, the upload holds {size} bytes"),
        )
        .with_header("location", location(repo, id))
        .with_header("range", range(size))
    }

    /// Appends a body from `offset`; returns the new size. A body that
    /// breaks off, or that is not as long as its `Content-Range` says,
    /// discards the upload.
    async fn append(
        &self,
        id: &UploadId,
        offset: u64,
        range: Option<(u64, u64)>,
        body: Body,
    ) -> Result<u64> {
        let store = self.scratch();
        let mut chunks = body.into_data_stream();
        let mut size = offset;
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) if chunk.is_empty() => continue,
                Ok(chunk) => chunk,
                Err(e) => {
                    let _ = store.abort_upload(id).await;
                    return Err(Error::new(
                        ErrorCode::BlobUploadInvalid,
                        format!(
                            "body broke off after {size} bytes ({e}); the upload was discarded"
                        ),
                    ));
                }
            };
            size = store
                .append_upload(id, size, chunk)
                .await
                .map_err(|e| upload_error(&e))?;
        }
        if let Some((start, end)) = range
            && size - offset != end - start + 1
        {
            let _ = store.abort_upload(id).await;
            return Err(Error::new(
                ErrorCode::SizeInvalid,
                format!(
                    "Content-Range {start}-{end} announces {} bytes, the body held {}; the upload was discarded",
                    end - start + 1,
                    size - offset
                ),
            ));
        }
        Ok(size)
    }

    /// Verifies the upload, pushes the blob to its origin, and drops the
    /// scratch copy.
    async fn commit(&self, repo: &RepoName, id: &UploadId, digest: &Digest) -> Result<Response> {
        let store = &self.inner.scratch;
        store
            .commit_upload(id, digest, &PieceLengths::default())
            .await
            .map_err(|e| upload_error(&e))?;
        let pushed = async {
            let reader = store.open(digest).await?;
            self.inner
                .origins
                .upload(&repo.namespace(), digest, reader)
                .await
        }
        .await;
        if let Err(e) = store.delete(digest).await {
            tracing::debug!(%digest, error = %e, "scratch copy stays until cleanup");
        }
        pushed.map_err(|e| Error::from_core(Subject::Blob, &e))?;
        tracing::debug!(%repo, %digest, "blob pushed");
        Ok(blob_created(repo, digest))
    }
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| Error::new(ErrorCode::DigestInvalid, format!("digest {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_range(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bad_content_ranges_are_upload_errors() {
        assert_eq!(content_range(&HeaderMap::new()).unwrap(), None);
        assert_eq!(content_range(&with_range("0-99")).unwrap(), Some((0, 99)));
        for bad in ["x", "9-3", "bytes=0-9"] {
            let e = content_range(&with_range(bad)).unwrap_err();
            assert_eq!(e.code(), ErrorCode::BlobUploadInvalid, "{bad}");
        }
    }

    #[test]
    fn upload_ranges_name_the_last_byte() {
        assert_eq!(range(0), "0-0");
        assert_eq!(range(42), "0-41");
    }
}
