//! The wrappers, the router and verified fetches over the in-memory backend,
//! with failures injected by the testkit's `FaultyBackend`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use bytesize::ByteSize;
use futures::StreamExt;
use kraken_backends::Error;
use kraken_backends::router::NamespaceRouter;
use kraken_backends::verify::fetch_verified;
use kraken_backends::wrappers::{
    Observed, Retry, RetryOptions, Throttle, ThrottleOptions, Timeout, TimeoutOptions,
};
use kraken_core::testkit::{DownloadFault, FaultyBackend, MemoryBackend, Operation, backend_suite};
use kraken_core::{Backend, BackendError, BackendErrorKind, Capabilities, Digest, Namespace};

fn memory() -> Arc<dyn Backend> {
    Arc::new(MemoryBackend::new())
}

fn ns() -> Namespace {
    Namespace::new("library/ubuntu").unwrap()
}

async fn put(backend: &dyn Backend, name: &str, data: Bytes) {
    let len = data.len() as u64;
    let body = futures::stream::iter([Ok(data)]).boxed();
    backend.upload(&ns(), name, len, body).await.unwrap();
}

async fn read_all(backend: &dyn Backend, name: &str) -> Result<Vec<u8>, BackendError> {
    let mut stream = backend.download(&ns(), name, None).await?;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

fn fast_retry() -> RetryOptions {
    RetryOptions {
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        ..RetryOptions::default()
    }
}

#[tokio::test]
async fn every_wrapper_passes_the_backend_suite() {
    let retry = Retry::new(memory(), fast_retry()).unwrap();
    backend_suite(Arc::new(retry)).await;
    let timeout = Timeout::new(memory(), TimeoutOptions::default()).unwrap();
    backend_suite(Arc::new(timeout)).await;
    let caps = ThrottleOptions {
        download: Some(ByteSize::gib(4)),
        upload: Some(ByteSize::gib(4)),
    };
    backend_suite(Arc::new(Throttle::new(memory(), caps))).await;
    backend_suite(Arc::new(Observed::new(memory()))).await;
    let router = NamespaceRouter::new([("testkit-.*", memory())]).unwrap();
    backend_suite(Arc::new(router)).await;
}

#[tokio::test(start_paused = true)]
async fn retry_recovers_from_passing_outages() {
    let (faulty, faults) = FaultyBackend::wrap(memory());
    put(&*faulty, "sha256:ab", Bytes::from_static(b"layer")).await;
    let retry = Retry::new(faulty, RetryOptions::default()).unwrap();
    faults.fail_next(2, BackendErrorKind::Unavailable);
    assert_eq!(retry.stat(&ns(), "sha256:ab").await.unwrap().size, 5);
    assert_eq!(faults.calls(Operation::Stat), 3);
    faults.fail_next(3, BackendErrorKind::Unavailable);
    assert_eq!(read_all(&retry, "sha256:ab").await.unwrap(), b"layer");
    assert_eq!(faults.pending_failures(), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_on_permanent_errors_at_once() {
    let (faulty, faults) = FaultyBackend::wrap(memory());
    let retry = Retry::new(faulty, RetryOptions::default()).unwrap();
    let err = retry.stat(&ns(), "absent").await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(faults.calls(Operation::Stat), 1);
    faults.fail_next(10, BackendErrorKind::Unavailable);
    let err = retry.stat(&ns(), "absent").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable);
    assert_eq!(
        faults.calls(Operation::Stat),
        1 + 4,
        "max_attempts bounds the tries"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_never_replays_uploads() {
    let (faulty, faults) = FaultyBackend::wrap(memory());
    let retry = Retry::new(faulty, RetryOptions::default()).unwrap();
    faults.fail_next(1, BackendErrorKind::Unavailable);
    let body = futures::stream::iter([Ok(Bytes::from_static(b"x"))]).boxed();
    let err = retry.upload(&ns(), "n", 1, body).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable);
    assert_eq!(faults.calls(Operation::Upload), 1);
}

/// A backend that rate-limits its first call, asking for a long wait.
#[derive(Debug)]
struct AsksToWait {
    inner: Arc<dyn Backend>,
    asked: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Backend for AsksToWait {
    fn kind(&self) -> &'static str {
        "asks-to-wait"
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn stat(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<kraken_core::ObjectInfo, BackendError> {
        if !self.asked.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let e = BackendError::new(BackendErrorKind::RateLimited, "slow down");
            return Err(e.with_retry_after(Duration::from_secs(5)));
        }
        self.inner.stat(namespace, name).await
    }
    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<kraken_core::BackendStream, BackendError> {
        self.inner.download(namespace, name, range).await
    }
    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: kraken_core::UploadBody,
    ) -> Result<(), BackendError> {
        self.inner.upload(namespace, name, length, body).await
    }
    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<kraken_core::ListPage, BackendError> {
        self.inner.list(namespace, prefix, page, limit).await
    }
}

#[tokio::test(start_paused = true)]
async fn retry_honours_retry_after() {
    let inner = memory();
    put(&*inner, "n", Bytes::from_static(b"abc")).await;
    let asks = AsksToWait {
        inner,
        asked: Default::default(),
    };
    let retry = Retry::new(Arc::new(asks), fast_retry()).unwrap();
    let start = tokio::time::Instant::now();
    assert_eq!(retry.stat(&ns(), "n").await.unwrap().size, 3);
    assert!(start.elapsed() >= Duration::from_secs(5), "waited as asked");

    // A wait past the time budget is not taken: the error comes back.
    let inner = memory();
    let asks = AsksToWait {
        inner,
        asked: Default::default(),
    };
    let short = RetryOptions {
        max_elapsed: Duration::from_secs(1),
        ..fast_retry()
    };
    let retry = Retry::new(Arc::new(asks), short).unwrap();
    let err = retry.stat(&ns(), "n").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::RateLimited);
}

#[tokio::test(start_paused = true)]
async fn timeout_fires_on_slow_calls() {
    let (faulty, faults) = FaultyBackend::wrap(memory());
    put(&*faulty, "n", Bytes::from_static(b"abc")).await;
    faults.set_latency(Duration::from_secs(60));
    let options = TimeoutOptions {
        stat: Duration::from_secs(2),
        download_start: Duration::from_secs(2),
        ..TimeoutOptions::default()
    };
    let timeout = Timeout::new(faulty, options).unwrap();
    let start = tokio::time::Instant::now();
    let err = timeout.stat(&ns(), "n").await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable);
    assert!(err.is_retryable());
    assert!(start.elapsed() < Duration::from_secs(60));
    let err = timeout.download(&ns(), "n", None).await.err().unwrap();
    assert_eq!(err.kind(), BackendErrorKind::Unavailable);
    faults.set_latency(Duration::ZERO);
    assert_eq!(timeout.stat(&ns(), "n").await.unwrap().size, 3);
}

#[tokio::test]
async fn throttle_slows_a_download_to_its_cap() {
    let inner = memory();
    let data = Bytes::from(vec![7u8; 3 * 1024 * 1024]);
    put(&*inner, "big", data.clone()).await;
    let caps = ThrottleOptions {
        download: Some(ByteSize::mib(2)),
        upload: None,
    };
    let throttle = Throttle::new(inner, caps);
    let start = std::time::Instant::now();
    assert_eq!(read_all(&throttle, "big").await.unwrap().len(), data.len());
    let elapsed = start.elapsed();
    // 3 MiB at 2 MiB/s, less the small initial burst: about 1.45 s.
    assert!(elapsed >= Duration::from_millis(1200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn observed_counts_calls_errors_and_bytes() {
    let (faulty, faults) = FaultyBackend::wrap(memory());
    let observed = Observed::new(faulty);
    put(&observed, "n", Bytes::from_static(b"hello")).await;
    assert_eq!(read_all(&observed, "n").await.unwrap(), b"hello");
    assert!(observed.stat(&ns(), "absent").await.is_err());
    faults.set_download_fault(DownloadFault::FailAfter { after: 2 });
    assert!(read_all(&observed, "n").await.is_err());
    let stats = observed.stats();
    assert_eq!((stats.upload.calls, stats.upload.bytes), (1, 5));
    assert_eq!(stats.download.calls, 2);
    assert_eq!(stats.download.bytes, 5 + 2);
    assert_eq!(stats.download.errors, 1, "a stream failing midway counts");
    assert_eq!((stats.stat.calls, stats.stat.errors), (1, 1));
    assert_eq!(stats.list.calls, 0);
}

#[tokio::test]
async fn router_picks_the_first_anchored_match() {
    let (tags, blobs) = (
        Arc::new(MemoryBackend::new()),
        Arc::new(MemoryBackend::new()),
    );
    let router = NamespaceRouter::new([
        ("library/.*", tags.clone() as Arc<dyn Backend>),
        (".*", blobs.clone() as Arc<dyn Backend>),
    ])
    .unwrap();
    let library = Namespace::new("library/ubuntu").unwrap();
    let other = Namespace::new("foo/library/x").unwrap();
    assert!(Arc::ptr_eq(
        router.route(&library).unwrap(),
        &(tags as Arc<dyn Backend>)
    ));
    assert!(
        Arc::ptr_eq(router.route(&other).unwrap(), &(blobs as Arc<dyn Backend>)),
        "patterns are anchored: library/.* does not match foo/library/x"
    );

    let strict = NamespaceRouter::new([("library/.*", memory())]).unwrap();
    assert!(matches!(strict.route(&other), Err(Error::NoRoute { .. })));
    let err = strict.stat(&other, "n").await.unwrap_err();
    assert!(
        err.is_not_found() && err.message().contains("foo/library/x"),
        "{err}"
    );
    let body = futures::stream::iter([Ok(Bytes::from_static(b"x"))]).boxed();
    let err = strict.upload(&other, "n", 1, body).await.unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Unsupported);
}

#[test]
fn router_rejects_bad_patterns_and_read_only_push_targets() {
    let err = NamespaceRouter::new([("library/(", memory())]).unwrap_err();
    assert!(err.to_string().contains("library/("), "{err}");
    let read_only = Arc::new(MemoryBackend::with_capabilities(Capabilities {
        write: false,
        list: false,
    }));
    let router = NamespaceRouter::new([
        ("mirror/.*", read_only as Arc<dyn Backend>),
        (".*", memory()),
    ])
    .unwrap();
    assert!(matches!(
        router.require_writable("mirror/ubuntu"),
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        router.require_writable("mirror/.*"),
        Err(Error::ReadOnly { .. })
    ));
    router.require_writable("team/app").unwrap();
    router.require_writable(".*").unwrap();
    assert!(matches!(
        router.require_writable("nowhere/.*"),
        Err(Error::UnknownPattern { .. })
    ));
}

#[tokio::test]
async fn fetch_verified_refuses_damaged_bytes() {
    let (faulty, faults) = FaultyBackend::wrap(memory());
    let data = Bytes::from_static(b"layer bytes");
    let digest = Digest::sha256_of(&data);
    put(&*faulty, &digest.to_string(), data.clone()).await;
    assert_eq!(
        fetch_verified(&*faulty, &ns(), &digest, 1 << 20)
            .await
            .unwrap(),
        data
    );

    faults.set_download_fault(DownloadFault::FlipByte { at: 3 });
    let err = fetch_verified(&*faulty, &ns(), &digest, 1 << 20)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Corrupt);
    let message = err.to_string();
    let mut damaged = data.to_vec();
    damaged[3] ^= 0xff;
    let actual = Digest::sha256_of(&damaged);
    for part in [
        "memory",
        "library/ubuntu",
        &digest.to_string(),
        &actual.to_string(),
    ] {
        assert!(message.contains(part), "{message} names {part}");
    }

    faults.set_download_fault(DownloadFault::None);
    let err = fetch_verified(&*faulty, &ns(), &digest, 4)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Other);
}
