//! One component at a time: the wiring of each process of a cluster.
//!
//! Each function here starts one component from typed options that the
//! binaries' TOML files deserialize into: an origin, a tracker, build-index,
//! the proxy or an agent. [`crate::cluster`] starts a whole cluster with
//! the same functions, so a component is wired the same way in production,
//! in `kraken devcluster` and in the tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kraken_core::Backend;
use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_p2p::agent::Agent;
use kraken_p2p::auth::WriteAuth;
use kraken_p2p::http_tls::{HttpListener, ServerTlsOptions};
use kraken_p2p::metrics::Metrics;
use kraken_p2p::origin::{Origin, OriginClient, OriginClientConfig, OriginConfig, OriginServer};
use kraken_p2p::scheduler::EngineOptions;
use kraken_p2p::tracker::{
    HttpTracker, HttpTrackerConfig, MemoryPeerStore, RedisPeerStore, RedisPeerStoreConfig,
    TrackerConfig, TrackerServer, TrackerService,
};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::agent::SwarmBlobs;
use crate::api::{Registry, RegistryConfig};
use crate::buildindex::{
    BuildIndex, BuildIndexClient, BuildIndexClientConfig, BuildIndexConfig, BuildIndexServer,
};
use crate::http::Server;
use crate::proxy::{OriginBlobs, UploadConfig, Writer};

/// Why a component did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The options make no working component.
    #[error("invalid options: {0}")]
    Options(String),
    /// A part did not start; the message names it.
    #[error("{component} did not start: {source}")]
    Start {
        /// The part.
        component: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub(crate) fn failed<E>(component: impl Into<String>) -> impl FnOnce(E) -> StartError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let component = component.into();
    move |e| StartError::Start {
        component,
        source: Box::new(e),
    }
}

/// Binds `addr` for `component`, naming both when it fails.
///
/// # Errors
///
/// When the address is in use or not local.
pub async fn bind(addr: SocketAddr, component: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| failed(format!("{component} on {addr}"))(e))
}

/// Binds `addr` for `component` and, with `tls`, serves TLS on it (mutual
/// TLS when `tls` names a client CA).
///
/// # Errors
///
/// When the address cannot be bound, or a TLS file is missing or
/// malformed; the message names the component and the file.
pub async fn listen(
    addr: SocketAddr,
    component: &str,
    tls: Option<&ServerTlsOptions>,
) -> Result<HttpListener, StartError> {
    let config = tls
        .map(ServerTlsOptions::load)
        .transpose()
        .map_err(failed(format!("{component} tls")))?;
    let tcp = bind(addr, component).await?;
    HttpListener::new(tcp, config).map_err(failed(format!("{component} on {addr}")))
}

async fn open_store(options: DiskStoreOptions, name: &str) -> Result<Arc<DiskStore>, StartError> {
    let store = DiskStore::open(options)
        .await
        .map_err(failed(format!("{name} store")))?;
    Ok(Arc::new(store))
}

/// A running origin.
#[derive(Debug)]
pub struct OriginNode {
    /// The origin.
    pub origin: Origin,
    pub(crate) server: OriginServer,
}

impl OriginNode {
    /// The HTTP address it listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops serving and lets uploads in flight finish, tries every
    /// pending write-back once for up to `flush` (a backend that is down
    /// does not hold the stop longer), then stops the origin; what is
    /// still pending stays queued for the next start.
    pub async fn shutdown(self, flush: Duration) {
        let _ = self.server.shutdown().await;
        let writeback = self.origin.writeback();
        match tokio::time::timeout(flush, writeback.flush()).await {
            Ok(0) => tracing::info!("write-back queue empty"),
            Ok(left) => tracing::warn!(
                left,
                "write-backs still pending; they run at the next start"
            ),
            Err(_) => {
                tracing::warn!("write-back flush timed out; pending jobs run at the next start")
            }
        }
        self.origin.shutdown().await;
    }
}

/// Starts an origin serving its API on `listener`.
///
/// # Errors
///
/// When the store, the queue or the P2P listener cannot be opened, or the
/// config does not validate.
pub async fn origin(
    config: OriginConfig,
    store: DiskStoreOptions,
    backend: Arc<dyn Backend>,
    listener: impl Into<HttpListener>,
) -> Result<OriginNode, StartError> {
    let store = open_store(store, "origin").await?;
    let origin = Origin::start(config, store, backend)
        .await
        .map_err(failed("origin"))?;
    let server = OriginServer::serve(listener, origin.clone()).map_err(failed("origin http"))?;
    Ok(OriginNode { origin, server })
}

