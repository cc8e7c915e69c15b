//! The in-memory picture of what the disk holds, and the per-digest gates
//! that order operations touching one blob's directory.
//!
//! The [`Index`] sits behind a `std::sync::Mutex` that is only ever held
//! for in-memory work. Exclusion over a blob's files comes from its gate, a
//! `tokio` read-write lock: reads and piece writes share it, while anything
//! that moves or removes the directory (commit, delete, eviction, pinning)
//! holds it alone. Holding a blob's gate in either mode therefore means its
//! entry and directory stay put.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::{Algorithm, Bitfield, Digest, Error, Hasher, MetaInfo, PieceIndex, Result, UploadId};

/// Shared access to a blob's directory: reading or writing pieces.
pub(super) type ReadGate = OwnedRwLockReadGuard<()>;
/// Sole access to a blob's directory: moving, removing or pinning it.
pub(super) type WriteGate = OwnedRwLockWriteGuard<()>;

/// Locks a std mutex, carrying on after a panic elsewhere: every critical
/// section leaves the data consistent at each step.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the store holds, in memory.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) blobs: BTreeMap<Digest, Entry>,
    pub(super) uploads: HashMap<UploadId, Arc<tokio::sync::Mutex<Upload>>>,
    /// Bytes counted against capacity: cached blobs, full download lengths
    /// and upload sizes.
    pub(super) used: u64,
}

/// One cached blob or download.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) meta: Arc<MetaInfo>,
    pub(super) state: State,
    pub(super) pinned: bool,
    pub(super) last_access: SystemTime,
    /// The last access written to the `access` sidecar.
    pub(super) persisted_access: SystemTime,
    /// When the blob was completed; the start of its `cache_ttl`.
    pub(super) completed: SystemTime,
    /// Cloned into every open reader; more than one owner means in use.
    pub(super) users: Arc<()>,
}

/// The state of an [`Entry`].
#[derive(Debug)]
pub(super) enum State {
    Downloading {
        have: Bitfield,
        files: Arc<DownloadFiles>,
    },
    Cached,
}

/// The open files of a download, shared by concurrent piece writers.
#[derive(Debug)]
pub(super) struct DownloadFiles {
    pub(super) data: File,
    bits: Mutex<PersistedBits>,
    prefix: Mutex<PrefixHash>,
}

/// The whole-blob digest of a download, taken over its contiguous prefix
/// of verified pieces as that prefix grows, so that completing a download
/// hashes only what the prefix had not reached. Pieces of a streaming swarm
/// arrive roughly in order; without this, every host hashed its whole blob
/// at the moment it completed, all of them at about the same time.
struct PrefixHash {
    hasher: Hasher,
    /// The first piece the hasher has not taken.
    next: u32,
}

impl std::fmt::Debug for PrefixHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixHash")
            .field("next", &self.next)
            .finish()
    }
}

/// Bytes of prefix one piece write may hash before it returns; the rest
/// waits for the next write or for the commit.
const PREFIX_STEP: u64 = 32 << 20;

#[derive(Debug)]
struct PersistedBits {
    file: File,
    bits: Bitfield,
}

/// An upload in progress. `gone` is set when it ends, so a task that
/// waited for the lock while it was committed or aborted sees that.
#[derive(Debug)]
pub(super) struct Upload {
    pub(super) size: u64,
    pub(super) file: File,
    pub(super) last_write: SystemTime,
    pub(super) gone: bool,
}

/// A cached blob chosen for removal, its gate held until its files are gone.
#[derive(Debug)]
pub(super) struct Victim {
    pub(super) digest: Digest,
    pub(super) length: u64,
    pub(super) _gate: WriteGate,
}

impl Entry {
    pub(super) fn new(meta: Arc<MetaInfo>, state: State, now: SystemTime) -> Self {
        Entry {
            meta,
            state,
            pinned: false,
            last_access: now,
            persisted_access: now,
            completed: now,
            users: Arc::new(()),
        }
    }

    pub(super) fn in_use(&self) -> bool {
        Arc::strong_count(&self.users) > 1
    }

    pub(super) fn is_cached(&self) -> bool {
        matches!(self.state, State::Cached)
    }

