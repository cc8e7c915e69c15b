//! Cluster membership, health and placement.
//!
//! Members are a static list of origin addresses or a DNS name re-resolved
//! every [`ClusterConfig::refresh_interval`]. The owners of a digest are
//! the first [`ClusterConfig::replicas`] members in weighted rendezvous
//! order ([`kraken_core::Rendezvous`]); a member that failed
//! [`HealthConfig::fails`] probes in a row drops out of the answer until it
//! passes [`HealthConfig::passes`] in a row, and the next member in the
//! order stands in for it. Every member computes the same order from the
//! same list, so any origin answers where a blob lives.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kraken_core::{Digest, Error, Result};
use kraken_core::{Node, Rendezvous};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::http_tls::{self, ClientTlsOptions};

/// Where the member list comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Members {
    /// Origin HTTP addresses, `host:port`.
    #[serde(rename = "members")]
    Static(Vec<String>),
    /// A DNS name and port (`origins.kraken.svc:15002`) whose addresses are
    /// the members; re-resolved periodically.
    #[serde(rename = "dns")]
    Dns(String),
}

impl Default for Members {
    fn default() -> Self {
        Members::Static(Vec::new())
    }
}

/// Health probes of the other members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between two probes of a member.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Longest wait for a probe's answer.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Failed probes in a row that take a member out of placement.
    pub fails: u32,
    /// Passed probes in a row that bring it back.
    pub passes: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(3),
            timeout: Duration::from_secs(3),
            fails: 3,
            passes: 2,
        }
    }
}

/// The cluster as one origin (or a client of the cluster) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The member list: `members = ["a:15002", ...]` or `dns = "name:port"`.
    #[serde(flatten)]
    pub members: Members,
    /// Owners of each digest, the first of which takes its uploads.
    pub replicas: usize,
    /// How often a DNS member list is resolved again.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Health probes.
    pub health: HealthConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            members: Members::default(),
            replicas: 3,
            refresh_interval: Duration::from_secs(10),
            health: HealthConfig::default(),
        }
    }
}

impl ClusterConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// A message naming the first bad setting.
    pub fn validate(&self) -> std::result::Result<(), String> {
        match &self.members {
            Members::Static(members) => {
                if members.is_empty() {
                    return Err("cluster.members must name at least one origin".into());
                }
                for member in members {
                    check_host_port(member)
                        .map_err(|e| format!("cluster member {member:?}: {e}"))?;
                }
            }
            Members::Dns(name) => {
                check_host_port(name).map_err(|e| format!("cluster.dns {name:?}: {e}"))?;
            }
        }
        if self.replicas == 0 {
            return Err("cluster.replicas must be at least 1".into());
        }
        if self.refresh_interval.is_zero() {
            return Err("cluster.refresh_interval must be positive".into());
        }
        if self.health.interval.is_zero() || self.health.timeout.is_zero() {
            return Err("cluster.health.interval and timeout must be positive".into());
        }
        if self.health.fails == 0 || self.health.passes == 0 {
            return Err("cluster.health.fails and passes must be at least 1".into());
        }
        Ok(())
    }
}

fn check_host_port(addr: &str) -> std::result::Result<(), &'static str> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("expected host:port");
    };
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err("expected host:port");
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .map(|_| ())
        .ok_or("the port must be a number from 1 to 65535")
}

/// Whether a member currently takes part in placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberHealth {
    /// Answering (or not yet failed enough to be taken out).
    Healthy,
    /// Taken out of placement until it passes enough probes.
    Unhealthy,
}

/// One member and its health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its HTTP address.
    pub addr: String,
    /// Its health.
    pub health: MemberHealth,
    /// Whether it is the origin asking.
    pub is_self: bool,
}

#[derive(Debug, Clone)]
struct Tally {
    healthy: bool,
    fails: u32,
    passes: u32,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            healthy: true,
            fails: 0,
            passes: 0,
        }
    }

    /// Counts a probe; returns true when the member's health changed.
    fn record(&mut self, ok: bool, config: &HealthConfig) -> bool {
        if ok {
            self.fails = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.healthy && self.passes >= config.passes {
                self.healthy = true;
                return true;
            }
        } else {
            self.passes = 0;
            self.fails = self.fails.saturating_add(1);
            if self.healthy && self.fails >= config.fails {
                self.healthy = false;
                return true;
            }
        }
        false
    }
}

#[derive(Debug)]
struct State {
    ring: Rendezvous,
    members: Vec<String>,
    health: HashMap<String, Tally>,
}

