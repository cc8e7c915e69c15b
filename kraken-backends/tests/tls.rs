//! The backends over TLS (rustls on ring) against real servers holding a
//! certificate from a throwaway CA the test creates: nginx serving WebDAV
//! for the HTTP backend, nginx terminating TLS in front of Garage for the
//! S3 backend, and `docker-registry` serving TLS itself for the registry
//! backend. Each trusts the CA through `tls.ca_pem` or `tls.ca_file`, and
//! refuses the server without it.
//!
//! Without `nginx`, `garage` or `docker-registry` the tests print why they
//! skip, unless `CI` is set, where they fail.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::nginx::{Site, TestCa, start_nginx};
use common::{read_all, start_registry_tls};
use futures::StreamExt;
use kraken_backends::TlsOptions;
use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_backends::http::{HttpBackend, HttpBackendOptions};
use kraken_backends::layout::Layout;
use kraken_backends::registry::{RegistryBackend, RegistryBackendOptions};
use kraken_backends::s3::{S3Backend, S3BackendOptions};
use kraken_core::{Backend, BackendError, BackendErrorKind, Digest, Namespace};

fn trusting(ca: &TestCa) -> TlsOptions {
    TlsOptions {
        ca_pem: Some(ca.pem()),
        ..TlsOptions::default()
    }
}

/// Checks `error` is the refusal of a certificate no trusted root vouches
/// for, and says how to fix it.
fn assert_untrusted(error: &BackendError) {
    assert_eq!(error.kind(), BackendErrorKind::Other, "{error}");
    assert!(!error.is_retryable());
    let message = error.message();
    assert!(message.contains("invalid peer certificate"), "{message}");
    assert!(message.contains("tls.ca_file"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_passes_the_suite_over_tls() {
    let ca = TestCa::new();
    let Some(nginx) = start_nginx(Site::Dav, Some(&ca)).await else {
        return;
    };
    let base = format!("https://localhost:{}/objects", nginx.port);
    let mut options = HttpBackendOptions::nginx(&base);
    options.tls = trusting(&ca);
    kraken_core::testkit::backend_suite(Arc::new(HttpBackend::new(options).unwrap())).await;

    // Only the private CA, from a file.
    let ca_file = nginx.dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let mut options = HttpBackendOptions::nginx(&base);
    options.tls = TlsOptions {
        builtin_roots: false,
        ca_file: Some(ca_file),
        ca_pem: None,
    };
    let backend = HttpBackend::new(options).unwrap();
    let ns = Namespace::new("library/app").unwrap();
    let body = futures::stream::iter([Ok(Bytes::from_static(b"over tls"))]).boxed();
    backend.upload(&ns, "x", 8, body).await.unwrap();
    assert_eq!(
        read_all(&backend, &ns, "x", None).await.unwrap(),
        &b"over tls"[..]
    );

    // The built-in roots alone do not vouch for it.
    let plain = HttpBackend::new(HttpBackendOptions::nginx(&base)).unwrap();
    assert_untrusted(&plain.stat(&ns, "x").await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_passes_the_suite_through_tls_in_front_of_garage() {
    let Some(garage) = common::garage::start_garage() else {
        return;
    };
    let ca = TestCa::new();
    let site = Site::Proxy {
        upstream: garage.endpoint(),
    };
    let Some(nginx) = start_nginx(site, Some(&ca)).await else {
        return;
    };
    let options = S3BackendOptions {
        endpoint: Some(format!("https://127.0.0.1:{}", nginx.port)),
        allow_http: false,
        tls: trusting(&ca),
        ..garage.options()
    };
    let backend = S3Backend::new(options.clone()).unwrap();
    kraken_core::testkit::backend_suite(Arc::new(backend)).await;

    let untrusting = S3Backend::new(S3BackendOptions {
        tls: TlsOptions::default(),
        max_retries: 0,
        ..options
    })
    .unwrap();
    let ns = Namespace::new("library/app").unwrap();
    let error = untrusting.stat(&ns, "anything").await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Other, "{error}");
    let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source());
    let text: Vec<String> = chain.map(|e| e.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("invalid peer certificate")),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_backend_pulls_from_a_tls_registry() {
    let ca = TestCa::new();
    let Some(registry) = start_registry_tls(&ca).await else {
        return;
    };
    // The registry takes pushes only over TLS, which the test's own HTTP
    // client lacks, so the content goes into its storage directly.
    let fs = FsBackend::open_with_layout(
        FsBackendOptions::new(registry.storage()),
        Layout::DockerRegistry,
    )
    .await
    .unwrap();
    let app = Namespace::new("library/app").unwrap();
    let layer = common::random(70_000);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": common::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256_of(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": Digest::sha256_of(&layer).to_string(), "size": layer.len()}],
    });
    let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let digest = Digest::sha256_of(&manifest);
    for blob in [&Bytes::from_static(b"{}"), &layer, &manifest] {
        let body = futures::stream::iter([Ok(blob.clone())]).boxed();
        let name = Digest::sha256_of(blob).to_string();
        fs.upload(&app, &name, blob.len() as u64, body)
            .await
            .unwrap();
    }
    let tag = Bytes::from(digest.to_string());
    let body = futures::stream::iter([Ok(tag.clone())]).boxed();
    fs.upload(&app, "library/app:v1", 71, body).await.unwrap();

    let mut options = RegistryBackendOptions::new(registry.url());
    options.tls = trusting(&ca);
    let pull = RegistryBackend::new(options).unwrap();
    let got = pull.manifest(&app, "v1").await.unwrap();
    assert_eq!((got.bytes, got.digest), (manifest, digest));
    let layer_name = Digest::sha256_of(&layer).to_string();
    assert!(read_all(&pull, &app, &layer_name, None).await.unwrap() == layer);

    let untrusting = RegistryBackend::new(RegistryBackendOptions::new(registry.url())).unwrap();
    assert_untrusted(&untrusting.stat(&app, &layer_name).await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_plain_http_is_refused() {
    let ca = TestCa::new();
    let site = Site::Redirect {
        to: format!("http://127.0.0.1:{}", common::free_port()),
    };
    let Some(nginx) = start_nginx(site, Some(&ca)).await else {
        return;
    };
    let mut options = RegistryBackendOptions::new(format!("https://127.0.0.1:{}", nginx.port));
    options.tls = trusting(&ca);
    let backend = RegistryBackend::new(options).unwrap();
    let app = Namespace::new("library/app").unwrap();
    let name = Digest::sha256_of(b"x").to_string();
    let error = backend.stat(&app, &name).await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Other, "{error}");
    assert!(
        error.message().contains("to a plain-http URL, refused"),
        "{error}"
    );
}
