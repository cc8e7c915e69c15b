//! Rebuilds the index from the disk when a store opens.
//!
//! Nothing on disk is trusted: a name that is not a digest or upload id, a
//! metainfo that does not decode or names another digest, a data file of
//! the wrong length or a symlink where a file belongs all get the entry
//! removed. A download's bitfield is only a hint: every piece it marks
//! present is read back and checked against its hash, so a crash between
//! writing a piece and its bit, in either order, costs at most that piece.
//! Cached blobs are not re-hashed, since reaching `cache/` already
//! required their whole digest to match.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{debug, warn};

use super::index::{DownloadFiles, Entry, Index, State, Upload};
use super::layout::{self, Area, BITFIELD, DATA, LOCK, Layout, META, PINNED};
use crate::{Algorithm, Bitfield, Digest, MetaInfo, UploadId};

/// Longest metainfo file read back: the header plus the most piece hashes.
const MAX_META_LEN: u64 = 128 + 32 * crate::MAX_PIECES as u64;

/// Locks the root for this process, scans it, cleaning what does not
/// parse, and returns the index with the lock, held while the file is open.
pub(super) fn recover(layout: &Layout) -> io::Result<(Index, File)> {
    layout.create()?;
    let lock = lock_root(layout)?;
    clear_dir(layout.tmp())?;
    let mut index = Index::default();
    for (digest, dir) in blob_dirs(layout, Area::Cache)? {
        match load_cached(&digest, &dir) {
            Some(entry) => insert(&mut index, digest, entry),
            None => discard(layout, &dir, "cached blob"),
        }
    }
    for (digest, dir) in blob_dirs(layout, Area::Download)? {
        let entry = (!index.blobs.contains_key(&digest)).then(|| load_download(&digest, &dir));
        match entry.flatten() {
            Some(entry) => insert(&mut index, digest, entry),
            None => discard(layout, &dir, "download"),
        }
    }
    index.uploads = load_uploads(layout, &mut index.used)?;
    Ok((index, lock))
}

/// Takes an exclusive lock on `<root>/lock`. Two stores on one root would
/// clear each other's temporary files and disagree about capacity, so the
/// second one is refused.
fn lock_root(layout: &Layout) -> io::Result<File> {
    let path = layout.root().join(LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => Ok(file),
        Err(fs4::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("another disk store has {} open", layout.root().display()),
        )),
        Err(fs4::TryLockError::Error(e)) => Err(e),
    }
}

fn insert(index: &mut Index, digest: Digest, entry: Entry) {
    index.used += entry.meta.length();
    index.blobs.insert(digest, entry);
}

fn discard(layout: &Layout, path: &Path, what: &str) {
    warn!(path = %path.display(), "removing unreadable {what} found at open");
    if let Err(error) = remove_any(layout, path) {
        warn!(path = %path.display(), %error, "cannot remove unreadable entry");
    }
}

fn remove_any(layout: &Layout, path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path)? {
        m if m.is_dir() => layout.remove_dir(path),
        _ => fs::remove_file(path),
    }
}

fn clear_dir(dir: &Path) -> io::Result<()> {
    for item in fs::read_dir(dir)? {
        let path = item?.path();
        match fs::symlink_metadata(&path)? {
            m if m.is_dir() => fs::remove_dir_all(&path)?,
            _ => fs::remove_file(&path)?,
        }
    }
    Ok(())
}

