//! A whole cluster in one process: origins, a tracker, build-index, the
//! proxy and agents, wired as they are in production but on one host.
//!
//! `kraken devcluster`, the integration tests and the examples start their
//! clusters here; each component is started by the same function of
//! [`crate::node`] that its binary uses, so the wiring exists once. The
//! components talk to each other over real HTTP and P2P sockets on
//! [`ClusterOptions::host`]; only the process is shared.
//!
//! [`Ports::Fixed`] puts every component on the documented local ports
//! (proxy 15000, origin `i` at 15002 + 100 i with P2P at 15001 + 100 i,
//! tracker 15003, build-index 15004, agent `i` registry at 16000 + 1000 i,
//! P2P and blob API on the next two ports); [`Ports::Ephemeral`] lets the
//! system pick, for tests that run side by side.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::serve::Listener;
use bytesize::ByteSize;
use kraken_core::Backend;
use kraken_core::disk::DiskStoreOptions;
use kraken_p2p::auth::{Token, WriteAuth};
use kraken_p2p::http_tls::{ClientTlsOptions, HttpListener, ServerTlsOptions};
use kraken_p2p::origin::{ClusterConfig, Members, OriginClient, OriginClientConfig, OriginConfig};
use kraken_p2p::scheduler::{EngineOptions, SchedulerConfig};
use kraken_p2p::tls::TlsOptions;
use kraken_p2p::tracker::{HttpTrackerConfig, TrackerServer};
use tokio_util::sync::CancellationToken;

use crate::api::RegistryConfig;
use crate::buildindex::{BuildIndexClientConfig, BuildIndexConfig};
use crate::http::Server;
use crate::node::{
    self, AgentNode, AgentOptions, BuildIndexNode, OriginNode, ProxyOptions, StartError,
    TrackerOptions, failed,
};

/// Where the components listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    /// The documented local ports (see the module docs).
    Fixed,
    /// Ports the system picks.
    Ephemeral,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Every component's state lives below it (`origin-0/`, `agent-1/`, ...).
    pub data_dir: PathBuf,
    /// The address every component binds.
    pub host: IpAddr,
    /// Origins to start.
    pub origins: usize,
    /// Agents to start.
    pub agents: usize,
    /// Owners of each blob, at most `origins`.
    pub replicas: usize,
    /// Where the components listen.
    pub ports: Ports,
    /// The P2P scheduler settings of origins and agents.
    pub scheduler: SchedulerConfig,
    /// The disk each origin and agent store may use.
    pub store_capacity: ByteSize,
    /// When set, writes to the proxy, origins and build-index need this
    /// token, and the components send it to each other; pulls stay open.
    pub token: Option<Token>,
    /// When set, every component runs mutual TLS with this material (one
    /// certificate for all, valid for [`Self::host`]): the HTTP APIs of
    /// origins, tracker, build-index and proxy, every client between them,
    /// and the peer connections. The agents' registries stay plain HTTP,
    /// for local clients.
    pub tls: Option<TlsOptions>,
}

impl ClusterOptions {
    /// One origin and two agents on the fixed local ports under `data_dir`.
    pub fn local(data_dir: impl Into<PathBuf>) -> ClusterOptions {
        ClusterOptions {
            data_dir: data_dir.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            origins: 1,
            agents: 2,
            replicas: 3,
            ports: Ports::Fixed,
            scheduler: SchedulerConfig::default(),
            store_capacity: ByteSize::gib(16),
            token: None,
            tls: None,
        }
    }

    /// The write tokens components accept.
    fn auth(&self) -> WriteAuth {
        WriteAuth {
            tokens: self.token.iter().cloned().collect(),
        }
    }

    /// The config of clients of the origins, with the token and TLS.
    fn origin_client(&self) -> OriginClientConfig {
        OriginClientConfig {
            token: self.token.clone(),
            tls: self.client_tls(),
            ..OriginClientConfig::default()
        }
    }

    fn client_tls(&self) -> Option<ClientTlsOptions> {
        self.tls.as_ref().map(ClientTlsOptions::from)
    }

    fn server_tls(&self) -> Option<ServerTlsOptions> {
        self.tls.as_ref().map(ServerTlsOptions::from)
    }

    /// Binds one component's HTTP API, with TLS when the cluster has it.
    async fn listen(&self, addr: SocketAddr, name: &str) -> Result<HttpListener, ClusterError> {
        node::listen(addr, name, self.server_tls().as_ref()).await
    }

    fn port(&self, fixed: u16) -> u16 {
        match self.ports {
            Ports::Fixed => fixed,
            Ports::Ephemeral => 0,
        }
    }