impl State {
    fn new(members: Vec<String>) -> State {
        let mut state = State {
            ring: Rendezvous::default(),
            members: Vec::new(),
            health: HashMap::new(),
        };
        state.set_members(members);
        state
    }

    fn set_members(&mut self, mut members: Vec<String>) {
        members.sort();
        members.dedup();
        self.health.retain(|addr, _| members.contains(addr));
        for member in &members {
            self.health.entry(member.clone()).or_insert_with(Tally::new);
        }
        self.ring = Rendezvous::new(members.iter().map(Node::new));
        self.members = members;
    }

    fn healthy(&self, addr: &str) -> bool {
        self.health.get(addr).is_none_or(|t| t.healthy)
    }
}

/// Membership, health and placement of a cluster of origins. Cheap to
/// clone; clones share state.
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClusterConfig,
    self_addr: Option<String>,
    state: RwLock<State>,
}

impl Cluster {
    /// Resolves the members and, until `shutdown` is cancelled, probes the
    /// other members' `/health` and re-resolves a DNS name. `self_addr` is
    /// the asking origin, never probed; `None` for clients of the cluster.
    /// Probes go over `https://` with `tls` when given.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the config does not validate or the TLS files
    /// do not load; `Io` when the DNS name does not resolve at start.
    pub async fn start(
        config: ClusterConfig,
        self_addr: Option<String>,
        tls: Option<&ClientTlsOptions>,
        shutdown: CancellationToken,
    ) -> Result<Cluster> {
        let invalid = |m: String| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, m));
        config.validate().map_err(invalid)?;
        let prober = Prober::new(&config.health, tls).map_err(invalid)?;
        let members = match &config.members {
            Members::Static(members) => members.clone(),
            Members::Dns(name) => resolve(name).await?,
        };
        let cluster = Cluster {
            inner: Arc::new(Inner {
                state: RwLock::new(State::new(members)),
                config,
                self_addr,
            }),
        };
        if let Members::Dns(name) = &cluster.inner.config.members {
            tokio::spawn(refresh(cluster.clone(), name.clone(), shutdown.clone()));
        }
        tokio::spawn(probe_loop(cluster.clone(), prober, shutdown));
        Ok(cluster)
    }

    /// A cluster of fixed `members`, all healthy, with no background
    /// tasks: placement only, as tools and tests need it.
    pub fn fixed(members: Vec<String>, replicas: usize, self_addr: Option<String>) -> Cluster {
        Cluster {
            inner: Arc::new(Inner {
                state: RwLock::new(State::new(members.clone())),
                config: ClusterConfig {
                    members: Members::Static(members),
                    replicas: replicas.max(1),
                    ..ClusterConfig::default()
                },
                self_addr,
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The owners of `digest`, best first: the healthy members among the
    /// first `replicas` in rendezvous order, then as many healthy members
    /// from further down as stand in for unhealthy ones. When no member is
    /// healthy, the first `replicas` regardless, so callers still try.
    pub fn owners(&self, digest: &Digest) -> Vec<String> {
        let state = self.read();
        let replicas = self.inner.config.replicas;
        let ranked = state.ring.ranked(digest);
        let healthy: Vec<String> = ranked
            .iter()
            .filter(|n| state.healthy(&n.label))
            .take(replicas)
            .map(|n| n.label.clone())
            .collect();
        if !healthy.is_empty() {
            return healthy;
        }
        ranked
            .into_iter()
            .take(replicas)
            .map(|n| n.label.clone())
            .collect()
    }

    /// Whether the asking origin is among the owners of `digest`.
    pub fn is_owner(&self, digest: &Digest) -> bool {
        self.inner
            .self_addr
            .as_ref()
            .is_some_and(|me| self.owners(digest).contains(me))
    }

    /// The asking origin's address.
    pub fn self_addr(&self) -> Option<&str> {
        self.inner.self_addr.as_deref()
    }

    /// Every member and its health, sorted by address.
    pub fn members(&self) -> Vec<MemberStatus> {
        let state = self.read();
        state
            .members
            .iter()
            .map(|addr| MemberStatus {
                addr: addr.clone(),
                health: if state.healthy(addr) {
                    MemberHealth::Healthy
                } else {
                    MemberHealth::Unhealthy
                },
                is_self: self.inner.self_addr.as_deref() == Some(addr.as_str()),
            })
            .collect()
    }

    /// The replica count.
    pub fn replicas(&self) -> usize {
        self.inner.config.replicas
    }

    /// Counts a probe of `addr` (or any request that tells as much);
    /// members not in the list are ignored.
    pub fn record(&self, addr: &str, ok: bool) {
        let config = &self.inner.config.health;
        let mut state = self.write();
        if let Some(tally) = state.health.get_mut(addr)
            && tally.record(ok, config)
        {
            if tally.healthy {
                tracing::info!(member = addr, "origin healthy again");
            } else {
                tracing::warn!(member = addr, fails = config.fails, "origin unhealthy");
            }
        }
    }

    fn others(&self) -> Vec<String> {
        let state = self.read();
        state
            .members
            .iter()
            .filter(|m| self.inner.self_addr.as_deref() != Some(m.as_str()))
            .cloned()
            .collect()
    }
}

async fn resolve(name: &str) -> Result<Vec<String>> {
    let addrs = tokio::net::lookup_host(name).await.map_err(|e| {
        Error::Io(io::Error::new(
            e.kind(),
            format!("resolving cluster name {name}: {e}"),
        ))
    })?;
    let members: Vec<String> = addrs.map(|a| a.to_string()).collect();
    if members.is_empty() {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cluster name {name} resolves to no address"),
        )));
    }
    Ok(members)
}

