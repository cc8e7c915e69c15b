//! The engine: the real [`Scheduler`], with sockets, a listener and one
//! task per active blob.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use kraken_core::{
    Bandwidth, BlobState, BlobStore, ByteRange, Digest, Error, Namespace, PeerId, PeerInfo, Result,
    Scheduler, SchedulerStats,
};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::conn::BoxIo;
use super::session::{self, Event, Phase, SessionHandle};
use super::{SchedulerConfig, stream};
use crate::tls::{PeerTls, TlsOptions};
use crate::tracker::Tracker;
use crate::wire::{Handshake, WireError, read_handshake, write_handshake};

/// Where the engine listens and who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineOptions {
    /// The address to accept peer connections on; port 0 picks one.
    pub listen: SocketAddr,
    /// The address other peers should dial, when it differs from the bound
    /// one (a NAT, or a wildcard listen address).
    pub advertise: Option<SocketAddr>,
    /// True for an origin: it seeds and never dials out.
    pub origin: bool,
    /// The scheduler's tunables.
    pub scheduler: SchedulerConfig,
    /// Mutual TLS on every peer connection, dialled or accepted, when set;
    /// plain TCP otherwise. Every peer of a cluster must agree: a TLS peer
    /// and a plain one cannot talk.
    pub tls: Option<TlsOptions>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            origin: false,
            scheduler: SchedulerConfig::default(),
            tls: None,
        }
    }
}

/// Told when a peer asks for a blob the store lacks. An origin reads the
/// blob from its backend, so the peer finds it when it tries again (the
/// connection itself is refused; the peer retries after its blacklist
/// expires or takes the pieces from another origin meanwhile).
pub trait MissingBlob: Send + Sync + fmt::Debug {
    /// Called for each such handshake; must return at once, so start any
    /// work in the background.
    fn missing(&self, namespace: &Namespace, digest: &Digest);
}

/// The P2P engine: gets blobs from the swarm and seeds what it holds.
///
/// Cloning is cheap; clones share one engine. The engine stops when
/// [`Engine::shutdown`] is called.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// State shared by the engine, its sessions and their connections.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: SchedulerConfig,
    pub(crate) store: Arc<dyn BlobStore>,
    pub(crate) tracker: Arc<dyn Tracker>,
    pub(crate) local: PeerInfo,
    pub(crate) ingress: Bandwidth,
    pub(crate) egress: Bandwidth,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_in_from_origins: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) next_conn_id: AtomicU64,
    pub(crate) shutdown: CancellationToken,
    tls: Option<PeerTls>,
    on_missing: Option<Arc<dyn MissingBlob>>,
    next_session: AtomicU64,
    sessions: Mutex<HashMap<Digest, SessionHandle>>,
    start: Instant,
}

impl Engine {
    /// Binds the listener and starts accepting peers.
    ///
    /// # Errors
    ///
    /// When the configuration is invalid, the TLS material cannot be loaded
    /// (the error wraps a [`TlsError`](crate::tls::TlsError) naming the
    /// file), or the address cannot be bound.
    pub async fn start(
        options: EngineOptions,
        store: Arc<dyn BlobStore>,
        tracker: Arc<dyn Tracker>,
    ) -> Result<Engine> {
        Engine::start_with(options, store, tracker, None).await
    }

    /// As [`Engine::start`], telling `on_missing` about every inbound
    /// handshake for a blob the store lacks.
    ///
    /// # Errors
    ///
    /// As [`Engine::start`].
    pub async fn start_with(
        options: EngineOptions,
        store: Arc<dyn BlobStore>,
        tracker: Arc<dyn Tracker>,
        on_missing: Option<Arc<dyn MissingBlob>>,
    ) -> Result<Engine> {
        let config = options.scheduler;
        config
            .validate()
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let tls = options
            .tls
            .as_ref()
            .map(PeerTls::load)
            .transpose()
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let listener = TcpListener::bind(options.listen).await?;
        let addr = options.advertise.unwrap_or(listener.local_addr()?);
        let local = PeerInfo {
            origin: options.origin,
            ..PeerInfo::new(PeerId::from_addr(addr), addr)
        };
        let inner = Arc::new(Inner {
            ingress: Bandwidth::new(config.ingress_limit),
            egress: Bandwidth::new(config.egress_limit),
            config,
            store,
            tracker,
            local,
            bytes_in: AtomicU64::new(0),
            bytes_in_from_origins: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            next_conn_id: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
            tls,
            on_missing,
            next_session: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            start: Instant::now(),
        });
        let tls = inner.tls.is_some();
        tracing::info!(%addr, peer = %inner.local.peer_id, tls, "p2p engine listening");
        let span = tracing::info_span!("p2p", peer = %inner.local.peer_id);
        tokio::spawn(accept_loop(inner.clone(), listener).instrument(span));
        Ok(Engine { inner })
    }

    /// Returns this engine's identity and address as peers see them.
    pub fn local_peer(&self) -> &PeerInfo {
        &self.inner.local
    }

    /// Stops accepting, closes every connection and ends every session;
    /// partial downloads stay resumable.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Inner {
    /// Returns the time since the engine started, the clock every
    /// scheduling decision uses.
    pub(crate) fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, SessionHandle>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets a session that ended, unless a newer one took its place.
    pub(crate) fn remove_session(&self, digest: &Digest, id: u64) {
        let mut sessions = self.sessions();
        if sessions.get(digest).is_some_and(|s| s.id == id) {
            sessions.remove(digest);
        }
    }

