//! Token buckets that cap piece bytes per second in each direction.
//!
//! One bucket per direction is shared by every connection of the host, so
//! the cap holds however many blobs and peers are active. Tokens are KiB;
//! the bucket holds one second's worth, and a piece larger than that waits
//! for its tokens in several instalments.

use std::num::NonZeroU32;

use bytesize::ByteSize;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

const TOKEN: u64 = 1024;

/// A byte-rate cap; unlimited when built from `None`.
#[derive(Debug)]
pub struct Bandwidth {
    limiter: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

impl Bandwidth {
    /// Creates a cap of `limit` bytes per second, or no cap.
    pub fn new(limit: Option<ByteSize>) -> Self {
        let limiter = limit.map(|l| {
            let per_second = NonZeroU32::new((l.0 / TOKEN).clamp(1, u64::from(u32::MAX)) as u32)
                .expect("clamped to at least one");
            (
                RateLimiter::direct(Quota::per_second(per_second)),
                per_second,
            )
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
