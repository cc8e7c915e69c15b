//! Options of the disk store, as a host's config file spells them.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Settings of a [`DiskStore`](super::DiskStore).
///
/// Durations are human strings (`"90s"`, `"6h"`) and sizes byte-size strings
/// (`"64GiB"`). Every time-to-live accepts `"0s"` to switch that removal off.
/// Build one with [`DiskStoreOptions::new`] and call
/// [`validate`](DiskStoreOptions::validate) before use; `DiskStore::open`
/// validates again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskStoreOptions {
    /// The one directory the store owns. It is created when missing; the
    /// store only ever touches its `cache`, `download`, `upload` and `tmp`
    /// subdirectories. No default: an empty path fails validation.
    pub root: PathBuf,

    /// The most bytes the store may hold, counting cached blobs, the full
    /// length of every download and the bytes of every upload. When an
    /// operation would pass it, least recently used cached blobs that are
    /// neither pinned nor open are evicted; when that cannot free enough,
    /// the operation fails with `StoreFull`. Zero is rejected: a store
    /// without a bound is how hosts run out of disk. Default 16 GiB.
    pub capacity: ByteSize,

    /// How long a cached blob may go unused (not opened, read or committed)
    /// before cleanup removes it. Default `0s`: off, because the capacity
    /// LRU already removes what is not used when space is needed.
    #[serde(with = "humantime_serde")]
    pub cache_tti: Duration,

    /// How long after it was completed a cached blob is removed by cleanup,
    /// used or not. Default `0s`: off.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,

    /// How long a download may go without a piece written before cleanup
    /// treats it as abandoned and removes it. Default 1 hour.
    #[serde(with = "humantime_serde")]
    pub download_ttl: Duration,

    /// How long an upload may go without an append before cleanup treats
    /// it as abandoned and removes it. Default 1 hour.
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,

    /// How often the task started by `spawn_cleanup` runs a cleanup pass.
    /// Must be above zero. Default 10 minutes.
    #[serde(with = "humantime_serde")]
    pub cleanup_interval: Duration,

    /// The most filesystem operations the store runs at once on the
    /// blocking thread pool; further operations wait their turn. Must be
    /// above zero. Default 16.
    pub max_blocking: usize,
}

/// Why a [`DiskStoreOptions`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskStoreOptionsError {
    /// `root` is empty.
    #[error("disk store root must not be empty")]
    EmptyRoot,
    /// `capacity` is zero.
    #[error("disk store capacity must be above zero")]
    ZeroCapacity,
    /// `cleanup_interval` is zero.
    #[error("disk store cleanup_interval must be above zero")]
    ZeroCleanupInterval,
    /// `max_blocking` is zero.
    #[error("disk store max_blocking must be above zero")]
    ZeroMaxBlocking,
}

impl DiskStoreOptions {
    /// Returns the default options for a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DiskStoreOptions {
            root: root.into(),
            ..Self::default()
        }
    }

    /// Checks that the options describe a usable store.
    ///
    /// # Errors
    ///
    /// The first [`DiskStoreOptionsError`] found.
    pub fn validate(&self) -> Result<(), DiskStoreOptionsError> {
        if self.root.as_os_str().is_empty() {
            return Err(DiskStoreOptionsError::EmptyRoot);
        }
        if self.capacity.as_u64() == 0 {
            return Err(DiskStoreOptionsError::ZeroCapacity);
        }
        if self.cleanup_interval.is_zero() {
            return Err(DiskStoreOptionsError::ZeroCleanupInterval);
        }
        if self.max_blocking == 0 {
            return Err(DiskStoreOptionsError::ZeroMaxBlocking);
        }
        Ok(())
    }
}

impl Default for DiskStoreOptions {
    fn default() -> Self {
        const HOUR: Duration = Duration::from_secs(3600);
        DiskStoreOptions {
            root: PathBuf::new(),
            capacity: ByteSize::gib(16),
            cache_tti: Duration::ZERO,
            cache_ttl: Duration::ZERO,
            download_ttl: HOUR,
            upload_ttl: HOUR,
            cleanup_interval: Duration::from_secs(600),
            max_blocking: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_units_and_fills_defaults() {
        let json = r#"{"root": "/var/cache/kraken", "capacity": "2GiB", "cache_tti": "6h"}"#;
        let opts: DiskStoreOptions = serde_json::from_str(json).unwrap();
        assert_eq!(opts.capacity, ByteSize::gib(2));
        assert_eq!(opts.cache_tti, Duration::from_secs(6 * 3600));
        assert_eq!(opts.upload_ttl, DiskStoreOptions::default().upload_ttl);
        assert_eq!(opts.validate(), Ok(()));
    }

    #[test]
    fn rejects_unknown_keys() {
        let json = r#"{"root": "/r", "capacty": "2GiB"}"#;
        assert!(serde_json::from_str::<DiskStoreOptions>(json).is_err());
    }

    #[test]
    fn round_trips_through_serde() {
        let opts = DiskStoreOptions::new("/r");
        let json = serde_json::to_string(&opts).unwrap();
        assert_eq!(
            serde_json::from_str::<DiskStoreOptions>(&json).unwrap(),
            opts
        );
    }

    #[test]
    fn validate_names_the_bad_field() {
        let ok = DiskStoreOptions::new("/r");
        assert_eq!(
            DiskStoreOptions::default().validate(),
            Err(DiskStoreOptionsError::EmptyRoot)
        );
        let cases = [
            (
                DiskStoreOptions {
                    capacity: ByteSize(0),
                    ..ok.clone()
                },
                "capacity",
            ),
            (
                DiskStoreOptions {
                    cleanup_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "cleanup",
            ),
            (
                DiskStoreOptions {
                    max_blocking: 0,
                    ..ok
                },
                "max_blocking",
            ),
        ];
        for (opts, field) in cases {
            let err = opts.validate().unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
