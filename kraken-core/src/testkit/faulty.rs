//! A `Backend` wrapper that fails on command, so tests can show how
//! callers behave when the source of truth is down, slow, rate limiting or
//! lying about its bytes.
//!
//! The wrapper and its control handle share state: a test keeps the
//! [`Faults`] handle, gives the backend to the code under test, and flips
//! faults on and off between steps while reading call counters.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};

use crate::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage, Namespace,
    ObjectInfo, UploadBody,
};

/// One of the backend's four operations, for filters and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// [`Backend::stat`].
    Stat,
    /// [`Backend::download`].
    Download,
    /// [`Backend::upload`].
    Upload,
    /// [`Backend::list`].
    List,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 4] = [
        Operation::Stat,
        Operation::Download,
        Operation::Upload,
        Operation::List,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// How downloads lie about their bytes. Offsets count from the first byte
/// the stream yields, which for a ranged download is the range's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownloadFault {
    /// Downloads are passed through untouched.
    #[default]
    None,
    /// The stream ends cleanly after `keep` bytes, as a backend that
    /// returns a short body with a success status.
    Truncate {
        /// Bytes yielded before the stream ends.
        keep: u64,
    },
    /// The byte at offset `at` has all its bits flipped, as a backend that
    /// returns damaged content; shorter streams are unchanged.
    FlipByte {
        /// Offset of the damaged byte.
        at: u64,
    },
    /// The stream fails with a retryable `Unavailable` error once it has
    /// yielded `after` bytes, as a connection dropped midway.
    FailAfter {
        /// Bytes yielded before the error.
        after: u64,
    },
}

#[derive(Debug)]
struct State {
    outage: bool,
    fail_next: u32,
    fail_kind: BackendErrorKind,
    targets: [bool; 4],
    latency: Duration,
    download_fault: DownloadFault,
}