    /// Returns the session of `digest`, starting a download when none runs.
    pub(crate) fn download_session(
        self: &Arc<Self>,
        namespace: &Namespace,
        digest: &Digest,
    ) -> SessionHandle {
        let mut sessions = self.sessions();
        if let Some(handle) = sessions.get(digest)
            && !matches!(handle.view.borrow().phase, Phase::Failed(_))
        {
            return handle.clone();
        }
        let handle = session::spawn(self.clone(), namespace.clone(), *digest, None);
        sessions.insert(*digest, handle.clone());
        handle
    }

    /// Returns the session of a blob the store holds, starting a seeding
    /// session when none runs.
    async fn seed_session(
        self: &Arc<Self>,
        namespace: &Namespace,
        digest: &Digest,
    ) -> Result<SessionHandle> {
        if let Some(handle) = self.sessions().get(digest) {
            return Ok(handle.clone());
        }
        let stat = self.store.stat(digest).await?;
        if stat.state != BlobState::Cached {
            return Err(Error::NotFound(*digest));
        }
        let meta = Arc::new(self.store.metainfo(digest).await?);
        let mut sessions = self.sessions();
        let handle = sessions.entry(*digest).or_insert_with(|| {
            session::spawn(self.clone(), namespace.clone(), *digest, Some(meta))
        });
        Ok(handle.clone())
    }

    /// Connects to a peer, sets up TLS when configured, and exchanges
    /// handshakes, all within the handshake timeout.
    pub(crate) async fn dial(
        &self,
        peer: &PeerInfo,
        hello: &Handshake,
    ) -> Result<(Handshake, BoxIo), WireError> {
        let timeout = self.config.handshake_timeout;
        let exchange = async {
            let tcp = TcpStream::connect(peer.addr).await?;
            tcp.set_nodelay(true)?;
            let mut io: BoxIo = match &self.tls {
                Some(tls) => Box::new(tls.connect(peer.addr, tcp).await?),
                None => Box::new(tcp),
            };
            write_handshake(&mut io, hello).await?;
            let theirs = read_handshake(&mut io).await?;
            Ok((theirs, io))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(WireError::Io(std::io::ErrorKind::TimedOut.into())),
        }
    }
}

async fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = inner.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, addr)) => {
                let span = tracing::debug_span!("inbound", %addr);
                tokio::spawn(inbound(inner.clone(), tcp).instrument(span));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Sets up TLS when configured and reads an inbound handshake, within the
/// handshake timeout.
async fn accept(inner: &Inner, tcp: TcpStream) -> Result<(Handshake, BoxIo), WireError> {
    let _ = tcp.set_nodelay(true);
    let mut io: BoxIo = match &inner.tls {
        Some(tls) => Box::new(tls.accept(tcp).await?),
        None => Box::new(tcp),
    };
    let handshake = read_handshake(&mut io).await?;
    Ok((handshake, io))
}

/// Reads an inbound handshake and hands the connection to its session.
async fn inbound(inner: Arc<Inner>, tcp: TcpStream) {
    let read = tokio::time::timeout(inner.config.handshake_timeout, accept(&inner, tcp)).await;
    let (handshake, io) = match read {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => return tracing::debug!(error = %e, "bad handshake"),
        Err(_) => return tracing::debug!("handshake timed out"),
    };
    let existing = inner.sessions().get(&handshake.digest).cloned();
    let session = match existing {
        Some(session) => session,
        None => match inner
            .seed_session(&handshake.namespace, &handshake.digest)
            .await
        {
            Ok(session) => session,
            Err(Error::NotFound(_)) => {
                tracing::debug!(digest = %handshake.digest, "peer asked for a blob not held");
                if let Some(hook) = &inner.on_missing {
                    hook.missing(&handshake.namespace, &handshake.digest);
                }
                return;
            }
            Err(e) => {
                return tracing::debug!(digest = %handshake.digest, error = %e, "cannot seed");
            }
        },
    };
    let _ = session.events.send(Event::Inbound { handshake, io }).await;
}

#[async_trait]
impl Scheduler for Engine {
    async fn download(&self, namespace: &Namespace, digest: &Digest) -> Result<()> {
        if self
            .inner
            .store
            .stat(digest)
            .await
            .is_ok_and(|s| s.state == BlobState::Cached)
        {
            return Ok(());
        }
        let handle = self.inner.download_session(namespace, digest);
        let _ = handle.events.send(Event::Touch).await;
        let mut view = handle.view;
        let phase = view
            .wait_for(|v| matches!(v.phase, Phase::Complete | Phase::Failed(_)))
            .await
            .map(|v| v.phase.clone())
            .map_err(|_| Error::Unavailable(*digest))?;
        match phase {
            Phase::Failed(failure) => Err(failure.to_error(digest)),
            _ => Ok(()),
        }
    }

    async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> Result<kraken_core::BlobStream> {
        stream::open(&self.inner, namespace, digest, range).await
    }

    async fn seed(&self, namespace: &Namespace, digest: &Digest) -> Result<()> {
        let handle = self.inner.seed_session(namespace, digest).await?;
        let _ = handle.events.send(Event::Touch).await;
        Ok(())
    }

    fn cancel(&self, digest: &Digest) {
        if let Some(handle) = self.inner.sessions().get(digest) {
            let _ = handle.events.try_send(Event::Cancel);
        }
    }

    fn stats(&self) -> SchedulerStats {
        let sessions = self.inner.sessions();
        let seeding = sessions
            .values()
            .filter(|s| s.view.borrow().phase == Phase::Complete);
        let seeding = seeding.count() as u64;
        SchedulerStats {
            downloading: sessions.len() as u64 - seeding,
            seeding,
            connections: self.inner.connections.load(Ordering::Relaxed),
            bytes_in: self.inner.bytes_in.load(Ordering::Relaxed),
            bytes_in_from_origins: self.inner.bytes_in_from_origins.load(Ordering::Relaxed),
            bytes_out: self.inner.bytes_out.load(Ordering::Relaxed),
        }
    }
}
