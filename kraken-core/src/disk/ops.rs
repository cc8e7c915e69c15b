//! The store's operations as plain blocking functions.
//!
//! Each runs whole on a blocking thread, holding whatever gate or upload
//! lock its async wrapper acquired. Running the index update in the same
//! closure as the file work means a caller that gives up half way cannot
//! leave the two disagreeing: the closure finishes regardless.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::{debug, info, trace, warn};

use super::index::{self, DownloadFiles, Entry, Gates, Index, State, Upload, Victim};
use super::layout::{self, Area, BITFIELD, DATA, Layout, META, PINNED};
use super::options::DiskStoreOptions;
use super::reader::DiskReader;
use crate::{
    Bitfield, BlobStat, BlobState, Digest, Error, MetaInfo, PieceIndex, PieceLengths, Result,
    UploadId,
};

/// How stale the persisted last access may get before an access rewrites
/// it; keeps reads from turning into a write each.
const ACCESS_RESOLUTION: Duration = Duration::from_secs(300);

/// Everything the store's operations share.
#[derive(Debug)]
pub(super) struct Inner {
    /// Held open for the store's life: the root's exclusive lock.
    pub(super) _lock: std::fs::File,
    pub(super) options: DiskStoreOptions,
    pub(super) layout: Layout,
    pub(super) index: Mutex<Index>,
    pub(super) gates: Gates,
}

/// Fails with `UploadNotFound` when the upload ended while its caller
/// waited for its lock.
pub(super) fn live(id: &UploadId, upload: &Upload) -> Result<()> {
    if upload.gone {
        return Err(Error::UploadNotFound(id.clone()));
    }
    Ok(())
}

fn area_of(entry: &Entry) -> Area {
    if entry.is_cached() {
        Area::Cache
    } else {
        Area::Download
    }
}

