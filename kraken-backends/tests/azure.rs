//! The Azure backend against Azurite, Microsoft's Blob Storage emulator
//! from npm, started per test on a loopback port; it checks shared-key
//! signatures like the real service.
//!
//! `.ci/run` installs Azurite into `~/.cache/kraken-ci/node`; the tests
//! also find `azurite-blob` on `PATH`. Without it they print why they
//! skip, unless `CI` is set, where they fail.

#![cfg(feature = "azure")]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use common::{free_port, read_all};
use futures::StreamExt;
use kraken_backends::azure::{AzureBackend, AzureBackendOptions};
use kraken_core::{Backend, BackendErrorKind, Namespace};

/// Azurite's fixed development account and its well-known key.
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CONTAINER: &str = "kraken-test";

/// An Azurite blob service, killed on drop by its own handle.
struct Azurite {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Azurite {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    fn options(&self) -> AzureBackendOptions {
        AzureBackendOptions {
            endpoint: Some(self.endpoint()),
            access_key: Some(KEY.into()),
            allow_http: true,
            prefix: "kraken/test".into(),
            ..AzureBackendOptions::new(ACCOUNT, CONTAINER)
        }
    }
}

fn azurite_binary() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cached = home.map(|h| h.join(".cache/kraken-ci/node/node_modules/.bin/azurite-blob"));
    if let Some(cached) = cached.filter(|p| p.is_file()) {
        return Some(cached);
    }
    common::tool(
        "azurite-blob",
        "npm install --prefix ~/.cache/kraken-ci/node azurite",
    )
}

/// Starts Azurite with an empty container, or returns `None` (after
/// saying why) when it is missing outside CI.
async fn start_azurite() -> Option<Azurite> {
    let binary = azurite_binary()?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(dir.path())
        .args(["--silent", "--skipApiVersionCheck"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut azurite = Azurite {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            create_container(&azurite).await;
            return Some(azurite);
        }
        if let Some(status) = azurite.child.try_wait().unwrap() {
            panic!("azurite exited with {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("azurite did not listen on port {port}");
}

/// Creates the container with a shared-key signed `PUT`, as object_store
/// has no call for it.
async fn create_container(azurite: &Azurite) {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let version = "2021-08-06";
    let resource = format!("/{ACCOUNT}/{ACCOUNT}/{CONTAINER}\nrestype:container");
    let string_to_sign =
        format!("PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &STANDARD.decode(KEY).unwrap());
    let signature = STANDARD.encode(ring::hmac::sign(&key, string_to_sign.as_bytes()));
    let url = format!("{}/{CONTAINER}?restype=container", azurite.endpoint());
    let response = common::plain_http()
        .build()
        .unwrap()
        .put(url)
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("content-length", "0")
        .header("authorization", format!("SharedKey {ACCOUNT}:{signature}"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert_eq!(
        status,
        201,
        "create container: {}",
        response.text().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_backend_suite_against_azurite() {
    let Some(azurite) = start_azurite().await else {
        return;
    };
    let backend = AzureBackend::new(azurite.options()).unwrap();
    kraken_core::testkit::backend_suite(Arc::new(backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_list_uploads_round_trip_and_a_wrong_key_is_refused() {
    let Some(azurite) = start_azurite().await else {
        return;
    };
    let backend = AzureBackend::new(AzureBackendOptions {
        multipart_threshold: bytesize::ByteSize::mib(5),
        part_size: bytesize::ByteSize::mib(5),
        ..azurite.options()
    })
    .unwrap();
    let ns = Namespace::new("library/big").unwrap();
    let data = common::random(11 * 1024 * 1024 + 7);
    let chunks: Vec<_> = data.chunks(1 << 20).map(Bytes::copy_from_slice).collect();
    let body = futures::stream::iter(chunks.into_iter().map(Ok)).boxed();
    let len = data.len() as u64;
    backend.upload(&ns, "blob", len, body).await.unwrap();
    assert_eq!(backend.stat(&ns, "blob").await.unwrap().size, len);
    assert!(read_all(&backend, &ns, "blob", None).await.unwrap() == data);
    let boundary = 5 * 1024 * 1024;
    let across = read_all(&backend, &ns, "blob", Some(boundary - 10..boundary + 10));
    assert!(across.await.unwrap() == data.slice(boundary as usize - 10..boundary as usize + 10));

    let wrong = AzureBackend::new(AzureBackendOptions {
        access_key: Some(STANDARD.encode([7u8; 64])),
        max_retries: 0,
        ..azurite.options()
    })
    .unwrap();
    let error = wrong.stat(&ns, "blob").await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unauthorized, "{error}");
    let missing = backend.stat(&ns, "never-written").await.unwrap_err();
    assert_eq!(missing.kind(), BackendErrorKind::NotFound, "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_check_names_a_missing_container() {
    let Some(azurite) = start_azurite().await else {
        return;
    };
    AzureBackend::new(azurite.options())
        .unwrap()
        .check()
        .await
        .unwrap();
    let missing = AzureBackend::new(AzureBackendOptions {
        container: "no-such-container".into(),
        max_retries: 0,
        ..azurite.options()
    })
    .unwrap();
    let error = missing.check().await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::NotFound, "{error}");
    assert!(
        error.message().contains("container `no-such-container`"),
        "{error}"
    );
}
