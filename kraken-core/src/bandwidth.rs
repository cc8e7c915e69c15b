//! Token buckets that cap bytes per second: the P2P engine's ingress and
//! egress caps and the backends' throttle use the same one.
//!
//! One bucket shared by every transfer in a direction makes the cap hold
//! however many blobs, peers or requests are active. Tokens are KiB.
//! The bucket holds a twentieth of a second's worth: a large burst would
//! let a host briefly beat its cap, which on a shared link only moves the
//! queue elsewhere. A piece larger than the bucket waits for its tokens in
//! several instalments.

use std::num::NonZeroU32;

use bytesize::ByteSize;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

const TOKEN: u64 = 1024;

/// The smallest bucket, in tokens, so slow caps still pass a frame whole.
const MIN_BURST: u32 = 64;

/// A byte-rate cap; unlimited when built from `None`.
#[derive(Debug)]
pub struct Bandwidth {
    limiter: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl Bandwidth {
    /// Creates a cap of `limit` bytes per second, or no cap.
    pub fn new(limit: Option<ByteSize>) -> Self {
        let limiter = limit.map(|l| {
            let per_second = (l.0 / TOKEN).clamp(1, u64::from(u32::MAX)) as u32;
            let burst = (per_second / 20).max(MIN_BURST);
            let per_second = NonZeroU32::new(per_second).expect("clamped to at least one");
            let burst = NonZeroU32::new(burst).expect("at least the minimum burst");
            let quota = Quota::per_second(per_second).allow_burst(burst);
            (RateLimiter::direct(quota), burst)
        });
        Bandwidth { limiter }
    }

    /// Waits until `bytes` may pass.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe; tokens already taken stay spent.
    pub async fn acquire(&self, bytes: usize) {
        let Some((limiter, burst)) = &self.limiter else {
            return;
        };
        let mut tokens = (bytes as u64).div_ceil(TOKEN);
        while tokens > 0 {
            let now = tokens.min(u64::from(burst.get())) as u32;
            let n = NonZeroU32::new(now).expect("tokens left is positive");
            limiter
                .until_n_ready(n)
                .await
                .expect("instalments never exceed the burst");
            tokens -= u64::from(now);
        }
    }
}
