//! Read-through: an origin asked for a blob it lacks reads it from the
//! backend once, however many callers ask, and tells them to poll (202)
//! meanwhile.
//!
//! The backend is asked synchronously whether it has the blob, so a caller
//! learns at once that a blob does not exist (404) or that the backend
//! cannot be reached (503, never 404). The download itself runs in the
//! background into an upload of the store, whose commit verifies the
//! digest: bytes that hash otherwise are discarded. A failed fetch is
//! remembered for [`ReadThroughConfig::failure_ttl`], so a backend that
//! keeps failing is not hammered by every poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kraken_core::{
    Backend, BackendError, BackendErrorKind, BlobState, BlobStore, Digest, Error, Namespace,
    PieceLengths, Result,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::scheduler::MissingBlob;

/// Read-through settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadThroughConfig {
    /// Backend downloads run at once; more wait their turn (their callers
    /// still get 202).
    pub max_fetches: usize,
    /// How long a failed fetch is remembered and answered from memory.
    #[serde(with = "humantime_serde")]
    pub failure_ttl: Duration,
}

impl Default for ReadThroughConfig {
    fn default() -> Self {
        ReadThroughConfig {
            max_fetches: 16,
            failure_ttl: Duration::from_secs(15),
        }
    }
}

/// Where a blob stands after [`ReadThrough::ensure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The store holds it.
    Present,
    /// It is being read from the backend; ask again.
    Fetching,
}

/// A fetch that failed, kept to answer askers until it expires.
#[derive(Debug, Clone)]
enum Failure {
    Backend {
        kind: BackendErrorKind,
        message: String,
    },
    Mismatch {
        expected: Digest,
        actual: Digest,
    },
    Other(String),
}

impl Failure {
    fn of(error: &Error) -> Failure {
        match error {
            Error::Backend(e) => Failure::Backend {
                kind: e.kind(),
                message: e.message().to_owned(),
            },
            Error::DigestMismatch { expected, actual } => Failure::Mismatch {
                expected: *expected,
                actual: *actual,
            },
            other => Failure::Other(other.to_string()),
        }
    }

    fn to_error(&self) -> Error {
        match self {
            Failure::Backend { kind, message } => {
                Error::Backend(BackendError::new(*kind, message.clone()))
            }
            Failure::Mismatch { expected, actual } => Error::DigestMismatch {
                expected: *expected,
                actual: *actual,
            },
            Failure::Other(message) => Error::Io(std::io::Error::other(message.clone())),
        }
    }
}

#[derive(Debug)]
enum Entry {
    Fetching,
    Failed { failure: Failure, until: Instant },
}

/// Starts a read-through when a peer asks the origin's engine for a blob it
/// lacks, so the origin seeds it by the time the peer tries again.
#[derive(Debug)]
pub(crate) struct FetchOnMiss(pub(crate) Arc<ReadThrough>);

impl MissingBlob for FetchOnMiss {
    fn missing(&self, namespace: &Namespace, digest: &Digest) {
        let (read_through, namespace, digest) = (self.0.clone(), namespace.clone(), *digest);
        tokio::spawn(async move {
            if let Err(error) = read_through.ensure(&namespace, &digest).await {
                tracing::debug!(%namespace, %digest, %error, "peer asked for a blob the backend cannot give");
            }
        });
    }
}

/// Coalesced backend fetches of one origin.
#[derive(Debug)]
pub(crate) struct ReadThrough {
    store: Arc<dyn BlobStore>,
    backend: Arc<dyn Backend>,
    lengths: PieceLengths,
    config: ReadThroughConfig,
    entries: Mutex<HashMap<Digest, Entry>>,
    permits: Semaphore,
    fetches: AtomicU64,
}

impl ReadThrough {
    pub(crate) fn new(
        store: Arc<dyn BlobStore>,
        backend: Arc<dyn Backend>,
        lengths: PieceLengths,
        config: ReadThroughConfig,
    ) -> Self {
        ReadThrough {
            store,
            backend,
            lengths,
            permits: Semaphore::new(config.max_fetches.max(1)),
            config,
            entries: Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
        }
    }