    /// Returns the pieces present: all of them once cached.
    pub(super) fn bitfield(&self) -> Bitfield {
        match &self.state {
            State::Downloading { have, .. } => have.clone(),
            State::Cached => Bitfield::full(self.meta.piece_count()),
        }
    }
}

impl DownloadFiles {
    pub(super) fn new(data: File, bits_file: File, bits: Bitfield, algorithm: Algorithm) -> Self {
        DownloadFiles {
            data,
            bits: Mutex::new(PersistedBits {
                file: bits_file,
                bits,
            }),
            prefix: Mutex::new(PrefixHash {
                hasher: algorithm.hasher(),
                next: 0,
            }),
        }
    }

    /// Hashes the pieces present from the end of the hashed prefix on,
    /// `written` (piece `i`'s bytes, just stored) taken from memory, until a
    /// missing piece or [`PREFIX_STEP`] bytes. Does nothing while another
    /// writer is at it; a later write or the commit picks up from there.
    pub(super) fn advance_prefix(
        &self,
        meta: &MetaInfo,
        i: PieceIndex,
        written: &[u8],
    ) -> io::Result<()> {
        let Ok(mut prefix) = self.prefix.try_lock() else {
            return Ok(());
        };
        let mut budget = PREFIX_STEP;
        while budget > 0 && prefix.next < meta.piece_count() {
            let piece = PieceIndex(prefix.next);
            if !lock(&self.bits).bits.has(piece) {
                break;
            }
            let Some(range) = meta.piece_range(piece) else {
                break;
            };
            if piece == i {
                prefix.hasher.update(written);
            } else {
                // On a failed read the prefix stays where it was.
                let mut hasher = prefix.hasher.clone();
                hash_range(&self.data, &mut hasher, range.clone())?;
                prefix.hasher = hasher;
            }
            prefix.next += 1;
            budget = budget.saturating_sub(range.end - range.start);
        }
        Ok(())
    }

    /// Finishes the whole-blob digest of a complete download: the hashed
    /// prefix, then every byte after it. The prefix is left as it was, so
    /// the check can run again.
    pub(super) fn finish_digest(&self, meta: &MetaInfo) -> io::Result<Digest> {
        let prefix = lock(&self.prefix);
        let start = meta
            .piece_range(PieceIndex(prefix.next))
            .map_or(meta.length(), |r| r.start);
        let mut hasher = prefix.hasher.clone();
        hash_range(&self.data, &mut hasher, start..meta.length())?;
        Ok(hasher.finish())
    }

    /// Records piece `i` as present in the bitfield file.
    ///
    /// Only the byte holding the bit is written, under a lock so that
    /// writers of neighbouring pieces do not undo each other's bits.
    pub(super) fn persist_bit(&self, i: PieceIndex) -> io::Result<()> {
        let mut persisted = lock(&self.bits);
        persisted.bits.set(i);
        let at = i.as_usize() / 8;
        let byte = persisted.bits.as_bytes()[at];
        persisted.file.write_all_at(&[byte], at as u64)
    }
}

impl Index {
    /// Makes room for `needed` more bytes and counts them as used.
    ///
    /// Picks least recently used cached blobs that are unpinned, not open
    /// and not busy (their gate is free), never `keep`. Victims leave the
    /// index at once; the caller removes their files, which stay gated
    /// until then. When even evicting every candidate would not make room,
    /// nothing is evicted.
    ///
    /// # Errors
    ///
    /// `StoreFull`.
    pub(super) fn reserve(
        &mut self,
        needed: u64,
        capacity: u64,
        gates: &Gates,
        keep: Option<&Digest>,
    ) -> Result<Vec<Victim>> {
        let full = Error::StoreFull { needed, capacity };
        let wanted = self.used.saturating_add(needed);
        let Some(excess) = wanted.checked_sub(capacity).filter(|&e| e > 0) else {
            self.used += needed;
            return Ok(Vec::new());
        };
        let victims = self.pick_victims(excess, gates, keep).ok_or(full)?;
        for v in &victims {
            self.blobs.remove(&v.digest);
            self.used -= v.length;
        }
        self.used += needed;
        Ok(victims)
    }