/// Lists `<area>/<alg>/<aa>/<bb>/<hex>` directories whose names form a
/// digest that maps back to the same path; removes everything else.
fn blob_dirs(layout: &Layout, area: Area) -> io::Result<Vec<(Digest, PathBuf)>> {
    let mut found = Vec::new();
    for (name, alg_dir) in subdirs(layout, layout.area(area))? {
        let known = [Algorithm::Sha256, Algorithm::Sha512].map(Algorithm::name);
        if !known.contains(&name.as_str()) {
            discard(layout, &alg_dir, "directory");
            continue;
        }
        for (_, a_dir) in subdirs(layout, &alg_dir)? {
            for (_, b_dir) in subdirs(layout, &a_dir)? {
                for (hex, dir) in subdirs(layout, &b_dir)? {
                    match format!("{name}:{hex}").parse::<Digest>() {
                        Ok(d) if layout.blob_dir(area, &d) == dir => found.push((d, dir)),
                        _ => discard(layout, &dir, "directory"),
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Lists the directories in `dir` with UTF-8 names; removes anything else.
fn subdirs(layout: &Layout, dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for item in fs::read_dir(dir)? {
        let item = item?;
        let path = item.path();
        let is_dir = item.file_type()?.is_dir();
        match item.file_name().into_string() {
            Ok(name) if is_dir => found.push((name, path)),
            _ => discard(layout, &path, "file"),
        }
    }
    Ok(found)
}

fn load_meta(digest: &Digest, dir: &Path) -> Option<MetaInfo> {
    let path = dir.join(META);
    let len = fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.is_file())?
        .len();
    if len > MAX_META_LEN {
        return None;
    }
    let meta = MetaInfo::from_bytes(&fs::read(&path).ok()?).ok()?;
    (meta.digest() == digest).then_some(meta)
}

/// Returns the data file's modification time when it is a regular file of
/// exactly the blob's length.
fn data_mtime(meta: &MetaInfo, dir: &Path) -> Option<SystemTime> {
    let m = fs::symlink_metadata(dir.join(DATA)).ok()?;
    (m.is_file() && m.len() == meta.length())
        .then(|| m.modified().ok())
        .flatten()
}

fn load_cached(digest: &Digest, dir: &Path) -> Option<Entry> {
    let meta = load_meta(digest, dir)?;
    let completed = data_mtime(&meta, dir)?;
    // A crash right after a download was published can leave its bitfield.
    let _ = fs::remove_file(dir.join(BITFIELD));
    let mut entry = Entry::new(Arc::new(meta), State::Cached, completed);
    restore_common(&mut entry, dir, completed);
    debug!(%digest, "recovered cached blob");
    Some(entry)
}

fn restore_common(entry: &mut Entry, dir: &Path, fallback: SystemTime) {
    let access = layout::read_access(dir).unwrap_or(fallback);
    entry.last_access = access;
    entry.persisted_access = access;
    entry.pinned = layout::is_file(&dir.join(PINNED));
}

fn load_download(digest: &Digest, dir: &Path) -> Option<Entry> {
    let meta = load_meta(digest, dir)?;
    let mtime = data_mtime(&meta, dir)?;
    let data = layout::open_rw(&dir.join(DATA)).ok()?;
    let have = verified_pieces(&meta, &data, &read_bitfield(&meta, dir));
    let bits_path = dir.join(BITFIELD);
    layout::write_synced(&bits_path, have.as_bytes()).ok()?;
    let bits_file = layout::open_rw(&bits_path).ok()?;
    let files = Arc::new(DownloadFiles::new(
        data,
        bits_file,
        have.clone(),
        digest.algorithm(),
    ));
    let mut entry = Entry::new(Arc::new(meta), State::Downloading { have, files }, mtime);
    restore_common(&mut entry, dir, mtime);
    debug!(%digest, "recovered download");
    Some(entry)
}

fn read_bitfield(meta: &MetaInfo, dir: &Path) -> Bitfield {
    let path = dir.join(BITFIELD);
    let bits = layout::is_file(&path)
        .then(|| fs::read(&path).ok())
        .flatten();
    let parsed = bits.and_then(|b| Bitfield::from_bytes(meta.piece_count(), &b));
    parsed.unwrap_or_else(|| {
        warn!(digest = %meta.digest(), "download bitfield unreadable, starting over");
        Bitfield::new(meta.piece_count())
    })
}

/// Keeps only the pieces marked present whose bytes match their hash.
fn verified_pieces(meta: &MetaInfo, data: &File, claimed: &Bitfield) -> Bitfield {
    let mut have = Bitfield::new(meta.piece_count());
    let mut buf = Vec::new();
    for i in claimed.present() {
        let Some(range) = meta.piece_range(i) else {
            continue;
        };
        buf.resize((range.end - range.start) as usize, 0);
        if data.read_exact_at(&mut buf, range.start).is_ok() && meta.verify_piece(i, &buf) {
            have.set(i);
        }
    }
    if have.count() != claimed.count() {
        let lost = claimed.count() - have.count();
        warn!(digest = %meta.digest(), lost, "download pieces failed verification at open");
    }
    have
}

fn load_uploads(
    layout: &Layout,
    used: &mut u64,
) -> io::Result<HashMap<UploadId, Arc<tokio::sync::Mutex<Upload>>>> {
    let mut uploads = HashMap::new();
    for (name, dir) in subdirs(layout, layout.uploads())? {
        let loaded = name
            .parse::<UploadId>()
            .ok()
            .and_then(|_| load_upload(&dir));
        match (name.parse::<UploadId>(), loaded) {
            (Ok(id), Some(upload)) => {
                *used += upload.size;
                uploads.insert(id, Arc::new(tokio::sync::Mutex::new(upload)));
            }
            _ => discard(layout, &dir, "upload"),
        }
    }
    Ok(uploads)
}

fn load_upload(dir: &Path) -> Option<Upload> {
    let path = dir.join(DATA);
    let m = fs::symlink_metadata(&path).ok().filter(|m| m.is_file())?;
    let file = layout::open_rw(&path).ok()?;
    // Hash-check metadata a crashed commit may have left is rebuilt then.
    let _ = fs::remove_file(dir.join(META));
    let last_write = m.modified().ok()?;
    Some(Upload {
        size: m.len(),
        file,
        last_write,
        gone: false,
    })
}