    /// Backend downloads started so far.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Blobs being read from the backend now.
    pub(crate) fn in_flight(&self) -> usize {
        let entries = self.lock();
        entries
            .values()
            .filter(|e| matches!(e, Entry::Fetching))
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, Entry>> {
        // Entries are replaced whole; a panic cannot leave one half-written.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns whether the store holds `digest`, starting a backend fetch
    /// when it does not and the backend has it.
    ///
    /// # Errors
    ///
    /// `Backend` with kind `NotFound` when the backend lacks the blob, or
    /// the backend's error when it cannot tell; the error of a fetch that
    /// failed within the last `failure_ttl`.
    pub(crate) async fn ensure(
        self: &Arc<Self>,
        namespace: &Namespace,
        digest: &Digest,
    ) -> Result<Lookup> {
        if self.present(digest).await {
            return Ok(Lookup::Present);
        }
        match self.lock().get(digest) {
            Some(Entry::Fetching) => return Ok(Lookup::Fetching),
            Some(Entry::Failed { failure, until }) if Instant::now() < *until => {
                return Err(failure.to_error());
            }
            _ => {}
        }
        let name = digest.to_string();
        self.backend.stat(namespace, &name).await?;
        {
            let mut entries = self.lock();
            if matches!(entries.get(digest), Some(Entry::Fetching)) {
                return Ok(Lookup::Fetching);
            }
            entries.insert(*digest, Entry::Fetching);
        }
        // The blob may have been committed while the backend was asked.
        if self.present(digest).await {
            self.lock().remove(digest);
            return Ok(Lookup::Present);
        }
        let this = self.clone();
        let (namespace, digest) = (namespace.clone(), *digest);
        let span = tracing::info_span!("read_through", %namespace, %digest);
        tokio::spawn(
            async move {
                let result = this.fetch(&namespace, &digest).await;
                let mut entries = this.lock();
                match result {
                    Ok(()) => {
                        entries.remove(&digest);
                    }
                    Err(error) => {
                        let until = Instant::now() + this.config.failure_ttl;
                        let failure = Failure::of(&error);
                        entries.insert(digest, Entry::Failed { failure, until });
                    }
                }
            }
            .instrument(span),
        );
        Ok(Lookup::Fetching)
    }

    async fn present(&self, digest: &Digest) -> bool {
        self.store
            .stat(digest)
            .await
            .is_ok_and(|s| s.state == BlobState::Cached)
    }

    /// Downloads the blob into an upload and commits it, which verifies it.
    async fn fetch(&self, namespace: &Namespace, digest: &Digest) -> Result<()> {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Cancelled)?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let id = self.store.create_upload().await?;
        let result = async {
            let mut body = self
                .backend
                .download(namespace, &digest.to_string(), None)
                .await?;
            let mut offset = 0;
            while let Some(chunk) = body.next().await {
                offset = self.store.append_upload(&id, offset, chunk?).await?;
            }
            self.store.commit_upload(&id, digest, &self.lengths).await
        }
        .await;
        match result {
            Ok(meta) => {
                tracing::info!(
                    length = meta.length(),
                    elapsed = ?started.elapsed(),
                    "read blob from the backend"
                );
                Ok(())
            }
            Err(error) => {
                // A commit ends the upload either way; anything earlier
                // leaves it to discard.
                let _ = self.store.abort_upload(&id).await;
                if let Error::DigestMismatch { actual, .. } = &error {
                    tracing::error!(
                        backend = self.backend.kind(),
                        path = %format_args!("{namespace}/{digest}"),
                        %actual,
                        "backend returned bytes of another blob; nothing stored"
                    );
                } else {
                    tracing::warn!(%error, backend = self.backend.kind(), "read-through failed");
                }
                Err(error)
            }
        }
    }
}
