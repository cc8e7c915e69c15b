//! Wrappers that add a policy to any backend and are backends themselves:
//! [`Retry`], [`Timeout`], [`Throttle`] and [`Observed`].
//!
//! Each policy is written once here instead of in every backend, so an
//! S3 backend and an HTTP one retry, time out, throttle and count the same
//! way. Wrappers stack in any order; a usual stack, outermost first, is
//! `Observed(Retry(Timeout(Throttle(backend))))`, so each attempt has its
//! own deadline and the counters see what callers see.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytesize::ByteSize;
use futures::stream::{self, StreamExt};
use kraken_core::{
    Backend, BackendError, BackendStream, Bandwidth, Capabilities, ListPage, Namespace, ObjectInfo,
    UploadBody,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::Instrument;

use crate::Error;

/// Options of [`Retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOptions {
    /// Attempts per call, the first included. Default 4.
    pub max_attempts: u32,
    /// The backoff before the first retry; each later one doubles it.
    /// Default `100ms`.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest backoff. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// No retry starts once this long has passed since the first attempt,
    /// nor when its wait would end past it. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryOptions {
    /// Checks there is at least one attempt and the backoffs are ordered.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the bad option.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "must be at least 1"));
        }
        if self.initial_backoff > self.max_backoff {
            return Err(invalid("initial_backoff", "must not exceed max_backoff"));
        }
        Ok(())
    }

    /// Returns the jittered wait before retry number `retry` (from 0): a
    /// random time up to the doubled backoff ("full jitter"), so clients
    /// that failed together do not retry together.
    fn backoff(&self, retry: u32) -> Duration {
        let doubled = self.initial_backoff.saturating_mul(1 << retry.min(20));
        let cap = doubled.min(self.max_backoff);
        cap.mul_f64(rand::random::<f64>())
    }
}

fn invalid(option: &'static str, reason: &str) -> Error {
    Error::InvalidOption {
        option,
        reason: reason.to_owned(),
    }
}

/// Retries retryable failures with jittered exponential backoff, waiting at
/// least as long as a backend's `retry_after` asks.
///
/// Retried are `stat`, `list`, and `download` up to its first byte: a
/// download whose call fails, or whose stream fails before yielding
/// anything, starts again. A stream that fails after some bytes is passed
/// on, since the caller has already used them and resuming is its call.
/// Uploads are never retried: the body is a stream the first attempt
/// consumed and cannot be rebuilt here; callers that hold the bytes (the
/// origin's write-back queue) retry whole uploads themselves.
#[derive(Debug, Clone)]
pub struct Retry {
    inner: Arc<dyn Backend>,
    options: RetryOptions,
}