/// Re-resolves the DNS name; a failed lookup keeps the old list.
async fn refresh(cluster: Cluster, name: String, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(cluster.inner.config.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match resolve(&name).await {
            Ok(mut members) => {
                members.sort();
                members.dedup();
                let mut state = cluster.write();
                if state.members != members {
                    tracing::info!(?members, "cluster members changed");
                    state.set_members(members);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "keeping the previous cluster members");
            }
        }
    }
}

/// The client of the health probes and the scheme it speaks.
struct Prober {
    client: reqwest::Client,
    scheme: &'static str,
}

impl Prober {
    fn new(
        config: &HealthConfig,
        tls: Option<&ClientTlsOptions>,
    ) -> std::result::Result<Prober, String> {
        let client = http_tls::client_builder(tls)
            .map_err(|e| format!("health-check client tls: {e}"))?
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| format!("building the health-check client: {e}"))?;
        Ok(Prober {
            client,
            scheme: http_tls::scheme(tls),
        })
    }
}

/// Probes every other member's `/health` each interval. A one-member
/// cluster has nothing to probe.
async fn probe_loop(cluster: Cluster, prober: Prober, shutdown: CancellationToken) {
    let config = cluster.inner.config.health.clone();
    let Prober { client, scheme } = prober;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let others = cluster.others();
        if others.is_empty() {
            continue;
        }
        let probes = others.into_iter().map(|addr| {
            let client = client.clone();
            async move {
                let ok = client
                    .get(format!("{scheme}://{addr}/health"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                (addr, ok)
            }
        });
        let results = tokio::select! {
            () = shutdown.cancelled() => return,
            results = futures::future::join_all(probes) => results,
        };
        for (addr, ok) in results {
            cluster.record(&addr, ok);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u32) -> Digest {
        Digest::sha256_of(format!("blob {i}").as_bytes())
    }

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("127.0.0.1:{}", 15000 + i)).collect()
    }

    #[test]
    fn owners_are_the_first_replicas_in_rendezvous_order() {
        let cluster = Cluster::fixed(members(5), 3, None);
        let ring = Rendezvous::new(members(5).into_iter().map(Node::new));
        for i in 0..50 {
            let d = digest(i);
            let expected: Vec<String> = ring
                .owners(&d, 3)
                .into_iter()
                .map(|n| n.label.clone())
                .collect();
            assert_eq!(cluster.owners(&d), expected);
        }
    }

    #[test]
    fn member_order_does_not_change_placement() {
        let mut reversed = members(4);
        reversed.reverse();
        let a = Cluster::fixed(members(4), 2, None);
        let b = Cluster::fixed(reversed, 2, None);
        for i in 0..50 {
            assert_eq!(a.owners(&digest(i)), b.owners(&digest(i)));
        }
    }

    #[test]
    fn an_unhealthy_owner_is_replaced_by_the_next_member() {
        let cluster = Cluster::fixed(members(4), 2, None);
        let d = digest(7);
        let before = cluster.owners(&d);
        let dead = before[0].clone();
        for _ in 0..2 {
            cluster.record(&dead, false);
        }
        assert_eq!(
            cluster.owners(&d),
            before,
            "two fails are below the threshold"
        );
        cluster.record(&dead, false);
        let after = cluster.owners(&d);
        assert_eq!(after.len(), 2);
        assert!(!after.contains(&dead));
        assert_eq!(after[0], before[1]);
        cluster.record(&dead, true);
        assert!(
            !cluster.owners(&d).contains(&dead),
            "one pass is not enough"
        );
        cluster.record(&dead, true);
        assert_eq!(cluster.owners(&d), before);
    }

    #[test]
    fn with_every_member_down_the_ranked_owners_are_still_returned() {
        let cluster = Cluster::fixed(members(2), 2, None);
        let d = digest(1);
        let before = cluster.owners(&d);
        for m in members(2) {
            for _ in 0..3 {
                cluster.record(&m, false);
            }
        }
        assert_eq!(cluster.owners(&d), before);
        assert!(
            cluster
                .members()
                .iter()
                .all(|m| m.health == MemberHealth::Unhealthy)
        );
    }

    #[test]
    fn is_owner_uses_the_self_address() {
        let all = members(3);
        let d = digest(3);
        let owners = Cluster::fixed(all.clone(), 1, None).owners(&d);
        let me = Cluster::fixed(all.clone(), 1, Some(owners[0].clone()));
        assert!(me.is_owner(&d));
        let other = all.iter().find(|m| **m != owners[0]).unwrap();
        assert!(!Cluster::fixed(all.clone(), 1, Some(other.clone())).is_owner(&d));
        assert!(!Cluster::fixed(all, 1, None).is_owner(&d));
    }

    #[test]
    fn config_is_checked() {
        let mut config = ClusterConfig {
            members: Members::Static(vec!["origin-1:15002".into()]),
            ..ClusterConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        config.members = Members::Static(vec!["origin-1".into()]);
        assert!(config.validate().unwrap_err().contains("host:port"));
        config.members = Members::Static(vec!["http://origin-1:15002".into()]);
        assert!(config.validate().is_err());
        config.members = Members::Static(Vec::new());
        assert!(config.validate().unwrap_err().contains("at least one"));
        config.members = Members::Dns("origins:0".into());
        assert!(config.validate().unwrap_err().contains("port"));
        config.members = Members::Dns("origins:15002".into());
        config.replicas = 0;
        assert!(config.validate().unwrap_err().contains("replicas"));
    }

    #[test]
    fn config_reads_from_toml_either_way() {
        let config: ClusterConfig =
            toml::from_str("members = [\"a:1\", \"b:2\"]\nreplicas = 2\n").unwrap();
        assert_eq!(
            config.members,
            Members::Static(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(config.replicas, 2);
        let config: ClusterConfig =
            toml::from_str("dns = \"origins:15002\"\n[health]\nfails = 5\n").unwrap();
        assert_eq!(config.members, Members::Dns("origins:15002".into()));
        assert_eq!(config.health.fails, 5);
        assert_eq!(config.health.passes, 2);
        let bad: std::result::Result<ClusterConfig, _> = toml::from_str("membres = [\"a:1\"]\n");
        assert!(bad.is_err());
    }

    #[tokio::test]
    async fn dns_members_resolve_at_start() {
        let cluster = Cluster::start(
            ClusterConfig {
                members: Members::Dns("localhost:15002".into()),
                ..ClusterConfig::default()
            },
            None,
            None,
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let members = cluster.members();
        assert!(!members.is_empty());
        assert!(members.iter().all(|m| m.addr.ends_with(":15002")));
    }

    #[tokio::test]
    async fn probes_take_a_dead_member_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().route("/health", axum::routing::get(|| async { "ok" }));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        // A port nobody listens on.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let stop = CancellationToken::new();
        let config = ClusterConfig {
            members: Members::Static(vec![live.clone(), dead.clone()]),
            replicas: 2,
            health: HealthConfig {
                interval: Duration::from_millis(20),
                timeout: Duration::from_millis(500),
                fails: 2,
                passes: 1,
            },
            ..ClusterConfig::default()
        };
        let cluster = Cluster::start(config, None, None, stop.clone())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let members = cluster.members();
            let health = |a: &str| members.iter().find(|m| m.addr == a).unwrap().health;
            if health(&dead) == MemberHealth::Unhealthy {
                assert_eq!(health(&live), MemberHealth::Healthy);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the dead member stayed healthy"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(cluster.owners(&digest(1)), vec![live]);
        stop.cancel();
        server.abort();
    }
}