impl Default for State {
    fn default() -> Self {
        State {
            outage: false,
            fail_next: 0,
            fail_kind: BackendErrorKind::Unavailable,
            targets: [true; 4],
            latency: Duration::ZERO,
            download_fault: DownloadFault::None,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    calls: [AtomicU64; 4],
}

/// Controls the faults of a [`FaultyBackend`] and reads its call counters.
///
/// Cheap to clone; every clone controls the same backend. Outages, failures
/// and latency apply to the operations chosen with [`Faults::target`] (all
/// of them at first); download faults apply to every download.
#[derive(Debug, Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Faults {
    /// Starts or ends an outage: while on, every targeted call fails with a
    /// retryable `Unavailable` error without reaching the inner backend.
    pub fn set_outage(&self, on: bool) {
        self.state().outage = on;
    }

    /// Makes the next `n` targeted calls fail with an error of `kind`
    /// (retryable when the kind usually is), replacing any earlier count.
    pub fn fail_next(&self, n: u32, kind: BackendErrorKind) {
        let mut state = self.state();
        state.fail_next = n;
        state.fail_kind = kind;
    }

    /// Returns how many injected failures from [`Faults::fail_next`] remain.
    pub fn pending_failures(&self) -> u32 {
        self.state().fail_next
    }

    /// Limits outages, injected failures and latency to `operations`.
    pub fn target(&self, operations: &[Operation]) {
        let mut targets = [false; 4];
        for op in operations {
            targets[op.index()] = true;
        }
        self.state().targets = targets;
    }

    /// Delays every targeted call by `latency` before it runs.
    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    /// Makes every later download lie in the way `fault` describes.
    pub fn set_download_fault(&self, fault: DownloadFault) {
        self.state().download_fault = fault;
    }

    /// Turns every fault off and targets all operations again; counters
    /// are kept.
    pub fn clear(&self) {
        *self.state() = State::default();
    }

    /// Returns how many times `op` was called, failed calls included.
    pub fn calls(&self, op: Operation) -> u64 {
        self.shared.calls[op.index()].load(Ordering::Relaxed)
    }

    /// Returns how many calls were made, across operations.
    pub fn total_calls(&self) -> u64 {
        Operation::ALL.iter().map(|&op| self.calls(op)).sum()
    }

    /// Sets every call counter back to zero.
    pub fn reset_calls(&self) {
        for counter in &self.shared.calls {
            counter.store(0, Ordering::Relaxed);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a plain field store, so a poisoned lock still
        // guards consistent state.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a call, waits out any latency and decides whether it fails.
    async fn before(&self, op: Operation) -> Result<(), BackendError> {
        self.shared.calls[op.index()].fetch_add(1, Ordering::Relaxed);
        let latency = {
            let state = self.state();
            if state.targets[op.index()] {
                state.latency
            } else {
                Duration::ZERO
            }
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        self.injected_failure(op).map_or(Ok(()), Err)
    }

    fn injected_failure(&self, op: Operation) -> Option<BackendError> {
        let mut state = self.state();
        if !state.targets[op.index()] {
            return None;
        }
        if state.outage {
            return Some(BackendError::unavailable("injected outage"));
        }
        if state.fail_next == 0 {
            return None;
        }
        state.fail_next -= 1;
        Some(BackendError::new(state.fail_kind, "injected failure"))
    }
}

/// Wraps a backend and injects the failures its [`Faults`] handle asks
/// for; with no fault set it behaves exactly as the inner backend.
#[derive(Debug)]
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Faults,
}

impl FaultyBackend {
    /// Wraps `inner` and returns the wrapper with its control handle.
    pub fn wrap(inner: Arc<dyn Backend>) -> (Arc<FaultyBackend>, Faults) {
        let faults = Faults {
            shared: Arc::default(),
        };
        let backend = FaultyBackend {
            inner,
            faults: faults.clone(),
        };
        (Arc::new(backend), faults)
    }

    /// Returns another handle on this backend's faults.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        self.faults.before(Operation::Stat).await?;
        self.inner.stat(namespace, name).await
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        self.faults.before(Operation::Download).await?;
        let body = self.inner.download(namespace, name, range).await?;
        let fault = self.faults.state().download_fault;
        Ok(distort(body, fault))
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        self.faults.before(Operation::Upload).await?;
        self.inner.upload(namespace, name, length, body).await
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        self.faults.before(Operation::List).await?;
        self.inner.list(namespace, prefix, page, limit).await
    }
}

/// Where a distorted stream is: the inner stream, how many bytes it has
/// yielded, and whether it has ended.
struct Cursor {
    inner: BackendStream,
    pos: u64,
    done: bool,
}

fn distort(inner: BackendStream, fault: DownloadFault) -> BackendStream {
    if fault == DownloadFault::None {
        return inner;
    }
    let cursor = Cursor {
        inner,
        pos: 0,
        done: false,
    };
    stream::unfold(cursor, move |mut cursor| async move {
        let item = next_distorted(&mut cursor, fault).await?;
        Some((item, cursor))
    })
    .boxed()
}

async fn next_distorted(
    cursor: &mut Cursor,
    fault: DownloadFault,
) -> Option<Result<Bytes, BackendError>> {
    if cursor.done {
        return None;
    }
    match fault {
        DownloadFault::Truncate { keep } if cursor.pos >= keep => return None,
        DownloadFault::FailAfter { after } if cursor.pos >= after => {
            cursor.done = true;
            return Some(Err(BackendError::unavailable("injected failure midway")));
        }
        _ => {}
    }
    let chunk = match cursor.inner.next().await? {
        Ok(chunk) => chunk,
        Err(e) => {
            cursor.done = true;
            return Some(Err(e));
        }
    };
    let chunk = reshape(chunk, cursor.pos, fault);
    cursor.pos += chunk.len() as u64;
    Some(Ok(chunk))
}

/// Cuts or damages a chunk that starts at stream offset `pos`.
fn reshape(chunk: Bytes, pos: u64, fault: DownloadFault) -> Bytes {
    let end = pos + chunk.len() as u64;
    match fault {
        DownloadFault::Truncate { keep: limit } | DownloadFault::FailAfter { after: limit }
            if end > limit =>
        {
            chunk.slice(..(limit - pos) as usize)
        }
        DownloadFault::FlipByte { at } if (pos..end).contains(&at) => {
            let mut damaged = BytesMut::from(&chunk[..]);
            damaged[(at - pos) as usize] ^= 0xff;
            damaged.freeze()
        }
        _ => chunk,
    }
}
