//! The S3 backend against a real S3-compatible server that checks SigV4
//! signatures: a single-node Garage on 127.0.0.1, one per test (see
//! `common::garage`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use bytesize::ByteSize;
use common::free_port;
use common::garage::{ACCESS_KEY, BUCKET, SECRET_KEY, start_garage};
use futures::StreamExt;
use kraken_backends::s3::{S3Backend, S3BackendOptions};
use kraken_core::{Backend, BackendErrorKind, Namespace, UploadBody};

fn body_of(data: &Bytes) -> UploadBody {
    let chunks: Vec<_> = data
        .chunks(256 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    futures::stream::iter(chunks.into_iter().map(Ok)).boxed()
}

fn pattern(len: usize) -> Bytes {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into()
}

async fn read(
    backend: &dyn Backend,
    ns: &Namespace,
    name: &str,
    range: Option<std::ops::Range<u64>>,
) -> Bytes {
    let mut stream = backend.download(ns, name, range).await.unwrap();
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_backend_suite_against_garage() {
    let Some(garage) = start_garage() else {
        return;
    };
    kraken_core::testkit::backend_suite(Arc::new(garage.backend())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_round_trip_across_part_boundaries() {
    let Some(garage) = start_garage() else {
        return;
    };
    let backend = S3Backend::new(S3BackendOptions {
        multipart_threshold: ByteSize::mib(5),
        part_size: ByteSize::mib(5),
        ..garage.options()
    })
    .unwrap();
    let ns = Namespace::new("library/big").unwrap();
    let data = pattern(12 * 1024 * 1024 + 321);
    let len = data.len() as u64;
    backend
        .upload(&ns, "blob", len, body_of(&data))
        .await
        .unwrap();

    assert_eq!(backend.stat(&ns, "blob").await.unwrap().size, len);
    assert!(read(&backend, &ns, "blob", None).await == data);
    let boundary = 5 * 1024 * 1024;
    let across = boundary - 1000..boundary + 1000;
    let got = read(&backend, &ns, "blob", Some(across.clone())).await;
    assert!(got == data.slice(across.start as usize..across.end as usize));

    // Too short and too long: the multipart upload is aborted, and neither
    // a new object nor a changed one appears.
    for declared in [len + 1, len - 1] {
        let result = backend.upload(&ns, "bad", declared, body_of(&data)).await;
        assert_eq!(result.unwrap_err().kind(), BackendErrorKind::Corrupt);
        let stat = backend.stat(&ns, "bad").await;
        assert_eq!(stat.unwrap_err().kind(), BackendErrorKind::NotFound);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_unauthorized_not_missing() {
    let Some(garage) = start_garage() else {
        return;
    };
    let backend = S3Backend::new(S3BackendOptions {
        secret_access_key: Some("1".repeat(64)),
        max_retries: 0,
        ..garage.options()
    })
    .unwrap();
    let ns = Namespace::new("library/ubuntu").unwrap();
    let stat = backend.stat(&ns, "never-written").await.unwrap_err();
    assert_eq!(stat.kind(), BackendErrorKind::Unauthorized, "{stat}");
    let download = backend.download(&ns, "x", None).await.err().unwrap();
    assert_eq!(
        download.kind(),
        BackendErrorKind::Unauthorized,
        "{download}"
    );
    let upload = backend
        .upload(&ns, "x", 1, body_of(&Bytes::from_static(b"x")))
        .await
        .unwrap_err();
    assert_eq!(upload.kind(), BackendErrorKind::Unauthorized, "{upload}");
    let list = backend.list(&ns, "", None, 10).await.unwrap_err();
    assert_eq!(list.kind(), BackendErrorKind::Unauthorized, "{list}");
}

#[tokio::test]
async fn a_dead_endpoint_is_unavailable_and_retryable() {
    // Nothing listens on a port just released.
    let backend = S3Backend::new(S3BackendOptions {
        endpoint: Some(format!("http://127.0.0.1:{}", free_port())),
        allow_http: true,
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        max_retries: 0,
        connect_timeout: Duration::from_secs(2),
        ..S3BackendOptions::new(BUCKET, "us-east-1")
    })
    .unwrap();
    let ns = Namespace::new("library/ubuntu").unwrap();
    let error = backend.stat(&ns, "anything").await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    assert!(error.is_retryable());
    let error = backend.list(&ns, "", None, 10).await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
}

/// Serves `status` with an S3-style XML error to every request.
async fn status_server(status: u16) -> u16 {
    let answer = move || async move {
        let body = "<?xml version=\"1.0\"?><Error><Code>X</Code><Message>chosen</Message></Error>";
        (axum::http::StatusCode::from_u16(status).unwrap(), body)
    };
    let app = axum::Router::new().fallback(answer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[tokio::test]
async fn server_statuses_map_to_kinds() {
    // Pins how the statuses `object_store` folds into `Generic` are read.
    let cases = [
        (429, BackendErrorKind::RateLimited),
        (503, BackendErrorKind::Unavailable),
        (500, BackendErrorKind::Unavailable),
        (501, BackendErrorKind::Unsupported),
        (400, BackendErrorKind::Other),
        (403, BackendErrorKind::Unauthorized),
        (404, BackendErrorKind::NotFound),
    ];
    let ns = Namespace::new("library/ubuntu").unwrap();
    for (status, kind) in cases {
        let backend = S3Backend::new(S3BackendOptions {
            endpoint: Some(format!("http://127.0.0.1:{}", status_server(status).await)),
            allow_http: true,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            max_retries: 0,
            ..S3BackendOptions::new(BUCKET, "us-east-1")
        })
        .unwrap();
        let error = backend.download(&ns, "x", None).await.err().unwrap();
        assert_eq!(error.kind(), kind, "GET answered {status}: {error}");
        let error = backend.list(&ns, "", None, 10).await.unwrap_err();
        assert_eq!(error.kind(), kind, "list answered {status}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_up_check_names_a_missing_bucket_and_refused_credentials() {
    let Some(garage) = start_garage() else {
        return;
    };
    garage.backend().check().await.unwrap();

    let missing = S3Backend::new(S3BackendOptions {
        bucket: "no-such-bucket".into(),
        max_retries: 0,
        ..garage.options()
    })
    .unwrap();
    let error = missing.check().await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::NotFound, "{error}");
    let message = error.message();
    assert!(
        message.contains("bucket `no-such-bucket` at http://127.0.0.1"),
        "{message}"
    );
    assert!(message.contains("does not exist"), "{message}");

    let wrong = S3Backend::new(S3BackendOptions {
        secret_access_key: Some("1".repeat(64)),
        max_retries: 0,
        ..garage.options()
    })
    .unwrap();
    let error = wrong.check().await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unauthorized, "{error}");
    let message = error.message();
    assert!(
        message.contains(&format!("static keys of access key {ACCESS_KEY}")),
        "{message}"
    );
    assert!(
        message.contains("set access_key_id and secret_access_key"),
        "{message}"
    );
    assert!(
        !message.contains(&"1".repeat(64)),
        "the secret stays out: {message}"
    );

    // No keys and no environment: the instance role, which a test machine
    // lacks; the message says what to set instead.
    let keyless = S3Backend::new(S3BackendOptions {
        access_key_id: None,
        secret_access_key: None,
        max_retries: 0,
        connect_timeout: Duration::from_secs(1),
        ..garage.options()
    })
    .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(60), keyless.check())
        .await
        .expect("the check gives up")
        .unwrap_err();
    let message = error.message();
    assert!(
        message.contains("instance-role credentials (no keys are configured)"),
        "{message}"
    );
    assert!(message.contains("from_env"), "{message}");
}
