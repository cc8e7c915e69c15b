//! The behaviour suite every `Scheduler` implementation runs.
//!
//! A scheduler cannot be checked alone: it needs a swarm or origins that
//! hold blobs, and a local store it commits into. A [`SchedulerHarness`]
//! supplies both, so the same suite runs against a single in-process
//! scheduler reading a backend and against a whole in-process cluster.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{assert_err, ok, random_bytes, random_namespace};
use crate::{BlobState, BlobStore, ByteRange, Digest, Error, Namespace, Scheduler};

/// How long any single scheduler call may take before the suite calls it
/// hung.
const PATIENCE: Duration = Duration::from_secs(30);

/// How long a download of a blob already in the local store may take.
const AT_ONCE: Duration = Duration::from_secs(2);

/// What the scheduler suite needs around the scheduler under test.
#[async_trait]
pub trait SchedulerHarness: Send + Sync {
    /// Returns the scheduler under test.
    fn scheduler(&self) -> Arc<dyn Scheduler>;

    /// Returns the local store the scheduler commits downloads into.
    fn store(&self) -> Arc<dyn BlobStore>;

    /// Makes `data` available to the swarm or origins under `namespace`,
    /// without putting it in the local store, and returns its digest.
    async fn publish(&self, namespace: &Namespace, data: Bytes) -> Digest;
}

/// Checks the scheduler of `harness` against the contract of
/// [`Scheduler`].
///
/// - a download commits the verified blob to the local store;
/// - concurrent downloads of one digest all succeed;
/// - a download of a blob already cached resolves at once;
/// - streams of full, from-offset, inclusive (also clamped) and suffix
///   ranges yield exactly the right slice with the right `length` and
///   `range`, both for a blob not yet downloaded and for a cached one;
/// - an unsatisfiable range fails with `RangeNotSatisfiable`;
/// - a download or stream of a digest nobody has fails with `NotFound`
///   in bounded time, and cancelling it never leaves it hanging;
/// - seeding a blob the store lacks fails with `NotFound`, seeding a
///   cached one succeeds;
/// - `bytes_in` grows with a download.
///
/// Every call is bounded by a 30 s timeout, so a hang fails the check
/// instead of the test run.
///
/// # Panics
///
/// On the first broken contract, with a message naming the check.
pub async fn scheduler_suite(harness: &dyn SchedulerHarness) {
    let suite = Suite {
        scheduler: harness.scheduler(),
        store: harness.store(),
        ns: random_namespace("scheduler"),
        harness,
    };
    suite.download_commits().await;
    suite.concurrent_downloads().await;
    suite.streams().await;
    suite.unsatisfiable().await;
    suite.unavailable().await;
    suite.seed().await;
}

struct Suite<'a> {
    harness: &'a dyn SchedulerHarness,
    scheduler: Arc<dyn Scheduler>,
    store: Arc<dyn BlobStore>,
    ns: Namespace,
}

/// Awaits `fut`, failing `check` if it takes longer than `limit`.
async fn bounded<T>(check: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{check}: no answer within {limit:?}"),
    }
}

