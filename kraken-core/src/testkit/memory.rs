//! An in-memory `Backend`: the reference implementation of the backend
//! contract, for tests that need a source of truth without a server.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};

use crate::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage, Namespace,
    ObjectInfo, UploadBody, validate_object_name,
};

/// The size of the chunks downloads are cut into, so consumers see
/// multi-chunk streams as they would from a real backend.
const CHUNK: usize = 64 * 1024;

type Key = (Namespace, String);

/// Keeps objects in a map in memory; writable and listable unless built
/// with [`MemoryBackend::with_capabilities`].
///
/// Uploads are buffered whole and swapped in under the lock, so a reader
/// sees the old object or the new one and never a mix. Listing pages are
/// in name order and the page token is the last name returned.
#[derive(Debug)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<Key, Bytes>>,
    capabilities: Capabilities,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::with_capabilities(Capabilities {
            write: true,
            list: true,
        })
    }
}

impl MemoryBackend {
    /// Creates an empty, writable and listable backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates an empty backend that supports only what `capabilities`
    /// says, to stand in for a read-only source such as an upstream
    /// registry. Fill it with [`MemoryBackend::insert`].
    pub fn with_capabilities(capabilities: Capabilities) -> Self {
        MemoryBackend {
            objects: Mutex::default(),
            capabilities,
        }
    }

    /// Stores an object directly, whatever the capabilities, so a test can
    /// give a read-only backend content.
    pub fn insert(&self, namespace: &Namespace, name: &str, data: Bytes) {
        self.lock()
            .insert((namespace.clone(), name.to_owned()), data);
    }

    /// Returns an object's bytes without counting as a download.
    pub fn get(&self, namespace: &Namespace, name: &str) -> Option<Bytes> {
        self.lock()
            .get(&(namespace.clone(), name.to_owned()))
            .cloned()
    }

    /// Removes an object, returning whether it existed.
    pub fn remove(&self, namespace: &Namespace, name: &str) -> bool {
        self.lock()
            .remove(&(namespace.clone(), name.to_owned()))
            .is_some()
    }

    /// Returns how many objects are stored, across namespaces.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Returns true when no object is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Bytes>> {
        // A panic while holding the lock cannot leave the map half-written:
        // every mutation is a single insert or remove.
        self.objects
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lookup(&self, namespace: &Namespace, name: &str) -> Result<Bytes, BackendError> {
        validate_object_name(name)?;
        self.get(namespace, name)
            .ok_or_else(|| BackendError::not_found(format!("{namespace}/{name}")))
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn stat(&self, namespace: &Namespace, name: &str) -> Result<ObjectInfo, BackendError> {
        let data = self.lookup(namespace, name)?;
        Ok(ObjectInfo {
            size: data.len() as u64,
        })
    }

    async fn download(
        &self,
        namespace: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Result<BackendStream, BackendError> {
        let data = self.lookup(namespace, name)?;
        let slice = clamp(range, data.len() as u64);
        Ok(chunked(&data.slice(slice)))
    }

    async fn upload(
        &self,
        namespace: &Namespace,
        name: &str,
        length: u64,
        body: UploadBody,
    ) -> Result<(), BackendError> {
        if !self.capabilities.write {
            return Err(BackendError::unsupported("memory backend is read-only"));
        }
        validate_object_name(name)?;
        let data = read_exactly(body, length).await?;
        self.insert(namespace, name, data);
        Ok(())
    }

    async fn list(
        &self,
        namespace: &Namespace,
        prefix: &str,
        page: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, BackendError> {
        if !self.capabilities.list {
            return Err(BackendError::unsupported("memory backend cannot list"));
        }
        let objects = self.lock();
        let start = match page {
            Some(token) if token >= prefix => {
                Bound::Excluded((namespace.clone(), token.to_owned()))
            }
            _ => Bound::Included((namespace.clone(), prefix.to_owned())),
        };
        // Names sharing a prefix are contiguous in the map's order, so the
        // walk stops at the first name past them.
        let mut matching = objects
            .range((start, Bound::Unbounded))
            .map(|((ns, name), _)| (ns, name))
            .take_while(|(ns, name)| *ns == namespace && name.starts_with(prefix))
            .map(|(_, name)| name.clone());
        // A zero limit would return empty pages forever; treat it as one.
        let names: Vec<String> = matching.by_ref().take(limit.max(1)).collect();
        let next = matching.next().and(names.last().cloned());
        Ok(ListPage { names, next })
    }
}

/// Resolves a requested range against an object of `len` bytes, clamping
/// both ends so a range past the end is empty rather than an error.
fn clamp(range: Option<Range<u64>>, len: u64) -> Range<usize> {
    let range = range.unwrap_or(0..len);
    let end = range.end.min(len);
    let start = range.start.min(end);
    start as usize..end as usize
}

fn chunked(data: &Bytes) -> BackendStream {
    let chunks: Vec<_> = (0..data.len())
        .step_by(CHUNK)
        .map(|at| Ok(data.slice(at..(at + CHUNK).min(data.len()))))
        .collect();
    stream::iter(chunks).boxed()
}

/// Reads `body` whole, failing with `Corrupt` as soon as it is known to be
/// longer or shorter than `length`.
async fn read_exactly(mut body: UploadBody, length: u64) -> Result<Bytes, BackendError> {
    let mut data = BytesMut::new();
    while let Some(chunk) = body.next().await {
        data.extend_from_slice(&chunk?);
        if data.len() as u64 > length {
            return Err(length_mismatch(length, "more"));
        }
    }
    if (data.len() as u64) < length {
        return Err(length_mismatch(length, "fewer"));
    }
    Ok(data.freeze())
}

fn length_mismatch(length: u64, which: &str) -> BackendError {
    let message = format!("upload body has {which} than the {length} bytes declared");
    BackendError::new(BackendErrorKind::Corrupt, message)
}