impl Inner {
    pub(super) fn index(&self) -> MutexGuard<'_, Index> {
        index::lock(&self.index)
    }

    fn entry_dir(&self, digest: &Digest, entry: &Entry) -> std::path::PathBuf {
        self.layout.blob_dir(area_of(entry), digest)
    }

    /// Counts `needed` more bytes as used, evicting what it must first.
    fn reserve(&self, needed: u64, keep: Option<&Digest>) -> Result<()> {
        let capacity = self.options.capacity.as_u64();
        let victims = self.index().reserve(needed, capacity, &self.gates, keep);
        if let Err(Error::StoreFull { .. }) = &victims {
            debug!(needed, capacity, "store full");
        }
        for v in victims? {
            info!(digest = %v.digest, bytes = v.length, "evicted least recently used blob");
            self.remove_blob_files(Area::Cache, &v);
        }
        Ok(())
    }

    pub(super) fn remove_blob_files(&self, area: Area, victim: &Victim) {
        let dir = self.layout.blob_dir(area, &victim.digest);
        if let Err(error) = self.layout.remove_dir(&dir) {
            warn!(digest = %victim.digest, %error, "cannot remove blob files");
        }
    }

    /// Moves a finished directory to its place in `area`. Holding the
    /// digest's write gate with no index entry, anything already there is
    /// debris of a failed removal, so it goes first.
    fn publish_blob(&self, from: &Path, area: Area, digest: &Digest) -> io::Result<()> {
        let to = self.layout.blob_dir(area, digest);
        self.layout.remove_dir(&to)?;
        self.layout.publish(from, &to)
    }

    /// Records an access; rewrites the sidecar at most every
    /// [`ACCESS_RESOLUTION`], so the order survives restarts roughly.
    fn touch(&self, digest: &Digest) {
        let now = SystemTime::now();
        let dir = {
            let mut index = self.index();
            let Some(entry) = index.blobs.get_mut(digest) else {
                return;
            };
            entry.last_access = now;
            let since = now
                .duration_since(entry.persisted_access)
                .unwrap_or_default();
            if since < ACCESS_RESOLUTION {
                return;
            }
            entry.persisted_access = now;
            self.entry_dir(digest, entry)
        };
        if let Err(error) = layout::write_access(&dir, now) {
            warn!(%digest, %error, "cannot persist last access");
        }
    }

    pub(super) fn create_upload(&self) -> Result<UploadId> {
        let id = UploadId::random();
        let dir = self.layout.upload_dir(&id);
        fs::create_dir(&dir)?;
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.join(DATA));
        let file = opened.inspect_err(|_| {
            let _ = fs::remove_dir_all(&dir);
        })?;
        let upload = Upload {
            size: 0,
            file,
            last_write: SystemTime::now(),
            gone: false,
        };
        self.index()
            .uploads
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(upload)));
        debug!(upload = %id, "upload created");
        Ok(id)
    }

    pub(super) fn upload(&self, id: &UploadId) -> Result<Arc<tokio::sync::Mutex<Upload>>> {
        let upload = self.index().uploads.get(id).cloned();
        upload.ok_or_else(|| Error::UploadNotFound(id.clone()))
    }

    pub(super) fn append_upload(
        &self,
        id: &UploadId,
        up: &mut Upload,
        offset: u64,
        data: &[u8],
    ) -> Result<u64> {
        live(id, up)?;
        if offset != up.size {
            return Err(Error::UploadOffset {
                expected: up.size,
                actual: offset,
            });
        }
        let len = data.len() as u64;
        if len == 0 {
            return Ok(up.size);
        }
        self.reserve(len, None)?;
        if let Err(e) = up.file.write_all_at(data, offset) {
            // Trim a partial write so the file stays exactly `size` long.
            let _ = up.file.set_len(offset);
            self.index().release(len);
            return Err(e.into());
        }
        up.size += len;
        up.last_write = SystemTime::now();
        trace!(upload = %id, size = up.size, "upload appended");
        Ok(up.size)
    }

    /// Ends an upload: forgets it, stops counting its bytes, removes its
    /// files.
    pub(super) fn end_upload(&self, id: &UploadId, up: &mut Upload) {
        up.gone = true;
        {
            let mut index = self.index();
            index.uploads.remove(id);
            index.release(up.size);
        }
        if let Err(error) = self.layout.remove_dir(&self.layout.upload_dir(id)) {
            warn!(upload = %id, %error, "cannot remove upload files");
        }
    }

    pub(super) fn abort_upload(&self, id: &UploadId, up: &mut Upload) -> Result<()> {
        live(id, up)?;
        self.end_upload(id, up);
        debug!(upload = %id, "upload aborted");
        Ok(())
    }

    /// Builds the metainfo of an upload's bytes and checks its digest; the
    /// first half of a commit, run before the digest's gate is taken so a
    /// long hash does not hold up readers of an already cached copy.
    pub(super) fn hash_upload(
        &self,
        id: &UploadId,
        up: &mut Upload,
        digest: &Digest,
        lengths: &PieceLengths,
    ) -> Result<MetaInfo> {
        live(id, up)?;
        let path = self.layout.upload_dir(id).join(DATA);
        match MetaInfo::from_file(&path, digest.algorithm(), lengths) {
            Ok(meta) if meta.digest() == digest => Ok(meta),
            Ok(meta) => {
                self.end_upload(id, up);
                let actual = meta.digest();
                debug!(upload = %id, expected = %digest, %actual, "digest mismatch");
                Err(Error::DigestMismatch {
                    expected: *digest,
                    actual: *meta.digest(),
                })
            }
            Err(e) => {
                self.end_upload(id, up);
                Err(e.into())
            }
        }
    }

    /// Publishes a verified upload as a cached blob; the second half of a
    /// commit, run holding the digest's write gate. A download of the same
    /// digest is replaced, keeping its pin.
    pub(super) fn publish_upload(
        &self,
        id: &UploadId,
        up: &mut Upload,
        meta: MetaInfo,
    ) -> Result<MetaInfo> {
        let digest = *meta.digest();
        let (cached, pinned) = match self.index().blobs.get(&digest) {
            Some(e) => (e.is_cached().then(|| e.meta.clone()), e.pinned),
            None => (None, false),
        };
        if let Some(existing) = cached {
            self.end_upload(id, up);
            debug!(%digest, "upload of an already cached blob dropped");
            return Ok((*existing).clone());
        }
        self.drop_download(&digest);
        if let Err(e) = self.stage_upload(id, up, &meta, pinned) {
            self.end_upload(id, up);
            return Err(e.into());
        }
        // The upload's bytes become the blob's, so `used` does not change.
        up.gone = true;
        let mut entry = Entry::new(Arc::new(meta.clone()), State::Cached, SystemTime::now());
        entry.pinned = pinned;
        let mut index = self.index();
        index.uploads.remove(id);
        index.blobs.insert(digest, entry);
        info!(%digest, bytes = meta.length(), "blob committed from upload");
        Ok(meta)
    }

    fn stage_upload(
        &self,
        id: &UploadId,
        up: &Upload,
        meta: &MetaInfo,
        pinned: bool,
    ) -> io::Result<()> {
        let dir = self.layout.upload_dir(id);
        up.file.sync_all()?;
        layout::write_synced(&dir.join(META), &meta.to_bytes())?;
        if pinned {
            layout::write_synced(&dir.join(PINNED), &[])?;
        }
        layout::write_access(&dir, SystemTime::now())?;
        self.publish_blob(&dir, Area::Cache, meta.digest())
    }

    /// Forgets and removes a download of `digest`, if there is one.
    fn drop_download(&self, digest: &Digest) {
        let length = {
            let mut index = self.index();
            match index.blobs.get(digest) {
                Some(e) if !e.is_cached() => {
                    let length = e.meta.length();
                    index.blobs.remove(digest);
                    index.release(length);
                    length
                }
                _ => return,
            }
        };
        let dir = self.layout.blob_dir(Area::Download, digest);
        if let Err(error) = self.layout.remove_dir(&dir) {
            warn!(%digest, %error, "cannot remove download files");
        }
        debug!(%digest, bytes = length, "download removed");
    }

    pub(super) fn start_download(&self, meta: &MetaInfo) -> Result<Bitfield> {
        let digest = *meta.digest();
        if let Some(have) = self.existing_bitfield(meta)? {
            return Ok(have);
        }
        self.reserve(meta.length(), Some(&digest))?;
        let files = self.create_download(meta).inspect_err(|_| {
            self.index().release(meta.length());
        })?;
        let have = Bitfield::new(meta.piece_count());
        let state = State::Downloading {
            have: have.clone(),
            files: Arc::new(files),
        };
        let entry = Entry::new(Arc::new(meta.clone()), state, SystemTime::now());
        self.index().blobs.insert(digest, entry);
        debug!(%digest, bytes = meta.length(), pieces = meta.piece_count(), "download started");
        Ok(have)
    }

    /// Returns the pieces present when the blob already exists with this
    /// metainfo; a resumed download counts as activity.
    fn existing_bitfield(&self, meta: &MetaInfo) -> Result<Option<Bitfield>> {
        let mut index = self.index();
        let Some(entry) = index.blobs.get_mut(meta.digest()) else {
            return Ok(None);
        };
        if *entry.meta != *meta {
            return Err(Error::MetaInfoConflict(*meta.digest()));
        }
        if !entry.is_cached() {
            entry.last_access = SystemTime::now();
        }
        Ok(Some(entry.bitfield()))
    }

    fn create_download(&self, meta: &MetaInfo) -> io::Result<DownloadFiles> {
        let scratch = self.layout.scratch();
        self.build_download(&scratch, meta).inspect_err(|_| {
            let _ = fs::remove_dir_all(&scratch);
        })
    }

    /// Lays out a download in `dir` (a sparse data file of full length,
    /// the metainfo and an empty bitfield), then moves it into place.
    fn build_download(&self, dir: &Path, meta: &MetaInfo) -> io::Result<DownloadFiles> {
        fs::create_dir(dir)?;
        let mut create = OpenOptions::new();
        create.read(true).write(true).create_new(true);
        let data = create.open(dir.join(DATA))?;
        data.set_len(meta.length())?;
        layout::write_synced(&dir.join(META), &meta.to_bytes())?;
        let bits = Bitfield::new(meta.piece_count());
        layout::write_synced(&dir.join(BITFIELD), bits.as_bytes())?;
        let bits_file = layout::open_rw(&dir.join(BITFIELD))?;
        self.publish_blob(dir, Area::Download, meta.digest())?;
        Ok(DownloadFiles::new(
            data,
            bits_file,
            bits,
            meta.digest().algorithm(),
        ))
    }

    pub(super) fn write_piece(&self, digest: &Digest, i: PieceIndex, data: &[u8]) -> Result<()> {
        let (meta, files) = {
            let index = self.index();
            let entry = index.blobs.get(digest).ok_or(Error::NotFound(*digest))?;
            if i.0 >= entry.meta.piece_count() {
                return Err(Error::PieceOutOfRange {
                    digest: *digest,
                    index: i,
                });
            }
            match &entry.state {
                State::Downloading { have, files } if !have.has(i) => {
                    (entry.meta.clone(), files.clone())
                }
                _ => return Ok(()),
            }
        };
        if !meta.verify_piece(i, data) {
            debug!(%digest, piece = %i, "piece rejected: wrong length or hash");
            return Err(Error::PieceMismatch {
                digest: *digest,
                index: i,
            });
        }
        let offset = meta.piece_range(i).map_or(0, |r| r.start);
        files.data.write_all_at(data, offset)?;
        files.persist_bit(i)?;
        files.advance_prefix(&meta, i, data)?;
        let mut index = self.index();
        if let Some(entry) = index.blobs.get_mut(digest) {
            if let State::Downloading { have, .. } = &mut entry.state {
                have.set(i);
            }
            entry.last_access = SystemTime::now();
        }
        trace!(%digest, piece = %i, "piece stored");
        Ok(())
    }

    pub(super) fn read_piece(&self, digest: &Digest, i: PieceIndex) -> Result<Bytes> {
        let (range, files) = {
            let index = self.index();
            let entry = index.blobs.get(digest).ok_or(Error::NotFound(*digest))?;
            let out_of_range = Error::PieceOutOfRange {
                digest: *digest,
                index: i,
            };
            let range = entry.meta.piece_range(i).ok_or(out_of_range)?;
            match &entry.state {
                State::Downloading { have, .. } if !have.has(i) => {
                    return Err(Error::PieceMissing {
                        digest: *digest,
                        index: i,
                    });
                }
                State::Downloading { files, .. } => (range, Some(files.clone())),
                State::Cached => (range, None),
            }
        };
        let mut buf = vec![0; (range.end - range.start) as usize];
        match files {
            Some(files) => files.data.read_exact_at(&mut buf, range.start)?,
            None => {
                let path = self.layout.blob_dir(Area::Cache, digest).join(DATA);
                File::open(path)?.read_exact_at(&mut buf, range.start)?;
            }
        }
        self.touch(digest);
        Ok(Bytes::from(buf))
    }

    /// Hashes a complete download and compares it with its digest; the
    /// files to publish, or `None` when the blob is cached already; a
    /// mismatch is for [`discard_mismatch`](Self::discard_mismatch). Needs
    /// no gate: verified pieces never change, so reads and uploads of the
    /// blob go on while its bytes are hashed.
    pub(super) fn check_download(&self, digest: &Digest) -> Result<Option<Arc<DownloadFiles>>> {
        let (meta, files) = {
            let index = self.index();
            let entry = index.blobs.get(digest).ok_or(Error::NotFound(*digest))?;
            match &entry.state {
                State::Cached => return Ok(None),
                State::Downloading { have, .. } if !have.is_complete() => {
                    let missing = have.len() - have.count();
                    return Err(Error::Incomplete {
                        digest: *digest,
                        missing,
                    });
                }
                State::Downloading { files, .. } => (entry.meta.clone(), files.clone()),
            }
        };
        let actual = files.finish_digest(&meta)?;
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(Some(files))
    }

    /// Discards a download whose bytes do not add up to its digest; under
    /// the blob's write gate.
    pub(super) fn discard_mismatch(&self, digest: &Digest, actual: &Digest) {
        warn!(%digest, %actual, "download does not add up to its digest, discarding it");
        self.drop_download(digest);
    }

    /// Publishes a download [`check_download`](Self::check_download)
    /// passed, under the blob's write gate.
    pub(super) fn commit_checked(&self, digest: &Digest, files: &DownloadFiles) -> Result<()> {
        let length = {
            let index = self.index();
            let entry = index.blobs.get(digest).ok_or(Error::NotFound(*digest))?;
            match &entry.state {
                State::Cached => return Ok(()),
                // Dropped and started again while it was hashed: this one
                // is not the download that was checked.
                State::Downloading { files: now, .. } if !std::ptr::eq(&**now, files) => {
                    return Err(Error::NotFound(*digest));
                }
                State::Downloading { .. } => entry.meta.length(),
            }
        };
        self.publish_download(digest, files)?;
        info!(%digest, bytes = length, "blob committed from download");
        Ok(())
    }

    fn publish_download(&self, digest: &Digest, files: &DownloadFiles) -> Result<()> {
        let now = SystemTime::now();
        let dir = self.layout.blob_dir(Area::Download, digest);
        files.data.sync_all()?;
        layout::write_access(&dir, now)?;
        self.publish_blob(&dir, Area::Cache, digest)?;
        let _ = fs::remove_file(self.layout.blob_dir(Area::Cache, digest).join(BITFIELD));
        let mut index = self.index();
        if let Some(entry) = index.blobs.get_mut(digest) {
            entry.state = State::Cached;
            entry.last_access = now;
            entry.persisted_access = now;
            entry.completed = now;
        }
        Ok(())
    }

    pub(super) fn open(&self, digest: &Digest) -> Result<DiskReader> {
        let users = match self.index().blobs.get(digest) {
            Some(entry) if entry.is_cached() => entry.users.clone(),
            _ => return Err(Error::NotFound(*digest)),
        };
        let path = self.layout.blob_dir(Area::Cache, digest).join(DATA);
        let reader = DiskReader::map(*digest, &path, users)?;
        self.touch(digest);
        debug!(%digest, "blob opened");
        Ok(reader)
    }

    pub(super) fn delete(&self, digest: &Digest) -> Result<()> {
        let area = {
            let mut index = self.index();
            let entry = index.blobs.get(digest).ok_or(Error::NotFound(*digest))?;
            if entry.pinned {
                return Err(Error::Pinned(*digest));
            }
            let (area, length) = (area_of(entry), entry.meta.length());
            index.blobs.remove(digest);
            index.release(length);
            area
        };
        self.layout
            .remove_dir(&self.layout.blob_dir(area, digest))?;
        debug!(%digest, "blob deleted");
        Ok(())
    }

    pub(super) fn set_pinned(&self, digest: &Digest, pinned: bool) -> Result<()> {
        let dir = {
            let index = self.index();
            let entry = index.blobs.get(digest).ok_or(Error::NotFound(*digest))?;
            if entry.pinned == pinned {
                return Ok(());
            }
            self.entry_dir(digest, entry)
        };
        let marker = dir.join(PINNED);
        if pinned {
            layout::write_synced(&marker, &[])?;
        } else if let Err(e) = fs::remove_file(&marker)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(e.into());
        }
        if let Some(entry) = self.index().blobs.get_mut(digest) {
            entry.pinned = pinned;
        }
        debug!(%digest, pinned, "pin changed");
        Ok(())
    }
}

/// Describes an entry as the trait's `stat` and `list` report it.
pub(super) fn stat_of(digest: &Digest, entry: &Entry) -> BlobStat {
    let state = match &entry.state {
        State::Downloading { have, .. } => BlobState::Downloading {
            have: have.count(),
            pieces: have.len(),
        },
        State::Cached => BlobState::Cached,
    };
    BlobStat {
        digest: *digest,
        length: entry.meta.length(),
        state,
        pinned: entry.pinned,
        last_access: entry.last_access,
    }
}
