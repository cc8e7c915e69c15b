//! The config files of the five components and how each runs: start it
//! from its file, serve until SIGTERM or SIGINT, then stop gracefully
//! (requests in flight finish, queues are flushed once, and what is still
//! pending stays on disk for the next start).
//!
//! Every file has a `[log]` table (`format = "text" | "json"`, `level`);
//! the rest is the component's own. `examples/configs/` holds a file of
//! each, documented key by key.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use kraken_backends::config::BackendRoute;
use kraken_core::disk::DiskStoreOptions;
use kraken_p2p::http_tls::{ClientTlsOptions, ServerTlsOptions};
use kraken_p2p::origin::OriginConfig;
use kraken_registry::buildindex::BuildIndexConfig;
use kraken_registry::node::{self, AgentOptions, ProxyOptions, TrackerOptions};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cli::ComponentArgs;
use crate::config::{self, ComponentConfig};
use crate::logging::LogOptions;

/// How long a stopping origin keeps trying to write back what is queued.
const FLUSH_GRACE: Duration = Duration::from_secs(30);

fn check<E: std::fmt::Display>(what: &str, result: Result<(), E>) -> Result<(), String> {
    result.map_err(|e| format!("{what}: {e}"))
}

/// Loads the listener TLS of `table`, when set, to find bad files at start.
fn check_server_tls(table: &str, tls: Option<&ServerTlsOptions>) -> Result<(), String> {
    match tls {
        Some(tls) => check(table, tls.load().map(drop)),
        None => Ok(()),
    }
}

/// Loads the client TLS of `table`, when set, to find bad files at start.
fn check_client_tls(table: &str, tls: Option<&ClientTlsOptions>) -> Result<(), String> {
    match tls {
        Some(tls) => check(table, tls.load().map(drop)),
        None => Ok(()),
    }
}

/// `kraken-origin`'s file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginFile {
    /// Where the HTTP API listens; `origin.addr` is how the cluster names
    /// this origin and may differ (a DNS name, a NAT).
    pub listen: SocketAddr,
    /// TLS of the HTTP API; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<ServerTlsOptions>,
    /// Log settings.
    #[serde(default)]
    pub log: LogOptions,
    /// The origin: its address, cluster, P2P engine, queue, read-through.
    pub origin: OriginConfig,
    /// Where blobs are kept.
    pub store: DiskStoreOptions,
    /// Where blobs are written back to and read through from, by namespace.
    pub backends: Vec<BackendRoute>,
}

impl ComponentConfig for OriginFile {
    fn validate(&self) -> Result<(), String> {
        check("[origin]", self.origin.validate())?;
        check("[store]", self.store.validate())?;
        if self.backends.is_empty() {
            return Err("[[backends]]: at least one route is needed".into());
        }
        Ok(())
    }

    fn check_files(&self) -> Result<(), String> {
        check_server_tls("[tls]", self.tls.as_ref())?;
        check_client_tls("[origin.client.tls]", self.origin.client.tls.as_ref())
    }
}

/// `kraken-tracker`'s file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerFile {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// TLS of the HTTP API; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<ServerTlsOptions>,
    /// Log settings.
    #[serde(default)]
    pub log: LogOptions,
    /// The origins, the peer store and the handout.
    pub tracker: TrackerOptions,
}

impl ComponentConfig for TrackerFile {
    fn validate(&self) -> Result<(), String> {
        if self.tracker.origins.is_empty() {
            return Err("[tracker] origins: at least one origin is needed".into());
        }
        check(
            "[tracker.origin_client]",
            self.tracker.origin_client.validate(),
        )
    }

    fn check_files(&self) -> Result<(), String> {
        check_server_tls("[tls]", self.tls.as_ref())?;
        check_client_tls(
            "[tracker.origin_client.tls]",
            self.tracker.origin_client.tls.as_ref(),
        )
    }
}