/// Where a tracker keeps its peers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PeerStoreOptions {
    /// In this process: one tracker per cluster.
    #[default]
    Memory,
    /// In Redis, shared by every tracker of the cluster.
    Redis(RedisPeerStoreConfig),
}

/// A tracker's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerOptions {
    /// HTTP addresses (`host:port`) of the cluster's origins.
    pub origins: Vec<String>,
    /// Timeouts of the requests to them.
    #[serde(default)]
    pub origin_client: OriginClientConfig,
    /// Where peers are kept.
    #[serde(default)]
    pub peer_store: PeerStoreOptions,
    /// Handout size and announce interval.
    #[serde(default)]
    pub handout: TrackerConfig,
}

/// Starts a tracker serving on `listener`; `cancel` stops it as well as
/// [`TrackerServer::shutdown`].
///
/// # Errors
///
/// When Redis cannot be reached or an origin address is not `host:port`.
pub async fn tracker(
    options: TrackerOptions,
    listener: impl Into<HttpListener>,
    cancel: &CancellationToken,
) -> Result<TrackerServer, StartError> {
    let origins = OriginClient::new(options.origins, options.origin_client)
        .map_err(failed("origin client"))?;
    let ttl = options.handout.peer_ttl;
    let peers: Arc<dyn kraken_core::PeerStore> = match &options.peer_store {
        PeerStoreOptions::Memory => Arc::new(MemoryPeerStore::new(ttl)),
        PeerStoreOptions::Redis(config) => Arc::new(
            RedisPeerStore::connect(config, ttl)
                .await
                .map_err(failed("redis peer store"))?,
        ),
    };
    let service = Arc::new(TrackerService::new(
        options.handout,
        peers,
        Arc::new(origins),
    ));
    TrackerServer::serve(listener, service, cancel).map_err(failed("tracker"))
}

/// A running build-index.
#[derive(Debug)]
pub struct BuildIndexNode {
    /// The service.
    pub build_index: BuildIndex,
    pub(crate) server: BuildIndexServer,
}

impl BuildIndexNode {
    /// The HTTP address it listens on.
    pub fn http_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops serving, then stops the queues; pending jobs stay queued.
    pub async fn shutdown(self) {
        let _ = self.server.shutdown().await;
        self.build_index.shutdown().await;
    }
}

/// Starts build-index serving on `listener`.
///
/// # Errors
///
/// When the config does not validate or its database cannot be opened.
pub async fn build_index(
    config: BuildIndexConfig,
    backend: Arc<dyn Backend>,
    listener: impl Into<HttpListener>,
) -> Result<BuildIndexNode, StartError> {
    let origins = config
        .origin_client()
        .map_err(|e| StartError::Options(e.to_string()))?;
    let build_index = BuildIndex::start(config, backend, origins)
        .await
        .map_err(failed("build-index"))?;
    let server = BuildIndexServer::serve(listener, build_index.clone())
        .map_err(failed("build-index http"))?;
    Ok(BuildIndexNode {
        build_index,
        server,
    })
}

/// The proxy's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyOptions {
    /// HTTP addresses (`host:port`) of the cluster's origins.
    pub origins: Vec<String>,
    /// Timeouts of the requests to them.
    #[serde(default)]
    pub origin_client: OriginClientConfig,
    /// Build-index addresses (`host:port`), tried in order.
    pub build_index: Vec<String>,
    /// Timeouts of the requests to build-index.
    #[serde(default)]
    pub build_index_client: BuildIndexClientConfig,
    /// Limits of the registry API.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Upload settings.
    #[serde(default)]
    pub uploads: UploadConfig,
    /// The scratch store of uploads in progress.
    pub store: DiskStoreOptions,
    /// Tokens that pushes must carry; none leaves pushes open (the local
    /// cluster on loopback).
    #[serde(default)]
    pub auth: WriteAuth,
}

