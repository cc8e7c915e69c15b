//! Time-based removal: cached blobs idle or old past their limits, and
//! downloads and uploads nobody has touched for too long.
//!
//! Capacity eviction frees space when it is needed; cleanup frees it when
//! content has simply stopped being useful. Neither touches a pinned blob,
//! a blob that is open, or anything an operation is working on right now.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::debug;

use super::index::{Entry, Index, State, Upload, Victim};
use super::layout::Area;
use super::ops::Inner;
use crate::UploadId;

/// What one cleanup pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Cached blobs removed for being idle past `cache_tti` or older than
    /// `cache_ttl`.
    pub cached: usize,
    /// Downloads removed for having no piece written for `download_ttl`.
    pub downloads: usize,
    /// Uploads removed for having no append for `upload_ttl`.
    pub uploads: usize,
    /// Bytes no longer counted against capacity.
    pub bytes: u64,
}

impl CleanupReport {
    /// Returns true when the pass removed nothing.
    pub fn is_empty(&self) -> bool {
        self.cached + self.downloads + self.uploads == 0
    }
}

type UploadGuard = tokio::sync::OwnedMutexGuard<Upload>;

/// Returns whether `since` lies more than `limit` before `now`; a zero
/// limit is off.
fn expired(now: SystemTime, since: SystemTime, limit: Duration) -> bool {
    !limit.is_zero() && now.duration_since(since).unwrap_or_default() >= limit
}

impl Inner {
    /// Runs one pass. Blocking.
    pub(super) fn cleanup(&self) -> CleanupReport {
        let now = SystemTime::now();
        let mut report = CleanupReport::default();
        let (blobs, uploads) = {
            let mut index = self.index();
            (
                self.expired_blobs(&mut index, now),
                self.expired_uploads(&index, now),
            )
        };
        for (area, victim) in blobs {
            debug!(digest = %victim.digest, ?area, "removing expired blob");
            match area {
                Area::Cache => report.cached += 1,
                Area::Download => report.downloads += 1,
            }
            report.bytes += victim.length;
            self.remove_blob_files(area, &victim);
        }
        for (id, mut upload) in uploads {
            debug!(upload = %id, "removing abandoned upload");
            report.uploads += 1;
            report.bytes += upload.size;
            self.end_upload(&id, &mut upload);
        }
        self.gates.prune();
        report
    }

    fn is_expired(&self, entry: &Entry, now: SystemTime) -> bool {
        let o = &self.options;
        match entry.state {
            State::Cached => {
                expired(now, entry.last_access, o.cache_tti)
                    || expired(now, entry.completed, o.cache_ttl)
            }
            State::Downloading { .. } => expired(now, entry.last_access, o.download_ttl),
        }
    }

    /// Takes expired, unpinned, unused and idle blobs out of the index.
    fn expired_blobs(&self, index: &mut Index, now: SystemTime) -> Vec<(Area, Victim)> {
        let mut found = Vec::new();
        for (digest, entry) in &index.blobs {
            if entry.pinned || entry.in_use() || !self.is_expired(entry, now) {
                continue;
            }
            let Some(gate) = self.gates.try_write(digest) else {
                continue;
            };
            let area = if entry.is_cached() {
                Area::Cache
            } else {
                Area::Download
            };
            let length = entry.meta.length();
            found.push((
                area,
                Victim {
                    digest: *digest,
                    length,
                    _gate: gate,
                },
            ));
        }
        for (_, victim) in &found {
            index.blobs.remove(&victim.digest);
            index.release(victim.length);
        }
        found
    }

    /// Locks the uploads idle past `upload_ttl` that no request holds.
    fn expired_uploads(&self, index: &Index, now: SystemTime) -> Vec<(UploadId, UploadGuard)> {
        let mut found = Vec::new();
        for (id, upload) in &index.uploads {
            let Ok(guard) = Arc::clone(upload).try_lock_owned() else {
                continue;
            };
            if !guard.gone && expired(now, guard.last_write, self.options.upload_ttl) {
                found.push((id.clone(), guard));
            }
        }
        found
    }
}