/// `kraken-build-index`'s file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildIndexFile {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// TLS of the HTTP API; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<ServerTlsOptions>,
    /// Log settings.
    #[serde(default)]
    pub log: LogOptions,
    /// Database, origins, write-back and replication.
    pub build_index: BuildIndexConfig,
    /// Where tags are written through to, by repository.
    pub backends: Vec<BackendRoute>,
}

impl ComponentConfig for BuildIndexFile {
    fn validate(&self) -> Result<(), String> {
        check("[build_index]", self.build_index.validate())?;
        if self.backends.is_empty() {
            return Err("[[backends]]: at least one route is needed".into());
        }
        Ok(())
    }

    fn check_files(&self) -> Result<(), String> {
        let index = &self.build_index;
        check_server_tls("[tls]", self.tls.as_ref())?;
        check_client_tls(
            "[build_index.origin_client.tls]",
            index.origin_client.tls.as_ref(),
        )?;
        check_client_tls("[build_index.client.tls]", index.client.tls.as_ref())
    }
}

/// `kraken-proxy`'s file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// Where the registry API listens.
    pub listen: SocketAddr,
    /// TLS of the registry API; plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<ServerTlsOptions>,
    /// Log settings.
    #[serde(default)]
    pub log: LogOptions,
    /// Origins, build-index, limits and the scratch store.
    pub proxy: ProxyOptions,
}

impl ComponentConfig for ProxyFile {
    fn validate(&self) -> Result<(), String> {
        if self.proxy.origins.is_empty() || self.proxy.build_index.is_empty() {
            return Err("[proxy] origins and build_index must each name at least one".into());
        }
        check("[proxy.origin_client]", self.proxy.origin_client.validate())?;
        check("[proxy.store]", self.proxy.store.validate())
    }

    fn check_files(&self) -> Result<(), String> {
        let proxy = &self.proxy;
        check_server_tls("[tls]", self.tls.as_ref())?;
        check_client_tls(
            "[proxy.origin_client.tls]",
            proxy.origin_client.tls.as_ref(),
        )?;
        check_client_tls(
            "[proxy.build_index_client.tls]",
            proxy.build_index_client.tls.as_ref(),
        )
    }
}

/// `kraken-agent`'s file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// Log settings.
    #[serde(default)]
    pub log: LogOptions,
    /// Listeners, trackers, build-index, P2P engine and store.
    pub agent: AgentOptions,
}

impl ComponentConfig for AgentFile {
    fn validate(&self) -> Result<(), String> {
        let agent = &self.agent;
        if agent.trackers.is_empty() || agent.build_index.is_empty() {
            return Err("[agent] trackers and build_index must each name at least one".into());
        }
        check("[agent.p2p.scheduler]", agent.p2p.scheduler.validate())?;
        check("[agent.tracker_client]", agent.tracker_client.validate())?;
        check("[agent.store]", agent.store.validate())
    }

    fn check_files(&self) -> Result<(), String> {
        let agent = &self.agent;
        check_server_tls("[agent.registry_tls]", agent.registry_tls.as_ref())?;
        check_client_tls(
            "[agent.tracker_client.tls]",
            agent.tracker_client.tls.as_ref(),
        )?;
        check_client_tls(
            "[agent.build_index_client.tls]",
            agent.build_index_client.tls.as_ref(),
        )
    }
}

/// Reads the config, sets up logging, and logs the settings (secrets are
/// redacted by their types' `Debug`). `None` when `--check` was asked for
/// and the file is fine.
fn prepare<T: ComponentConfig>(
    args: &ComponentArgs,
    log: impl Fn(&T) -> LogOptions,
) -> anyhow::Result<Option<T>> {
    let file: T = config::load(&args.config)?;
    if args.check {
        println!("{}: ok", args.config.display());
        return Ok(None);
    }
    crate::logging::init(&args.log.apply(log(&file)))?;
    tracing::info!(config = ?file, "starting");
    Ok(Some(file))
}

