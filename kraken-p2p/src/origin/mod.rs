//! The origin: the dedicated seeder that holds every blob and stands in
//! front of the backend.
//!
//! An origin accepts uploads, verifies and stores them, copies them to the
//! other owners of the digest ([`cluster`]), queues the write-back to the
//! backend ([`writeback`]), fetches what it lacks from the backend once
//! however many callers ask (read-through), and seeds everything it holds
//! to the swarm. [`OriginClient`] is how the tracker, the proxy and
//! build-index talk to a cluster of origins.
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn kraken_core::BlobStore>,
//! #              backend: std::sync::Arc<dyn kraken_core::Backend>) -> kraken_core::Result<()> {
//! use kraken_p2p::origin::{Origin, OriginConfig, OriginServer};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:15002").await?;
//! let config = OriginConfig {
//!     addr: "127.0.0.1:15002".into(),
//!     ..OriginConfig::single("127.0.0.1:15002", "/var/lib/kraken/writeback.redb")
//! };
//! let origin = Origin::start(config, store, backend).await?;
//! let server = OriginServer::serve(listener, origin.clone());
//! # Ok(()) }
//! ```

pub mod client;
pub mod cluster;
mod readthrough;
mod server;
pub mod writeback;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::serve::Listener;
use kraken_core::{
    Backend, BlobStore, Digest, Error, MetaInfo, Namespace, PeerInfo, PieceLengths, Result,
};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use client::{OriginClient, OriginClientConfig, Prefetch, RemoteCluster};
pub use cluster::{Cluster, ClusterConfig, HealthConfig, MemberHealth, MemberStatus, Members};
pub use readthrough::ReadThroughConfig;
pub use server::{Locations, ORIGIN_LOCATIONS, router};
pub use writeback::{WriteBack, WriteBackConfig, WriteBackJob, WriteBackTask};

use crate::auth::WriteAuth;
use crate::http_tls::HttpListener;
use crate::metrics::{Metrics, instrument};
use crate::scheduler::{Engine, EngineOptions};
use crate::tracker::{AnnounceRequest, AnnounceResponse, Tracker};
use readthrough::{FetchOnMiss, ReadThrough};

/// Everything an origin needs to know; the binaries' TOML deserializes
/// into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// This origin's HTTP address exactly as the cluster's member list
    /// names it (`host:port`), so it finds itself among the owners.
    pub addr: String,
    /// The cluster: members, replica count, health checks.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// The P2P engine; `origin` is forced on.
    #[serde(default)]
    pub p2p: EngineOptions,
    /// The file of the durable write-back queue.
    pub queue_path: PathBuf,
    /// Write-back retries and concurrency.
    #[serde(default)]
    pub writeback: WriteBackConfig,
    /// How long a replica waits before writing a copied blob back itself,
    /// in case the origin that took the upload could not. The write-back
    /// skips blobs the backend already holds, so the later ones cost a
    /// stat.
    #[serde(default = "default_replica_delay", with = "humantime_serde")]
    pub replica_writeback_delay: Duration,
    /// Backend fetches of blobs this origin lacks.
    #[serde(default)]
    pub read_through: ReadThroughConfig,
    /// Requests to the other origins (copies of committed blobs).
    #[serde(default)]
    pub client: OriginClientConfig,
    /// Piece length by blob size for the metainfo of new blobs.
    #[serde(default)]
    pub piece_lengths: PieceLengths,
    /// The namespace `/readiness` stats a probe object in, to check the
    /// backend answers; point it at a routed namespace when the backend is
    /// a router.
    #[serde(default = "default_readiness_namespace")]
    pub readiness_namespace: Namespace,
    /// Tokens that uploads, commits, copies and deletes must carry; none
    /// leaves them open. Give the other origins' client
    /// ([`OriginConfig::client`]) one of them.
    #[serde(default)]
    pub auth: WriteAuth,
}

fn default_replica_delay() -> Duration {
    Duration::from_secs(30 * 60)
}

fn default_readiness_namespace() -> Namespace {
    Namespace::new("kraken-readiness").expect("a valid namespace")
}

