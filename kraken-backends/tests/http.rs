//! The HTTP backend against a real nginx (WebDAV `PUT`, JSON autoindex)
//! and against small in-test servers that answer with chosen statuses.
//!
//! The nginx tests need the `nginx` binary (Debian's `nginx-light`). Without
//! it they print why they skip, unless `CI` is set, where they fail.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use common::free_port;
use common::nginx::{self, Nginx, Site};
use futures::StreamExt;
use kraken_backends::http::{HttpBackend, HttpBackendOptions};
use kraken_core::{Backend, BackendErrorKind, Namespace};

async fn start_nginx() -> Option<Nginx> {
    nginx::start_nginx(Site::Dav, None).await
}

fn nginx_backend(nginx: &Nginx) -> HttpBackend {
    let base = format!("http://127.0.0.1:{}/objects", nginx.port);
    HttpBackend::new(HttpBackendOptions::nginx(&base)).unwrap()
}

async fn read_all(backend: &dyn Backend, ns: &Namespace, name: &str) -> Vec<u8> {
    let mut stream = backend.download(ns, name, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn body_of(data: &'static [u8]) -> kraken_core::UploadBody {
    futures::stream::iter([Ok(Bytes::from_static(data))]).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_backend_suite_against_nginx() {
    let Some(nginx) = start_nginx().await else {
        return;
    };
    kraken_core::testkit::backend_suite(Arc::new(nginx_backend(&nginx))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_replaces_objects_through_a_temp_file() {
    let Some(nginx) = start_nginx().await else {
        return;
    };
    let backend = Arc::new(nginx_backend(&nginx));
    let ns = Namespace::new("library/ubuntu").unwrap();
    backend
        .upload(&ns, "repo:tag", 3, body_of(b"old"))
        .await
        .unwrap();
    // A slow upload: half the body, then a pause the test controls.
    let (tx, rx) = futures::channel::mpsc::unbounded::<std::io::Result<Bytes>>();
    tx.unbounded_send(Ok(Bytes::from(vec![b'n'; 500_000])))
        .unwrap();
    let uploader = {
        let (backend, ns) = (backend.clone(), ns.clone());
        tokio::spawn(async move { backend.upload(&ns, "repo:tag", 1_000_000, rx.boxed()).await })
    };
    let mut in_temp = Vec::new();
    for _ in 0..100 {
        in_temp = nginx.files_in("tmp/body");
        if !in_temp.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(in_temp.len(), 1, "the body is written to a temp file first");
    assert_eq!(read_all(&*backend, &ns, "repo:tag").await, b"old");
    tx.unbounded_send(Ok(Bytes::from(vec![b'n'; 500_000])))
        .unwrap();
    drop(tx);
    uploader.await.unwrap().unwrap();
    assert_eq!(read_all(&*backend, &ns, "repo:tag").await.len(), 1_000_000);
    assert!(nginx.files_in("tmp/body").is_empty(), "renamed into place");

    // A body that fails midway stores nothing and leaves no temp file.
    let broken = futures::stream::iter([
        Ok(Bytes::from_static(b"ne")),
        Err(std::io::Error::other("reset")),
    ])
    .boxed();
    let err = backend
        .upload(&ns, "repo:tag", 3, broken)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Other, "{err}");
    assert_eq!(read_all(&*backend, &ns, "repo:tag").await.len(), 1_000_000);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(nginx.files_in("tmp/body").is_empty(), "temp file removed");
    let stored = nginx.files_in("root/objects");
    let expected = nginx
        .dir
        .path()
        .join("root/objects/library%2Fubuntu/repo:tag");
    assert_eq!(
        stored,
        [expected],
        "one directory per namespace, one file per object"
    );
}

/// Serves `/{status}/{ns}/{name}` with that status, and `/full/...` with
/// the whole of `FULL` whatever the `Range`.
async fn start_status_server() -> SocketAddr {
    async fn answer(
        UrlPath((status, _, _)): UrlPath<(String, String, String)>,
    ) -> impl IntoResponse {
        if status == "full" {
            return (StatusCode::OK, HeaderMap::new(), Bytes::from_static(FULL));
        }
        let status = StatusCode::from_u16(status.parse().unwrap()).unwrap();
        let mut headers = HeaderMap::new();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, "3".parse().unwrap());
        }
        (status, headers, Bytes::new())
    }
    /// Accepts a PUT only with a `Content-Length` and no chunked encoding.
    async fn store(headers: HeaderMap) -> StatusCode {
        let sized = headers.get(header::CONTENT_LENGTH).is_some();
        let chunked = headers.get(header::TRANSFER_ENCODING).is_some();
        match (sized, chunked) {
            (true, false) => StatusCode::CREATED,
            _ => StatusCode::LENGTH_REQUIRED,
        }
    }
    let app = axum::Router::new().route(
        "/{status}/{ns}/{name}",
        axum::routing::get(answer).put(store),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

const FULL: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn backend_at(addr: SocketAddr, prefix: &str) -> HttpBackend {
    let get = format!("http://{addr}/{prefix}/{{namespace}}/{{name}}");
    HttpBackend::new(HttpBackendOptions {
        get,
        head: None,
        put: None,
        list: None,
        timeouts: Default::default(),
        auth: None,
        tls: Default::default(),
    })
    .unwrap()
}

#[tokio::test]
async fn statuses_become_error_kinds() {
    let addr = start_status_server().await;
    let ns = Namespace::new("repo").unwrap();
    let cases = [
        (404, BackendErrorKind::NotFound, false),
        (401, BackendErrorKind::Unauthorized, false),
        (403, BackendErrorKind::Forbidden, false),
        (429, BackendErrorKind::RateLimited, true),
        (500, BackendErrorKind::Unavailable, true),
        (502, BackendErrorKind::Unavailable, true),
        (503, BackendErrorKind::Unavailable, true),
        (400, BackendErrorKind::Other, false),
        (418, BackendErrorKind::Other, false),
    ];
    for (status, kind, retryable) in cases {
        let backend = backend_at(addr, &status.to_string());
        for err in [
            backend.stat(&ns, "sha256:ab").await.unwrap_err(),
            backend
                .download(&ns, "sha256:ab", None)
                .await
                .err()
                .unwrap(),
        ] {
            assert_eq!(err.kind(), kind, "{status}: {err}");
            assert_eq!(err.is_retryable(), retryable, "{status}");
        }
    }
    let limited = backend_at(addr, "429").stat(&ns, "x").await.unwrap_err();
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
    let down = backend_at(addr, "503").stat(&ns, "x").await.unwrap_err();
    assert_eq!(down.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn uploads_stream_with_a_content_length() {
    let addr = start_status_server().await;
    let template = format!("http://{addr}/put/{{namespace}}/{{name}}");
    let mut options = HttpBackendOptions::nginx(&format!("http://{addr}/put"));
    options.list = None;
    assert_eq!(options.put.as_deref(), Some(template.as_str()));
    let backend = HttpBackend::new(options).unwrap();
    let chunks = (0..4).map(|_| Ok(Bytes::from(vec![1u8; 100_000])));
    let body = futures::stream::iter(chunks).boxed();
    let ns = Namespace::new("repo").unwrap();
    backend
        .upload(&ns, "sha256:ab", 400_000, body)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_server_ignoring_range_is_cut_locally() {
    let addr = start_status_server().await;
    let backend = backend_at(addr, "full");
    let ns = Namespace::new("repo").unwrap();
    for (range, expected) in [
        (3..7, &FULL[3..7]),
        (30..100, &FULL[30..]),
        (50..60, &[][..]),
    ] {
        let mut stream = backend.download(&ns, "x", Some(range)).await.unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn a_dead_server_is_unavailable_not_missing() {
    let port = free_port();
    let backend = backend_at(SocketAddr::from(([127, 0, 0, 1], port)), "x");
    let ns = Namespace::new("repo").unwrap();
    let err = backend.stat(&ns, "sha256:ab").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    let err = backend
        .download(&ns, "sha256:ab", None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable, "{err}");
}

/// Serves `/{ns}/{name}` as chunks of `gaps.len()` bytes, the next one
/// after each gap; a `None` gap stalls forever.
async fn slow_server(gaps: Vec<Option<Duration>>) -> SocketAddr {
    let answer = move || {
        let gaps = gaps.clone();
        async move {
            let chunks = futures::stream::iter(gaps).then(|gap| async move {
                match gap {
                    Some(gap) => tokio::time::sleep(gap).await,
                    None => futures::future::pending::<()>().await,
                }
                Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
            });
            axum::body::Body::from_stream(chunks)
        }
    };
    let app = axum::Router::new().route("/{ns}/{name}", axum::routing::get(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn idle_backend(addr: SocketAddr, read_idle: Duration) -> HttpBackend {
    let mut options = HttpBackendOptions::nginx(&format!("http://{addr}"));
    options.put = None;
    options.list = None;
    options.timeouts.read_idle = read_idle;
    HttpBackend::new(options).unwrap()
}

#[tokio::test]
async fn a_server_that_stops_sending_fails_the_read() {
    let addr = slow_server(vec![Some(Duration::ZERO), None]).await;
    let backend = idle_backend(addr, Duration::from_millis(300));
    let ns = Namespace::new("repo").unwrap();
    let mut stream = backend.download(&ns, "x", None).await.unwrap();
    assert_eq!(&stream.next().await.unwrap().unwrap()[..], b"x");
    let started = std::time::Instant::now();
    let error = stream.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unavailable, "{error}");
    assert!(error.message().contains("no data for"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_reader_that_pauses_is_not_the_server_going_silent() {
    // The server sends a byte every 600 ms; the reader waits 500 ms
    // between reads, so each read waits about 100 ms, well inside the
    // 300 ms idle limit, though 600 ms pass between bytes.
    let gap = Some(Duration::from_millis(600));
    let addr = slow_server(vec![Some(Duration::ZERO), gap, gap]).await;
    let backend = idle_backend(addr, Duration::from_millis(300));
    let ns = Namespace::new("repo").unwrap();
    let mut stream = backend.download(&ns, "x", None).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(got, b"xxx");
}
