//! Zero-copy reads of a cached blob through a memory map.

use std::fmt;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{BlobReader, Digest, Error, Result};

/// A cached blob mapped into memory; every read is a slice of the map.
///
/// The reader holds a clone of its entry's `users` token, which is what
/// marks the blob in use and keeps eviction away until it is dropped.
pub(super) struct DiskReader {
    digest: Digest,
    bytes: Bytes,
    _users: Arc<()>,
}

impl DiskReader {
    /// Maps the data file at `path`. Blocking.
    pub(super) fn map(digest: Digest, path: &Path, users: Arc<()>) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let bytes = if file.metadata()?.len() == 0 {
            Bytes::new()
        } else {
            // SAFETY: a cached data file is complete before it is published
            // and is never written or truncated afterwards; deleting it only
            // unlinks the name, which leaves the mapping valid. Only another
            // process writing inside the store's root could break this.
            let map = unsafe { memmap2::Mmap::map(&file)? };
            Bytes::from_owner(map)
        };
        Ok(DiskReader {
            digest,
            bytes,
            _users: users,
        })
    }
}

#[async_trait]
impl BlobReader for DiskReader {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Slices the map without copying. Pages are read from disk when the
    /// caller first touches them, not here.
    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let length = self.len();
        let end = offset.saturating_add(len as u64);
        if end > length {
            return Err(Error::RangeNotSatisfiable {
                start: offset,
                end,
                length,
            });
        }
        Ok(self.bytes.slice(offset as usize..end as usize))
    }
}

impl fmt::Debug for DiskReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskReader")
            .field("digest", &self.digest)
            .field("len", &self.bytes.len())
            .finish()
    }
}