    fn addr(&self, fixed: u16) -> SocketAddr {
        SocketAddr::new(self.host, self.port(fixed))
    }

    fn origin_http(&self, i: usize) -> SocketAddr {
        self.addr(15002 + 100 * offset(i))
    }

    fn origin_p2p(&self, i: usize) -> SocketAddr {
        self.addr(15001 + 100 * offset(i))
    }

    fn agent_port(&self, i: usize, which: u16) -> SocketAddr {
        self.addr(16000 + 1000 * offset(i) + which)
    }
}

/// `i` as a port offset; option checks keep it small.
fn offset(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// Why a cluster did not start.
pub type ClusterError = StartError;

/// A running cluster; [`Cluster::shutdown`] stops it.
#[derive(Debug)]
pub struct Cluster {
    origins: Vec<OriginNode>,
    tracker: TrackerServer,
    build_index: BuildIndexNode,
    proxy: Server,
    agents: Vec<AgentNode>,
    origin_client: OriginClientConfig,
    cancel: CancellationToken,
}

impl Cluster {
    /// Starts every component over `backend`, the cluster's source of
    /// truth for blobs and tags.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Options`] for options that make no cluster;
    /// [`ClusterError::Start`] naming the component that failed (a port in
    /// use, a data directory another process holds).
    pub async fn start(
        options: ClusterOptions,
        backend: Arc<dyn Backend>,
    ) -> Result<Cluster, ClusterError> {
        check(&options)?;
        let cancel = CancellationToken::new();
        let origins = start_origins(&options, &backend).await?;
        let members: Vec<String> = origins.iter().map(|o| o.origin.addr().to_owned()).collect();
        let tracker = node::tracker(
            TrackerOptions {
                origins: members.clone(),
                origin_client: OriginClientConfig {
                    tls: options.client_tls(),
                    ..OriginClientConfig::default()
                },
                peer_store: Default::default(),
                handout: Default::default(),
            },
            options.listen(options.addr(15003), "tracker").await?,
            &cancel,
        )
        .await?;
        let index_config = BuildIndexConfig {
            origins: members.clone(),
            origin_client: options.origin_client(),
            client: BuildIndexClientConfig {
                tls: options.client_tls(),
                ..BuildIndexClientConfig::default()
            },
            auth: options.auth(),
            ..BuildIndexConfig::new(options.data_dir.join("build-index").join("index.redb"))
        };
        let listener = options.listen(options.addr(15004), "build-index").await?;
        let build_index = node::build_index(index_config, backend.clone(), listener).await?;
        let index_addr = build_index.http_addr().to_string();
        let proxy = node::proxy(
            ProxyOptions {
                origins: members,
                origin_client: options.origin_client(),
                build_index: vec![index_addr.clone()],
                build_index_client: BuildIndexClientConfig {
                    token: options.token.clone(),
                    tls: options.client_tls(),
                    ..BuildIndexClientConfig::default()
                },
                registry: RegistryConfig::default(),
                uploads: Default::default(),
                store: store_options(&options, "proxy"),
                auth: options.auth(),
            },
            options.listen(options.addr(15000), "proxy").await?,
        )
        .await?;
        let mut agents = Vec::with_capacity(options.agents);
        for i in 0..options.agents {
            let push_to = proxy.local_addr().to_string();
            agents.push(start_agent(&options, i, &tracker.url(), &index_addr, push_to).await?);
        }
        Ok(Cluster {
            origins,
            tracker,
            build_index,
            proxy,
            agents,
            origin_client: options.origin_client(),
            cancel,
        })
    }

    /// The proxy's address: push here.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// The tracker's address.
    pub fn tracker_addr(&self) -> SocketAddr {
        self.tracker.local_addr()
    }

    /// Build-index's address.
    pub fn build_index_addr(&self) -> SocketAddr {
        self.build_index.http_addr()
    }

    /// The running origins.
    pub fn origins(&self) -> &[OriginNode] {
        &self.origins
    }

    /// The running agents.
    pub fn agents(&self) -> &[AgentNode] {
        &self.agents
    }

    /// A client of the origins, as the proxy has (with the cluster's
    /// token).
    ///
    /// # Errors
    ///
    /// Never for a started cluster; the type is the client's.
    pub fn origin_client(&self) -> kraken_core::Result<OriginClient> {
        let members: Vec<String> = self
            .origins
            .iter()
            .map(|o| o.origin.addr().to_owned())
            .collect();
        OriginClient::new(members, self.origin_client.clone())
    }

    /// What runs where, one line per listener, for people.
    pub fn describe(&self) -> Vec<(String, SocketAddr)> {
        let mut lines = vec![("proxy (push here)".to_owned(), self.proxy_addr())];
        for (i, o) in self.origins.iter().enumerate() {
            lines.push((format!("origin {i} http"), o.http_addr()));
            lines.push((format!("origin {i} p2p"), o.origin.peer().addr));
        }
        lines.push(("tracker".to_owned(), self.tracker_addr()));
        lines.push(("build-index".to_owned(), self.build_index_addr()));
        for (i, a) in self.agents.iter().enumerate() {
            lines.push((format!("agent {i} registry (pull here)"), a.registry_addr()));
            lines.push((format!("agent {i} p2p"), a.p2p_addr()));
            lines.push((format!("agent {i} blob api"), a.api_addr()));
        }
        lines
    }

    /// Stops every component, front to back: agents and proxy first, the
    /// origins last so their write-backs in flight finish.
    pub async fn shutdown(self) {
        for node in self.agents {
            node.shutdown().await;
        }
        let _ = self.proxy.shutdown().await;
        self.build_index.shutdown().await;
        let _ = self.tracker.shutdown().await;
        for node in self.origins {
            node.shutdown(std::time::Duration::from_secs(5)).await;
        }
        self.cancel.cancel();
    }
}

fn check(options: &ClusterOptions) -> Result<(), ClusterError> {
    let invalid = |m: &str| Err(ClusterError::Options(m.to_owned()));
    if options.origins == 0 {
        return invalid("at least one origin is needed");
    }
    if options.origins > 9 || options.agents > 9 {
        return invalid("at most 9 origins and 9 agents fit the local port plan");
    }
    if options.replicas == 0 {
        return invalid("replicas must be at least 1");
    }
    Ok(())
}

fn store_options(options: &ClusterOptions, name: &str) -> DiskStoreOptions {
    DiskStoreOptions {
        capacity: options.store_capacity,
        ..DiskStoreOptions::new(options.data_dir.join(name).join("store"))
    }
}

async fn start_origins(
    options: &ClusterOptions,
    backend: &Arc<dyn Backend>,
) -> Result<Vec<OriginNode>, ClusterError> {
    // Every origin must know every member before the first starts, so the
    // HTTP listeners are bound first and their addresses collected.
    let mut listeners = Vec::with_capacity(options.origins);
    for i in 0..options.origins {
        listeners.push(
            options
                .listen(options.origin_http(i), &format!("origin {i}"))
                .await?,
        );
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| Listener::local_addr(l).map(|a| a.to_string()))
        .collect::<io::Result<_>>()
        .map_err(failed("origin listeners"))?;
    let mut nodes = Vec::with_capacity(options.origins);
    for (i, listener) in listeners.into_iter().enumerate() {
        let name = format!("origin-{i}");
        let config = OriginConfig {
            cluster: ClusterConfig {
                members: Members::Static(addrs.clone()),
                replicas: options.replicas.min(options.origins),
                ..ClusterConfig::default()
            },
            p2p: EngineOptions {
                listen: options.origin_p2p(i),
                scheduler: options.scheduler.clone(),
                tls: options.tls.clone(),
                ..EngineOptions::default()
            },
            client: options.origin_client(),
            auth: options.auth(),
            ..OriginConfig::single(
                addrs[i].clone(),
                options.data_dir.join(&name).join("queue.redb"),
            )
        };
        let store = store_options(options, &name);
        nodes.push(node::origin(config, store, backend.clone(), listener).await?);
    }
    Ok(nodes)
}

async fn start_agent(
    options: &ClusterOptions,
    i: usize,
    tracker_url: &str,
    index_addr: &str,
    push_to: String,
) -> Result<AgentNode, ClusterError> {
    node::agent(AgentOptions {
        registry_listen: options.agent_port(i, 0),
        registry_tls: None,
        api_listen: options.agent_port(i, 2),
        trackers: vec![tracker_url.to_owned()],
        tracker_client: HttpTrackerConfig {
            tls: options.client_tls(),
            ..HttpTrackerConfig::default()
        },
        build_index: vec![index_addr.to_owned()],
        build_index_client: BuildIndexClientConfig {
            tls: options.client_tls(),
            ..BuildIndexClientConfig::default()
        },
        p2p: EngineOptions {
            listen: options.agent_port(i, 1),
            scheduler: options.scheduler.clone(),
            tls: options.tls.clone(),
            ..EngineOptions::default()
        },
        store: store_options(options, &format!("agent-{i}")),
        registry: RegistryConfig {
            push_to: Some(push_to),
            ..RegistryConfig::default()
        },
    })
    .await
}
