//! A custom `Backend` written outside the kraken crates: blobs bundled into
//! the binary at build time, served read-only. Think of base images shipped
//! with an appliance: origins read through to them like to any bucket.
//!
//! Run: `cargo run -p kraken-examples --example custom_backend`.
//! Its test runs kraken's backend behaviour suite against it.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, stream};
use kraken_core::{
    Backend, BackendError, BackendStream, Capabilities, ListPage, Namespace, ObjectInfo, UploadBody,
};

/// Serves a fixed set of `(namespace, name, bytes)` objects.
#[derive(Debug)]
struct BundledBackend {
    objects: Vec<(&'static str, &'static str, &'static [u8])>,
}

impl BundledBackend {
    fn find(&self, namespace: &Namespace, name: &str) -> Result<Bytes, BackendError> {
        self.objects
            .iter()
            .find(|(ns, n, _)| *ns == namespace.as_str() && *n == name)
            .map(|(_, _, data)| Bytes::from_static(data))
            .ok_or_else(|| BackendError::not_found(format!("{namespace}/{name} is not bundled")))
    }
}

#[async_trait]
impl Backend for BundledBackend {
    fn kind(&self) -> &'static str {
        "bundled"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            write: false,
            list: false,
        }
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        Ok(ObjectInfo {
            size: self.find(namespace, name)?.len() as u64,
        })
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let data = self.find(namespace, name)?;
        let len = data.len() as u64;
        let range = range.unwrap_or(0..len);
        let (start, end) = (range.start.min(len) as usize, range.end.min(len) as usize);
        let part = data.slice(start..end.max(start));
        Ok(stream::iter((!part.is_empty()).then_some(Ok(part))).boxed())
    }

    async fn upload(
        &self,
        _: &Namespace,
        _: &str,
        _: u64,
        _: UploadBody,
    ) -> Result<(), BackendError> {
        Err(BackendError::unsupported("bundled blobs are read-only"))
    }

    async fn list(
        &self,
        _: &Namespace,
        _: &str,
        _: Option<&str>,
        _: usize,
    ) -> Result<ListPage, BackendError> {
        Err(BackendError::unsupported("bundled blobs cannot be listed"))
    }
}

fn bundled() -> Arc<dyn Backend> {
    Arc::new(BundledBackend {
        objects: vec![("appliance/base", "sha256:0000", b"pretend this is a layer")],
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BackendError> {
    let backend = bundled();
    let ns = Namespace::new("appliance/base").expect("valid namespace");
    let info = backend.stat(&ns, "sha256:0000").await?;
    let mut body = backend.download(&ns, "sha256:0000", Some(8..12)).await?;
    let first = body.next().await.transpose()?.unwrap_or_default();
    println!(
        "{} backend: {} bytes, bytes 8..12 = {first:?}",
        backend.kind(),
        info.size
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn passes_the_backend_suite() {
        kraken_core::testkit::backend_suite(super::bundled()).await;
    }
}