impl Retry {
    /// Wraps `inner`.
    ///
    /// # Errors
    ///
    /// When `options` do not validate.
    pub fn new(inner: Arc<dyn Backend>, options: RetryOptions) -> Result<Self, Error> {
        options.validate()?;
        Ok(Retry { inner, options })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the budget of
    /// attempts or time is spent.
    async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let deadline = Instant::now() + self.options.max_elapsed;
        let mut tries = 0;
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            tries += 1;
            if !error.is_retryable() || tries >= self.options.max_attempts {
                return Err(error);
            }
            let wait = self
                .options
                .backoff(tries - 1)
                .max(error.retry_after().unwrap_or_default());
            if Instant::now() + wait > deadline {
                return Err(error);
            }
            tracing::debug!(backend = self.inner.kind(), what, %error, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

#[async_trait]
impl Backend for Retry {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        self.run("stat", || self.inner.stat(namespace, name)).await
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        self.run("download", || async {
            let mut body = self.inner.download(namespace, name, range.clone()).await?;
            match body.next().await {
                None => Ok(stream::empty().boxed()),
                Some(Err(e)) => Err(e),
                Some(Ok(first)) => Ok(stream::once(async { Ok(first) }).chain(body).boxed()),
            }
        })
        .await
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        self.inner.upload(namespace, name, length, body).await
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        self.run("list", || self.inner.list(namespace, prefix, page, limit))
            .await
    }
}

/// Options of [`Timeout`]; every limit must be above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutOptions {
    /// A whole `stat`. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub stat: Duration,
    /// A whole `list` page. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub list: Duration,
    /// A download's call, until its stream is handed back. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub download_start: Duration,
    /// The longest wait for the next chunk of a download; the whole
    /// download is not bounded, since it grows with the object. Default
    /// `60s`.
    #[serde(with = "humantime_serde")]
    pub download_idle: Duration,
    /// A whole upload. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub upload: Duration,
}

impl Default for TimeoutOptions {
    fn default() -> Self {
        TimeoutOptions {
            stat: Duration::from_secs(30),
            list: Duration::from_secs(30),
            download_start: Duration::from_secs(60),
            download_idle: Duration::from_secs(60),
            upload: Duration::from_secs(15 * 60),
        }
    }
}

impl TimeoutOptions {
    /// Checks every limit is above zero.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the first zero limit.
    pub fn validate(&self) -> Result<(), Error> {
        let all = [
            ("stat", self.stat),
            ("list", self.list),
            ("download_start", self.download_start),
            ("download_idle", self.download_idle),
            ("upload", self.upload),
        ];
        match all.into_iter().find(|(_, d)| d.is_zero()) {
            Some((option, _)) => Err(invalid(option, "must be above zero")),
            None => Ok(()),
        }
    }
}

/// Bounds each operation in time; one that runs over fails with a
/// retryable `Unavailable` error, so a [`Retry`] outside it tries again.
#[derive(Debug, Clone)]
pub struct Timeout {
    inner: Arc<dyn Backend>,
    options: TimeoutOptions,
}

impl Timeout {
    /// Wraps `inner`.
    ///
    /// # Errors
    ///
    /// When `options` do not validate.
    pub fn new(inner: Arc<dyn Backend>, options: TimeoutOptions) -> Result<Self, Error> {
        options.validate()?;
        Ok(Timeout { inner, options })
    }

    async fn limit<T>(
        &self,
        what: &str,
        limit: Duration,
        work: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(timed_out(self.inner.kind(), what, limit)),
        }
    }
}

fn timed_out(kind: &str, what: &str, limit: Duration) -> BackendError {
    BackendError::unavailable(format!("{kind} backend: {what} timed out after {limit:?}"))
        .with_retryable(true)
}

#[async_trait]
impl Backend for Timeout {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let work = self.inner.stat(namespace, name);
        self.limit("stat", self.options.stat, work).await
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let work = self.inner.download(namespace, name, range);
        let body = self
            .limit("download", self.options.download_start, work)
            .await?;
        let (kind, idle) = (self.inner.kind(), self.options.download_idle);
        let guarded = stream::unfold(Some(body), move |body| async move {
            let mut body = body?;
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(item)) => Some((item, Some(body))),
                Ok(None) => None,
                Err(_) => Some((Err(timed_out(kind, "download chunk", idle)), None)),
            }
        });
        Ok(guarded.boxed())
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let work = self.inner.upload(namespace, name, length, body);
        self.limit("upload", self.options.upload, work).await
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        let work = self.inner.list(namespace, prefix, page, limit);
        self.limit("list", self.options.list, work).await
    }
}

/// Options of [`Throttle`]: byte-rate caps, none by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleOptions {
    /// Download bytes per second, such as `"100MiB"`; no cap when absent.
    pub download: Option<ByteSize>,
    /// Upload bytes per second; no cap when absent.
    pub upload: Option<ByteSize>,
}

/// Caps the bytes per second flowing through downloads and uploads, each
/// direction shared by every call through this wrapper.
#[derive(Debug, Clone)]
pub struct Throttle {
    inner: Arc<dyn Backend>,
    download: Arc<Bandwidth>,
    upload: Arc<Bandwidth>,
}

impl Throttle {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, options: ThrottleOptions) -> Self {
        Throttle {
            inner,
            download: Arc::new(Bandwidth::new(options.download)),
            upload: Arc::new(Bandwidth::new(options.upload)),
        }
    }
}

