//! Verified downloads: a blob fetched by digest is checked against that
//! digest before anyone sees it.
//!
//! A backend can hand back the wrong object (a path layout changed between
//! deployments, a bucket shared with another writer) or damaged bytes. The
//! error must say enough to find the object: which backend, which
//! namespace and name, what was expected and what arrived.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use kraken_core::{Backend, BackendError, BackendErrorKind, Digest, Hasher, Namespace};

/// Downloads the blob named `digest` in `namespace` and returns its bytes
/// only when they hash to `digest`.
///
/// The blob is held in memory, so `max_size` bounds what is accepted;
/// larger blobs belong in a store that verifies as it writes.
///
/// # Errors
///
/// The backend's error when the download fails; `Corrupt` when the bytes
/// hash to another digest, with a message naming the backend kind, the
/// namespace and name and both digests; `Other` when the blob is larger
/// than `max_size`.
pub async fn fetch_verified(
    backend: &dyn Backend,
    namespace: &Namespace,
    digest: &Digest,
    max_size: u64,
) -> Result<Bytes, BackendError> {
    let name = digest.to_string();
    let mut stream = backend.download(namespace, &name, None).await?;
    let mut hasher = Hasher::new(digest.algorithm());
    let mut data = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (data.len() + chunk.len()) as u64 > max_size {
            let message = format!(
                "{} backend: {namespace}/{name} is larger than the {max_size} bytes allowed",
                backend.kind()
            );
            return Err(BackendError::new(BackendErrorKind::Other, message));
        }
        hasher.update(&chunk);
        data.extend_from_slice(&chunk);
    }
    let actual = hasher.finish();
    if actual != *digest {
        let message = format!(
            "{} backend: {namespace}/{name} ({} bytes) hashes to {actual}, expected {digest}",
            backend.kind(),
            data.len()
        );
        return Err(BackendError::new(BackendErrorKind::Corrupt, message));
    }
    Ok(data.freeze())
}
