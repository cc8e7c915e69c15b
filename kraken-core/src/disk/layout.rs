//! Where the disk store keeps things, and the small file operations every
//! state transition is built from.
//!
//! Every path below the root is derived here from a [`Digest`] or an
//! [`UploadId`], both validated types, so no caller input ever becomes a
//! path component.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Digest, UploadId};

/// The blob's bytes, in every state.
pub(super) const DATA: &str = "data";
/// The canonical metainfo encoding (`MetaInfo::to_bytes`).
pub(super) const META: &str = "meta";
/// A download's packed piece bitfield.
pub(super) const BITFIELD: &str = "bitfield";
/// An empty marker file whose presence pins the blob.
pub(super) const PINNED: &str = "pinned";
/// Last access as 8 big-endian bytes of Unix seconds, written coarsely.
pub(super) const ACCESS: &str = "access";
/// The file under the root that the open store holds an exclusive lock on.
pub(super) const LOCK: &str = "lock";

/// The two areas that hold blobs keyed by digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Area {
    Cache,
    Download,
}

/// The directory tree under one store root.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    root: PathBuf,
    cache: PathBuf,
    download: PathBuf,
    upload: PathBuf,
    tmp: PathBuf,
}

impl Layout {
    pub(super) fn new(root: &Path) -> Self {
        Layout {
            root: root.to_path_buf(),
            cache: root.join("cache"),
            download: root.join("download"),
            upload: root.join("upload"),
            tmp: root.join("tmp"),
        }
    }

    /// Creates the four top-level directories when missing.
    pub(super) fn create(&self) -> io::Result<()> {
        for dir in [&self.cache, &self.download, &self.upload, &self.tmp] {
            fs::create_dir_all(dir)?;
        }
        Ok(())
    }

    pub(super) fn area(&self, area: Area) -> &Path {
        match area {
            Area::Cache => &self.cache,
            Area::Download => &self.download,
        }
    }

    pub(super) fn uploads(&self) -> &Path {
        &self.upload
    }

    pub(super) fn tmp(&self) -> &Path {
        &self.tmp
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// Returns `<area>/<algorithm>/<hex[0..2]>/<hex[2..4]>/<hex>`.
    pub(super) fn blob_dir(&self, area: Area, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        let mut dir = self.area(area).join(digest.algorithm().name());
        dir.push(&hex[0..2]);
        dir.push(&hex[2..4]);
        dir.push(&hex);
        dir
    }

    pub(super) fn upload_dir(&self, id: &UploadId) -> PathBuf {
        self.upload.join(id.as_str())
    }

    /// Returns a fresh, unused path in `tmp/` for building or discarding
    /// an entry before an atomic rename.
    pub(super) fn scratch(&self) -> PathBuf {
        self.tmp.join(hex::encode(rand::random::<[u8; 16]>()))
    }

    /// Removes a directory tree by first renaming it into `tmp/`, so its
    /// name is free again at once and a crash mid-removal leaves the debris
    /// where the next open clears it. A missing directory is not an error.
    pub(super) fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let trash = self.scratch();
        match fs::rename(dir, &trash) {
            Ok(()) => fs::remove_dir_all(&trash),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves `from` to `to`, creating `to`'s parents, then syncs the parent
    /// so the rename survives a crash. The rename is the commit point: a
    /// failed sync is only logged, since the move has already happened.
    pub(super) fn publish(&self, from: &Path, to: &Path) -> io::Result<()> {
        let parent = to.parent().unwrap_or(to);
        fs::create_dir_all(parent)?;
        fs::rename(from, to)?;
        if let Err(error) = sync_dir(parent) {
            tracing::warn!(path = %parent.display(), %error, "cannot sync directory");
        }
        Ok(())
    }
}

/// Writes `bytes` to a new file at `path` and syncs it.
pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Opens an existing file for positioned reads and writes.
pub(super) fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads the coarse last-access time of a blob directory; `None` when the
/// sidecar is missing or malformed.
pub(super) fn read_access(dir: &Path) -> Option<SystemTime> {
    let bytes = fs::read(dir.join(ACCESS)).ok()?;
    let secs = u64::from_be_bytes(bytes.try_into().ok()?);
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Records `at` as a blob directory's last access. Losing this write only
/// blurs the LRU order after a restart, so it is not synced.
pub(super) fn write_access(dir: &Path, at: SystemTime) -> io::Result<()> {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    fs::write(dir.join(ACCESS), secs.to_be_bytes())
}

/// Returns true when `path` is a regular file, never following a symlink.
pub(super) fn is_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_dirs_are_sharded_by_digest_prefix() {
        let layout = Layout::new(Path::new("/r"));
        let d = Digest::sha256_of(b"");
        let dir = layout.blob_dir(Area::Cache, &d);
        assert_eq!(dir, Path::new("/r/cache/sha256/e3/b0").join(d.hex()));
        let dir = layout.blob_dir(Area::Download, &d);
        assert!(dir.starts_with("/r/download/sha256/e3/b0"));
    }

    #[test]
    fn access_round_trips_at_second_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        write_access(dir.path(), at + Duration::from_millis(300)).unwrap();
        assert_eq!(read_access(dir.path()), Some(at));
        fs::write(dir.path().join(ACCESS), b"garbage").unwrap();
        assert_eq!(read_access(dir.path()), None);
    }
}