/// Makes each item of `body` wait for its bytes' tokens before it passes.
fn throttled<T, E>(
    body: impl futures::Stream<Item = Result<T, E>> + Send + 'static,
    bandwidth: Arc<Bandwidth>,
    len: fn(&T) -> usize,
) -> impl futures::Stream<Item = Result<T, E>> + Send + 'static
where
    T: Send + 'static,
    E: Send + 'static,
{
    body.then(move |item| {
        let bandwidth = bandwidth.clone();
        async move {
            if let Ok(chunk) = &item {
                bandwidth.acquire(len(chunk)).await;
            }
            item
        }
    })
}

#[async_trait]
impl Backend for Throttle {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        self.inner.stat(namespace, name).await
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let body = self.inner.download(namespace, name, range).await?;
        Ok(throttled(body, self.download.clone(), |c| c.len()).boxed())
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let body = throttled(body, self.upload.clone(), |c| c.len()).boxed();
        self.inner.upload(namespace, name, length, body).await
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        self.inner.list(namespace, prefix, page, limit).await
    }
}

/// Counters of one operation, as read by [`Observed::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct OperationStats {
    /// Calls started.
    pub calls: u64,
    /// Calls that failed, counting downloads whose stream failed midway.
    pub errors: u64,
    /// Bytes downloaded or uploaded; zero for `stat` and `list`.
    pub bytes: u64,
}

/// A snapshot of an [`Observed`] backend's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ObservedStats {
    /// Counters of `stat`.
    pub stat: OperationStats,
    /// Counters of `download`.
    pub download: OperationStats,
    /// Counters of `upload`.
    pub upload: OperationStats,
    /// Counters of `list`.
    pub list: OperationStats,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn record<T>(&self, result: &Result<T, BackendError>) {
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> OperationStats {
        OperationStats {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
struct AllCounters {
    stat: Counters,
    download: Counters,
    upload: Counters,
    list: Counters,
}

/// Runs each call in a tracing span carrying the `backend` kind,
/// `namespace` and `name`, and counts calls, errors and bytes per
/// operation.
///
/// The counters are plain atomics read through [`Observed::stats`]; the
/// binaries export them to Prometheus.
#[derive(Debug, Clone)]
pub struct Observed {
    inner: Arc<dyn Backend>,
    counters: Arc<AllCounters>,
}

impl Observed {
    /// Wraps `inner` with zeroed counters.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Observed {
            inner,
            counters: Arc::default(),
        }
    }

    /// Returns the counters as they are now.
    pub fn stats(&self) -> ObservedStats {
        let c = &self.counters;
        ObservedStats {
            stat: c.stat.snapshot(),
            download: c.download.snapshot(),
            upload: c.upload.snapshot(),
            list: c.list.snapshot(),
        }
    }

    fn span(&self, op: &'static str, namespace: &Namespace, name: &str) -> tracing::Span {
        let backend = self.inner.kind();
        tracing::debug_span!("backend", backend, op, %namespace, name)
    }
}

#[async_trait]
impl Backend for Observed {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let counters = &self.counters.stat;
        counters.call();
        let span = self.span("stat", namespace, name);
        let result = self.inner.stat(namespace, name).instrument(span).await;
        counters.record(&result);
        result
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        self.counters.download.call();
        let span = self.span("download", namespace, name);
        let work = self.inner.download(namespace, name, range);
        let result = work.instrument(span).await;
        self.counters.download.record(&result);
        let all = self.counters.clone();
        let counted = result?.inspect(move |item| {
            let (counter, n) = match item {
                Ok(chunk) => (&all.download.bytes, chunk.len() as u64),
                Err(_) => (&all.download.errors, 1),
            };
            counter.fetch_add(n, Ordering::Relaxed);
        });
        Ok(counted.boxed())
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        let counters = &self.counters.upload;
        counters.call();
        let span = self.span("upload", namespace, name);
        let result = self
            .inner
            .upload(namespace, name, length, body)
            .instrument(span)
            .await;
        counters.record(&result);
        if result.is_ok() {
            counters.bytes.fetch_add(length, Ordering::Relaxed);
        }
        result
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        let counters = &self.counters.list;
        counters.call();
        let span = self.span("list", namespace, prefix);
        let work = self.inner.list(namespace, prefix, page, limit);
        let result = work.instrument(span).await;
        counters.record(&result);
        result
    }
}