/// Runs `kraken-origin`.
///
/// # Errors
///
/// A config that does not load, or a part that does not start.
pub async fn origin(args: ComponentArgs) -> anyhow::Result<()> {
    let Some(file) = prepare::<OriginFile>(&args, |f| f.log.clone())? else {
        return Ok(());
    };
    let backend = kraken_backends::config::build(&file.backends)
        .await
        .context("[[backends]]")?;
    let listener = node::listen(file.listen, "origin", file.tls.as_ref()).await?;
    let node = node::origin(file.origin, file.store, backend, listener).await?;
    crate::shutdown_signal().await;
    node.shutdown(FLUSH_GRACE).await;
    Ok(())
}

/// Runs `kraken-tracker`.
///
/// # Errors
///
/// A config that does not load, or a tracker that does not start.
pub async fn tracker(args: ComponentArgs) -> anyhow::Result<()> {
    let Some(file) = prepare::<TrackerFile>(&args, |f| f.log.clone())? else {
        return Ok(());
    };
    let cancel = CancellationToken::new();
    let listener = node::listen(file.listen, "tracker", file.tls.as_ref()).await?;
    let server = node::tracker(file.tracker, listener, &cancel).await?;
    crate::shutdown_signal().await;
    server.shutdown().await?;
    Ok(())
}

/// Runs `kraken-build-index`.
///
/// # Errors
///
/// A config that does not load, or build-index does not start.
pub async fn build_index(args: ComponentArgs) -> anyhow::Result<()> {
    let Some(file) = prepare::<BuildIndexFile>(&args, |f| f.log.clone())? else {
        return Ok(());
    };
    let backend = kraken_backends::config::build(&file.backends)
        .await
        .context("[[backends]]")?;
    let listener = node::listen(file.listen, "build-index", file.tls.as_ref()).await?;
    let node = node::build_index(file.build_index, backend, listener).await?;
    crate::shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

/// Runs `kraken-proxy`.
///
/// # Errors
///
/// A config that does not load, or the proxy does not start.
pub async fn proxy(args: ComponentArgs) -> anyhow::Result<()> {
    let Some(file) = prepare::<ProxyFile>(&args, |f| f.log.clone())? else {
        return Ok(());
    };
    let listener = node::listen(file.listen, "proxy", file.tls.as_ref()).await?;
    let server = node::proxy(file.proxy, listener).await?;
    crate::shutdown_signal().await;
    server.shutdown().await?;
    Ok(())
}

/// Runs `kraken-agent`.
///
/// # Errors
///
/// A config that does not load, or the agent does not start.
pub async fn agent(args: ComponentArgs) -> anyhow::Result<()> {
    let Some(file) = prepare::<AgentFile>(&args, |f| f.log.clone())? else {
        return Ok(());
    };
    let node = node::agent(file.agent).await?;
    crate::shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

/// Parses `text` as the config of `component` (`origin`, `tracker`,
/// `build-index`, `proxy` or `agent`), for tests and fuzzing of the loader.
///
/// # Errors
///
/// The parse or validation error.
pub fn parse(component: &str, text: &str) -> anyhow::Result<()> {
    match component {
        "origin" => config::parse::<OriginFile>(text).map(drop),
        "tracker" => config::parse::<TrackerFile>(text).map(drop),
        "build-index" => config::parse::<BuildIndexFile>(text).map(drop),
        "proxy" => config::parse::<ProxyFile>(text).map(drop),
        "agent" => config::parse::<AgentFile>(text).map(drop),
        other => anyhow::bail!("no component {other:?}"),
    }
}

/// Whether `path` holds a config of `component` that loads, with the TLS
/// files it names.
///
/// # Errors
///
/// The file cannot be read, parsed or validated.
pub fn check_file(component: &str, path: &Path) -> anyhow::Result<()> {
    match component {
        "origin" => config::load::<OriginFile>(path).map(drop),
        "tracker" => config::load::<TrackerFile>(path).map(drop),
        "build-index" => config::load::<BuildIndexFile>(path).map(drop),
        "proxy" => config::load::<ProxyFile>(path).map(drop),
        "agent" => config::load::<AgentFile>(path).map(drop),
        other => anyhow::bail!("no component {other:?}"),
    }
}