impl OriginConfig {
    /// A one-origin cluster at `addr` with its queue at `queue_path` and
    /// every other setting at its default.
    pub fn single(addr: impl Into<String>, queue_path: impl Into<PathBuf>) -> OriginConfig {
        let addr = addr.into();
        OriginConfig {
            cluster: ClusterConfig {
                members: Members::Static(vec![addr.clone()]),
                ..ClusterConfig::default()
            },
            addr,
            p2p: EngineOptions::default(),
            queue_path: queue_path.into(),
            writeback: WriteBackConfig::default(),
            replica_writeback_delay: default_replica_delay(),
            read_through: ReadThroughConfig::default(),
            client: OriginClientConfig::default(),
            piece_lengths: PieceLengths::default(),
            readiness_namespace: default_readiness_namespace(),
            auth: WriteAuth::default(),
        }
    }

    /// Checks every part of the config.
    ///
    /// # Errors
    ///
    /// A message naming the first bad setting.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.cluster.validate()?;
        self.writeback.validate("writeback")?;
        self.client.validate()?;
        self.p2p.scheduler.validate().map_err(|e| e.to_string())?;
        if self.read_through.max_fetches == 0 {
            return Err("read_through.max_fetches must be at least 1".into());
        }
        if let Members::Static(members) = &self.cluster.members
            && !members.contains(&self.addr)
        {
            return Err(format!(
                "origin address {:?} is not among the cluster members {members:?}",
                self.addr
            ));
        }
        Ok(())
    }
}

/// A running origin: store, backend, placement, write-back, read-through
/// and the seeding P2P engine. Cheap to clone; serve its HTTP API with
/// [`router`] or [`OriginServer`].
#[derive(Clone)]
pub struct Origin {
    inner: Arc<OriginInner>,
}

pub(crate) struct OriginInner {
    config: OriginConfig,
    store: Arc<dyn BlobStore>,
    backend: Arc<dyn Backend>,
    cluster: Cluster,
    writeback: WriteBack,
    read_through: Arc<ReadThrough>,
    engine: Engine,
    client: OriginClient,
    metrics: Metrics,
    shutdown: CancellationToken,
    writeback_task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin")
            .field("addr", &self.inner.config.addr)
            .field("peer", self.inner.engine.local_peer())
            .finish_non_exhaustive()
    }
}

impl Origin {
    /// Validates the config, opens the write-back queue (re-pinning what
    /// it holds), joins the cluster and starts seeding.
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the bad setting; the queue's error when its
    /// file cannot be opened; `Io` when the P2P address cannot be bound or
    /// the cluster's DNS name does not resolve.
    pub async fn start(
        config: OriginConfig,
        store: Arc<dyn BlobStore>,
        backend: Arc<dyn Backend>,
    ) -> Result<Origin> {
        let invalid = |m: String| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, m));
        config.validate().map_err(invalid)?;
        let shutdown = CancellationToken::new();
        let writeback = WriteBack::open(
            &config.queue_path,
            config.writeback.clone(),
            store.clone(),
            backend.clone(),
        )
        .await?;
        let cluster = Cluster::start(
            config.cluster.clone(),
            Some(config.addr.clone()),
            config.client.tls.as_ref(),
            shutdown.child_token(),
        )
        .await?;
        let members: Vec<String> = cluster.members().into_iter().map(|m| m.addr).collect();
        let client = OriginClient::new(members, config.client.clone())?;
        let options = EngineOptions {
            origin: true,
            ..config.p2p.clone()
        };
        let read_through = Arc::new(ReadThrough::new(
            store.clone(),
            backend.clone(),
            config.piece_lengths.clone(),
            config.read_through.clone(),
        ));
        let on_missing = Arc::new(FetchOnMiss(read_through.clone()));
        let engine = Engine::start_with(
            options,
            store.clone(),
            Arc::new(NoTracker),
            Some(on_missing),
        )
        .await?;
        let task = writeback.start(shutdown.child_token());
        let metrics = origin_metrics(&writeback, &read_through, &engine);
        tracing::info!(
            addr = %config.addr,
            p2p = %engine.local_peer().addr,
            pending_writebacks = writeback.len(),
            "origin started"
        );
        Ok(Origin {
            inner: Arc::new(OriginInner {
                config,
                store,
                backend,
                cluster,
                writeback,
                read_through,
                engine,
                client,
                metrics,
                shutdown,
                writeback_task: std::sync::Mutex::new(Some(task)),
            }),
        })
    }

    /// This origin's HTTP address as the cluster names it.
    pub fn addr(&self) -> &str {
        &self.inner.config.addr
    }

    /// This origin as a peer: its P2P address and peer id.
    pub fn peer(&self) -> &PeerInfo {
        self.inner.engine.local_peer()
    }

    /// The cluster as this origin sees it.
    pub fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    /// The write-back queue.
    pub fn writeback(&self) -> &WriteBack {
        &self.inner.writeback
    }

    /// The store this origin serves from.
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.inner.store
    }

    /// The origin's metrics: requests, write-back queue, read-through, swarm.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Backend downloads this origin has started, for tests and metrics.
    pub fn read_through_fetches(&self) -> u64 {
        self.inner.read_through.fetches()
    }

    /// Blobs being read from the backend now.
    pub fn read_through_in_flight(&self) -> usize {
        self.inner.read_through.in_flight()
    }

    /// Stops seeding and health checks, lets the write-backs in flight
    /// finish and waits for the queue's worker to end. Tasks still
    /// pending stay in the queue for the next start.
    pub async fn shutdown(&self) {
        self.inner.engine.shutdown();
        self.inner.shutdown.cancel();
        let task = self
            .inner
            .writeback_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for OriginInner {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.engine.shutdown();
    }
}