impl Suite<'_> {
    async fn publish(&self, len: usize) -> (Bytes, Digest) {
        let data = random_bytes(len);
        let digest = self.harness.publish(&self.ns, data.clone()).await;
        assert_eq!(
            digest,
            Digest::sha256_of(&data),
            "scheduler_suite/publish: wrong digest"
        );
        (data, digest)
    }

    async fn download(&self, check: &str, digest: &Digest, limit: Duration) {
        let result = bounded(check, limit, self.scheduler.download(&self.ns, digest)).await;
        ok(check, result);
    }

    async fn download_commits(&self) {
        let check = "scheduler_suite/download commits";
        let (data, digest) = self.publish(300 * 1024 + 5).await;
        let before = self.scheduler.stats().bytes_in;
        self.download(check, &digest, PATIENCE).await;
        self.expect_cached(check, &digest, &data).await;
        let after = self.scheduler.stats().bytes_in;
        assert!(
            after > before,
            "scheduler_suite/bytes_in: stayed at {before} after a download"
        );

        let check = "scheduler_suite/download of a cached blob";
        self.download(check, &digest, AT_ONCE).await;
    }

    async fn expect_cached(&self, check: &str, digest: &Digest, data: &Bytes) {
        let stat = ok(check, self.store.stat(digest).await);
        assert_eq!(
            stat.state,
            BlobState::Cached,
            "{check}: blob is cached in the store"
        );
        let reader = ok(check, self.store.open(digest).await);
        let got = ok(check, reader.read_at(0, data.len()).await);
        assert!(
            got == data,
            "{check}: the store holds other bytes than were published"
        );
    }

    async fn concurrent_downloads(&self) {
        let check = "scheduler_suite/concurrent downloads";
        let (data, digest) = self.publish(200 * 1024).await;
        let calls = (0..4).map(|_| self.scheduler.download(&self.ns, &digest));
        let results = bounded(check, PATIENCE, futures::future::join_all(calls)).await;
        for result in results {
            ok(check, result);
        }
        self.expect_cached(check, &digest, &data).await;
    }

    async fn streams(&self) {
        let (data, digest) = self.publish(100 * 1024 + 7).await;
        let len = data.len() as u64;
        let ranges = [
            (ByteRange::Full, 0..len),
            (ByteRange::From(1000), 1000..len),
            (
                ByteRange::Inclusive {
                    start: 10,
                    end: 20_000,
                },
                10..20_001,
            ),
            (
                ByteRange::Inclusive {
                    start: len - 3,
                    end: len + 50,
                },
                len - 3..len,
            ),
            (ByteRange::Suffix(77), len - 77..len),
            (ByteRange::Suffix(len + 10), 0..len),
        ];
        // The first stream runs while the blob is still downloading, the
        // rest read the cached blob.
        for (range, expected) in ranges {
            let check = format!("scheduler_suite/stream {range:?}");
            let stream = self.scheduler.stream(&self.ns, &digest, range);
            let stream = ok(&check, bounded(&check, PATIENCE, stream).await);
            assert_eq!(stream.length, len, "{check}: length");
            assert_eq!(stream.range, expected, "{check}: range");
            let got = bounded(&check, PATIENCE, collect(&check, stream.body)).await;
            let want = data.slice(expected.start as usize..expected.end as usize);
            assert!(
                got == want,
                "{check}: {} bytes differ from the blob's slice",
                got.len()
            );
        }
    }

    async fn unsatisfiable(&self) {
        let check = "scheduler_suite/unsatisfiable range";
        let (data, digest) = self.publish(1000).await;
        let len = data.len() as u64;
        for range in [
            ByteRange::From(len),
            ByteRange::Inclusive {
                start: len + 5,
                end: len + 10,
            },
            ByteRange::Suffix(0),
        ] {
            let stream = self.scheduler.stream(&self.ns, &digest, range);
            let result = bounded(check, PATIENCE, stream).await;
            assert_err!(
                format!("{check} {range:?}"),
                result,
                Error::RangeNotSatisfiable { .. }
            );
        }
    }

    async fn unavailable(&self) {
        let check = "scheduler_suite/unknown digest";
        let digest = Digest::sha256_of(&random_bytes(32));
        let result = bounded(check, PATIENCE, self.scheduler.download(&self.ns, &digest)).await;
        assert_err!(check, result, Error::NotFound(d) if d == digest);
        let stream = self.scheduler.stream(&self.ns, &digest, ByteRange::Full);
        assert_err!(
            check,
            bounded(check, PATIENCE, stream).await,
            Error::NotFound(_)
        );
        assert_err!(check, self.store.stat(&digest).await, Error::NotFound(_));

        // A cancel may land before the scheduler gives up or after; either
        // way the call must end.
        let check = "scheduler_suite/cancel";
        let digest = Digest::sha256_of(&random_bytes(32));
        let pending = self.scheduler.download(&self.ns, &digest);
        let cancel = async { self.scheduler.cancel(&digest) };
        let (result, ()) = bounded(check, PATIENCE, futures::future::join(pending, cancel)).await;
        assert_err!(check, result, Error::Cancelled | Error::NotFound(_));
    }

    async fn seed(&self) {
        let check = "scheduler_suite/seed";
        let (data, digest) = self.publish(5000).await;
        let missing = bounded(check, PATIENCE, self.scheduler.seed(&self.ns, &digest)).await;
        assert_err!(check, missing, Error::NotFound(d) if d == digest);
        self.download(check, &digest, PATIENCE).await;
        self.expect_cached(check, &digest, &data).await;
        let cached = bounded(check, PATIENCE, self.scheduler.seed(&self.ns, &digest)).await;
        ok(check, cached);
    }
}

async fn collect(
    check: &str,
    mut body: futures::stream::BoxStream<'static, crate::Result<Bytes>>,
) -> Bytes {
    let mut data = BytesMut::new();
    while let Some(chunk) = body.next().await {
        data.extend_from_slice(&ok(check, chunk));
    }
    data.freeze()
}