    fn pick_victims(
        &self,
        excess: u64,
        gates: &Gates,
        keep: Option<&Digest>,
    ) -> Option<Vec<Victim>> {
        let mut candidates: Vec<_> = self
            .blobs
            .iter()
            .filter(|(d, e)| e.is_cached() && !e.pinned && !e.in_use() && Some(*d) != keep)
            .collect();
        candidates.sort_by_key(|(d, e)| (e.last_access, **d));
        let mut victims = Vec::new();
        let mut freed = 0;
        for (digest, entry) in candidates {
            if freed >= excess {
                break;
            }
            let Some(gate) = gates.try_write(digest) else {
                continue;
            };
            freed += entry.meta.length();
            victims.push(Victim {
                digest: *digest,
                length: entry.meta.length(),
                _gate: gate,
            });
        }
        (freed >= excess).then_some(victims)
    }

    /// Stops counting `bytes` against capacity.
    pub(super) fn release(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }
}

/// One read-write lock per digest, created on first use.
#[derive(Debug, Default)]
pub(super) struct Gates(Mutex<HashMap<Digest, Arc<RwLock<()>>>>);

impl Gates {
    fn gate(&self, digest: &Digest) -> Arc<RwLock<()>> {
        lock(&self.0).entry(*digest).or_default().clone()
    }

    pub(super) async fn read(&self, digest: &Digest) -> ReadGate {
        self.gate(digest).read_owned().await
    }

    pub(super) async fn write(&self, digest: &Digest) -> WriteGate {
        self.gate(digest).write_owned().await
    }

    /// Takes sole access without waiting, or returns `None` when busy.
    pub(super) fn try_write(&self, digest: &Digest) -> Option<WriteGate> {
        self.gate(digest).try_write_owned().ok()
    }

    /// Forgets gates nobody holds or waits for, so the map tracks only
    /// digests in recent use.
    pub(super) fn prune(&self) {
        lock(&self.0).retain(|_, gate| Arc::strong_count(gate) > 1);
    }
}

/// Feeds `range` of `file` to `hasher`, a megabyte at a time.
pub(super) fn hash_range(
    file: &File,
    hasher: &mut Hasher,
    range: std::ops::Range<u64>,
) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0; CHUNK.min(range.end.saturating_sub(range.start)) as usize];
    let mut offset = range.start;
    while offset < range.end {
        let n = buf.len().min((range.end - offset) as usize);
        file.read_exact_at(&mut buf[..n], offset)?;
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Algorithm, PieceLengths};

    fn cached(index: &mut Index, data: &[u8], age: u64) -> Digest {
        let meta = MetaInfo::of_bytes(data, Algorithm::Sha256, &PieceLengths::fixed(4).unwrap());
        let digest = *meta.digest();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(age);
        let mut entry = Entry::new(Arc::new(meta), State::Cached, at);
        entry.last_access = at;
        index.used += data.len() as u64;
        index.blobs.insert(digest, entry);
        digest
    }

    #[test]
    fn reserve_evicts_least_recently_used_first() {
        let (mut index, gates) = (Index::default(), Gates::default());
        let old = cached(&mut index, b"aaaa", 1);
        let new = cached(&mut index, b"bbbb", 2);
        let victims = index.reserve(4, 10, &gates, None).unwrap();
        assert_eq!(victims.iter().map(|v| v.digest).collect::<Vec<_>>(), [old]);
        assert!(index.blobs.contains_key(&new));
        assert_eq!(index.used, 8);
    }

    #[test]
    fn reserve_skips_pinned_open_and_gated_blobs_and_evicts_nothing_when_short() {
        let (mut index, gates) = (Index::default(), Gates::default());
        let pinned = cached(&mut index, b"aaaa", 1);
        let open = cached(&mut index, b"bbbb", 2);
        let gated = cached(&mut index, b"cccc", 3);
        let _free = cached(&mut index, b"dddd", 4);
        index.blobs.get_mut(&pinned).unwrap().pinned = true;
        let _reader = index.blobs[&open].users.clone();
        let _gate = gates.try_write(&gated).unwrap();
        let err = index.reserve(8, 16, &gates, None).unwrap_err();
        assert!(matches!(
            err,
            Error::StoreFull {
                needed: 8,
                capacity: 16
            }
        ));
        assert_eq!((index.blobs.len(), index.used), (4, 16));
        assert_eq!(index.reserve(4, 16, &gates, None).unwrap().len(), 1);
    }
}