/// Starts the proxy serving on `listener`.
///
/// # Errors
///
/// When an address is malformed or the scratch store cannot be opened.
pub async fn proxy(
    options: ProxyOptions,
    listener: impl Into<HttpListener>,
) -> Result<Server, StartError> {
    let origins = OriginClient::new(options.origins, options.origin_client)
        .map_err(failed("origin client"))?;
    let index = BuildIndexClient::new(options.build_index, options.build_index_client)
        .map_err(failed("build-index client"))?;
    let scratch = open_store(options.store, "proxy").await?;
    let writer = Writer::new(scratch, origins.clone(), options.uploads);
    let registry = Registry::read_write(
        Arc::new(OriginBlobs(origins.clone())),
        Arc::new(index),
        writer,
        options.registry,
    );
    let app = crate::proxy::router(registry, origins, options.auth);
    Server::serve(listener, app, "proxy", Metrics::new("proxy")).map_err(failed("proxy http"))
}

/// An agent's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentOptions {
    /// Where the read-only registry listens; keep it on loopback.
    pub registry_listen: SocketAddr,
    /// TLS of the registry listener; unset (the default) serves plain HTTP,
    /// which is what local clients on loopback expect.
    #[serde(default)]
    pub registry_tls: Option<ServerTlsOptions>,
    /// Where the generic blob API listens.
    pub api_listen: SocketAddr,
    /// Tracker base URLs (`http://host:port`, or `https://` with
    /// `tracker_client.tls`).
    pub trackers: Vec<String>,
    /// Timeouts and failover of the tracker client.
    #[serde(default)]
    pub tracker_client: HttpTrackerConfig,
    /// Build-index addresses (`host:port`), tried in order.
    pub build_index: Vec<String>,
    /// Timeouts of the requests to build-index.
    #[serde(default)]
    pub build_index_client: BuildIndexClientConfig,
    /// The P2P engine: listen address, scheduler, TLS.
    #[serde(default)]
    pub p2p: EngineOptions,
    /// Where blobs are kept.
    pub store: DiskStoreOptions,
    /// Limits of the registry API; `push_to` names the proxy in the answer
    /// to a push.
    #[serde(default)]
    pub registry: RegistryConfig,
}

/// A running agent: its P2P engine and blob API, and its registry.
#[derive(Debug)]
pub struct AgentNode {
    /// The agent (engine and blob API).
    pub agent: Agent,
    pub(crate) registry: Server,
}

impl AgentNode {
    /// The address of the agent's read-only registry.
    pub fn registry_addr(&self) -> SocketAddr {
        self.registry.local_addr()
    }

    /// The address of the agent's generic blob API.
    pub fn api_addr(&self) -> SocketAddr {
        self.agent
            .http_addr()
            .expect("agents started here serve their blob API")
    }

    /// The agent's P2P address.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.agent.engine().local_peer().addr
    }

    /// Stops the registry, then the engine and blob API; partial downloads
    /// stay resumable.
    pub async fn shutdown(self) {
        let _ = self.registry.shutdown().await;
        self.agent.shutdown().await;
    }
}

/// Starts an agent.
///
/// # Errors
///
/// When an address is malformed or in use, or the store cannot be opened.
pub async fn agent(options: AgentOptions) -> Result<AgentNode, StartError> {
    let store = open_store(options.store, "agent").await?;
    let tracker = HttpTracker::new(&options.trackers, options.tracker_client)
        .map_err(failed("tracker client"))?;
    let index = BuildIndexClient::new(options.build_index, options.build_index_client)
        .map_err(failed("build-index client"))?;
    let agent = Agent::builder(store.clone(), Arc::new(tracker))
        .engine_options(options.p2p)
        .http(options.api_listen)
        .build()
        .await
        .map_err(failed("agent"))?;
    let registry = Registry::read_only(
        Arc::new(SwarmBlobs::new(agent.scheduler(), store)),
        Arc::new(index),
        options.registry,
    );
    let listener = listen(
        options.registry_listen,
        "agent registry",
        options.registry_tls.as_ref(),
    )
    .await?;
    let metrics = agent.metrics().clone();
    let app = crate::api::router(registry);
    let registry = Server::serve(listener, app, "agent_registry", metrics)
        .map_err(failed("agent registry http"))?;
    Ok(AgentNode { agent, registry })
}