fn origin_metrics(
    writeback: &WriteBack,
    read_through: &Arc<ReadThrough>,
    engine: &Engine,
) -> Metrics {
    let metrics = Metrics::new("origin");
    let queue = writeback.clone();
    metrics.gauge(
        "writeback_pending",
        "Blobs waiting to be written back to the backend",
        move || i64::try_from(queue.len()).unwrap_or(i64::MAX),
    );
    let rt = read_through.clone();
    metrics.gauge(
        "read_through_in_flight",
        "Blobs being read from the backend now",
        move || i64::try_from(rt.in_flight()).unwrap_or(i64::MAX),
    );
    let rt = read_through.clone();
    metrics.counter(
        "read_through_fetches",
        "Backend downloads started for blobs the origin lacked",
        move || rt.fetches(),
    );
    metrics.scheduler(Arc::new(engine.clone()));
    metrics
}

/// The tracker of an origin's engine. An origin never dials out or
/// announces (the tracker hands origins out with every blob), so the
/// engine never calls it; if it ever did, the call fails loudly.
#[derive(Debug)]
struct NoTracker;

#[async_trait]
impl Tracker for NoTracker {
    async fn announce(&self, request: &AnnounceRequest) -> Result<AnnounceResponse> {
        Err(Error::Unavailable(request.digest))
    }

    async fn metainfo(&self, _namespace: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        Err(Error::Unavailable(*digest))
    }
}

/// The answer to a write without an accepted token.
fn unauthorized() -> axum::response::Response {
    let mut response = crate::http_error::error_response(
        axum::http::StatusCode::UNAUTHORIZED,
        "this origin takes writes only with a token (Authorization: Bearer <token>)".into(),
    );
    response.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer realm=\"kraken-origin\""),
    );
    response
}

/// A running origin HTTP server.
///
/// Dropping it stops the server without waiting; [`OriginServer::shutdown`]
/// stops it and waits for requests in flight (uploads included) to finish.
#[derive(Debug)]
pub struct OriginServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl OriginServer {
    /// Serves `origin`'s [`router`] on `listener` (a `TcpListener`, or an
    /// [`HttpListener`] that may speak TLS) until shut down.
    ///
    /// # Errors
    ///
    /// `Io` when the listener has no local address.
    pub fn serve(listener: impl Into<HttpListener>, origin: Origin) -> Result<OriginServer> {
        let listener = listener.into();
        let local_addr = Listener::local_addr(&listener)?;
        let cancel = CancellationToken::new();
        let stop = cancel.clone().cancelled_owned();
        let metrics = origin.metrics().clone();
        let auth = origin.inner.config.auth.clone();
        let app = auth.require_for_writes(router(origin), unauthorized);
        let app = instrument(app, metrics);
        let span = tracing::info_span!("origin_http", addr = %local_addr);
        let task = tokio::spawn(
            async move {
                tracing::info!("origin listening");
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await;
                if let Err(e) = &served {
                    tracing::error!(error = %e, "origin server failed");
                }
                served
            }
            .instrument(span),
        );
        Ok(OriginServer {
            local_addr,
            cancel,
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, lets requests in flight finish, and
    /// waits for the server to end.
    ///
    /// # Errors
    ///
    /// `Io` when the server had failed while serving.
    pub async fn shutdown(mut self) -> Result<()> {
        self.cancel.cancel();
        let Some(task) = self.task.take() else {
            return Ok(());
        };
        match task.await {
            Ok(served) => Ok(served?),
            Err(e) => Err(Error::Io(io::Error::other(format!(
                "origin server task ended abnormally: {e}"
            )))),
        }
    }
}

impl Drop for OriginServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
