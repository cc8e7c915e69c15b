//! Build-index settings, as the `kraken-build-index` binary's TOML file
//! spells them: serde defaults for everything but the database path,
//! human-readable durations and sizes, unknown keys refused, and one
//! [`BuildIndexConfig::validate`] step that names the first bad setting.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use kraken_core::Namespace;
use kraken_p2p::auth::{Token, WriteAuth};
use kraken_p2p::http_tls::ClientTlsOptions;
use kraken_p2p::origin::{OriginClient, OriginClientConfig};
use kraken_p2p::queue::QueueConfig;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};

/// Everything a build-index needs to know.
///
/// ```toml
/// database_path = "/var/lib/kraken/build-index.redb"
/// origins = ["origin1:15002", "origin2:15002"]
///
/// [writeback]
/// max_backoff = "2m"
///
/// [[replication.rules]]
/// pattern = "^library/.*:.*$"
/// remotes = ["build-index.dc2:15004"]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildIndexConfig {
    /// The one database file of tags, manifest records and both queues.
    pub database_path: PathBuf,
    /// HTTP addresses (`host:port`) of this cluster's origins. The binary
    /// builds its [`OriginClient`] from them ([`Self::origin_client`]);
    /// `GET /origin` answers them to remote clusters.
    #[serde(default)]
    pub origins: Vec<String>,
    /// The origin client's timeouts and polling; also used to reach the
    /// origins of remote clusters during replication.
    #[serde(default)]
    pub origin_client: OriginClientConfig,
    /// Retries and concurrency of the write-back to the backend.
    #[serde(default)]
    pub writeback: QueueConfig,
    /// Which tags go to which remote clusters.
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// The namespace of the catalog markers, one object per repository,
    /// from which the catalog is recovered after a wipe.
    #[serde(default = "default_catalog_namespace")]
    pub catalog_namespace: Namespace,
    /// Manifests above this size are refused as invalid before they are
    /// read, so a digest naming a large layer cannot fill memory.
    #[serde(default = "default_max_manifest_size")]
    pub max_manifest_size: ByteSize,
    /// Timeouts of the client of remote build-indexes.
    #[serde(default)]
    pub client: BuildIndexClientConfig,
    /// Tokens that puts and deletes must carry; none leaves them open.
    #[serde(default)]
    pub auth: WriteAuth,
}

fn default_catalog_namespace() -> Namespace {
    Namespace::new("kraken-catalog").expect("a valid namespace")
}

fn default_max_manifest_size() -> ByteSize {
    ByteSize::mib(4)
}

impl BuildIndexConfig {
    /// A config with its database at `database_path` and every other
    /// setting at its default.
    pub fn new(database_path: impl Into<PathBuf>) -> BuildIndexConfig {
        BuildIndexConfig {
            database_path: database_path.into(),
            origins: Vec::new(),
            origin_client: OriginClientConfig::default(),
            writeback: QueueConfig::default(),
            replication: ReplicationConfig::default(),
            catalog_namespace: default_catalog_namespace(),
            max_manifest_size: default_max_manifest_size(),
            client: BuildIndexClientConfig::default(),
            auth: WriteAuth::default(),
        }
    }

    /// Checks every setting, replication patterns included.
    ///
    /// # Errors
    ///
    /// A message naming the first bad setting.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.database_path.as_os_str().is_empty() {
            return Err("database_path must not be empty".into());
        }
        for origin in &self.origins {
            check_host_port(origin).map_err(|e| format!("origins: {e}"))?;
        }
        self.origin_client.validate()?;
        self.writeback.validate("writeback")?;
        self.replication.validate()?;
        self.client.validate()?;
        if self.max_manifest_size.as_u64() == 0 {
            return Err("max_manifest_size must be above zero".into());
        }
        Ok(())
    }

    /// Builds the client of this cluster's origins from [`Self::origins`].
    ///
    /// # Errors
    ///
    /// `UNKNOWN` when no origin is configured or an address is malformed.
    pub fn origin_client(&self) -> Result<OriginClient> {
        OriginClient::new(self.origins.clone(), self.origin_client.clone())
            .map_err(|e| Error::new(ErrorCode::Unknown, format!("origins: {e}")))
    }
}

/// Cross-cluster replication: rules and the queue that runs them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// Tags matching a rule's pattern go to each of its remotes.
    pub rules: Vec<ReplicationRule>,
    /// Retries and concurrency of replication jobs.
    pub queue: QueueConfig,
}

impl ReplicationConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        self.queue.validate("replication.queue")?;
        for (i, rule) in self.rules.iter().enumerate() {
            rule.compile()
                .map_err(|e| format!("replication.rules[{i}]: {e}"))?;
            if rule.remotes.is_empty() {
                return Err(format!("replication.rules[{i}]: remotes is empty"));
            }
            for remote in &rule.remotes {
                check_host_port(remote).map_err(|e| format!("replication.rules[{i}]: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Tags whose `repo:tag` matches `pattern` are replicated to `remotes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationRule {
    /// A regex over `repo:tag`, such as `^library/.*:.*$`. It is anchored
    /// at both ends whether or not it says so, so `library/.*` does not
    /// match `mylibrary/x:1`.
    pub pattern: String,
    /// Build-index addresses (`host:port`) of the remote clusters.
    pub remotes: Vec<String>,
}

impl ReplicationRule {
    /// Compiles the pattern, anchored.
    ///
    /// # Errors
    ///
    /// The regex crate's message for a pattern that does not compile.
    pub fn compile(&self) -> std::result::Result<Regex, String> {
        Regex::new(&format!("^(?:{})$", self.pattern))
            .map_err(|e| format!("pattern {:?}: {e}", self.pattern))
    }
}

/// Timeouts of a [`BuildIndexClient`](super::BuildIndexClient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BuildIndexClientConfig {
    /// Longest wait for a TCP connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for a lookup, list or delete.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for a manifest put, which walks the image's tree at
    /// the origins and may wait for them to read blobs from the backend.
    #[serde(with = "humantime_serde")]
    pub put_timeout: Duration,
    /// Sent as `Authorization: Bearer` to build-indexes that require a
    /// token for writes.
    pub token: Option<Token>,
    /// When set, build-index is reached over `https://` with this TLS (the
    /// CA it is verified against, and the certificate presented when it
    /// requires one).
    pub tls: Option<ClientTlsOptions>,
}

impl Default for BuildIndexClientConfig {
    fn default() -> Self {
        BuildIndexClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            put_timeout: Duration::from_secs(10 * 60),
            token: None,
            tls: None,
        }
    }
}

impl BuildIndexClientConfig {
    /// Checks that no timeout is zero.
    ///
    /// # Errors
    ///
    /// A message naming the first zero timeout.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let timeouts = [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("put_timeout", self.put_timeout),
        ];
        match timeouts.iter().find(|(_, t)| t.is_zero()) {
            Some((name, _)) => Err(format!("client.{name} must be above zero")),
            None => Ok(()),
        }
    }
}

fn check_host_port(addr: &str) -> std::result::Result<(), String> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains(['/', ' ']) && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if ok {
        Ok(())
    } else {
        Err(format!("{addr:?} is not host:port"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        database_path = "/var/lib/kraken/build-index.redb"
        origins = ["origin1:15002", "origin2:15002"]
        catalog_namespace = "ops/catalog"
        max_manifest_size = "8MiB"

        [origin_client]
        request_timeout = "10s"

        [writeback]
        workers = 2
        max_backoff = "2m"

        [replication.queue]
        initial_backoff = "5s"

        [[replication.rules]]
        pattern = "^library/.*:.*$"
        remotes = ["build-index.dc2:15004", "build-index.dc3:15004"]

        [[replication.rules]]
        pattern = "team/app:release-.*"
        remotes = ["build-index.dc2:15004"]

        [client]
        put_timeout = "5m"
    "#;

    #[test]
    fn the_binary_toml_deserializes_straight_into_the_config() {
        let config: BuildIndexConfig = toml::from_str(EXAMPLE).unwrap();
        config.validate().unwrap();
        assert_eq!(config.origins.len(), 2);
        assert_eq!(config.catalog_namespace.as_str(), "ops/catalog");
        assert_eq!(config.max_manifest_size, ByteSize::mib(8));
        assert_eq!(
            config.origin_client.request_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(config.writeback.max_backoff, Duration::from_secs(120));
        assert_eq!(config.writeback.poll_interval, Duration::from_secs(1));
        assert_eq!(
            config.replication.queue.initial_backoff,
            Duration::from_secs(5)
        );
        assert_eq!(config.replication.rules[0].remotes.len(), 2);
        assert_eq!(config.client.put_timeout, Duration::from_secs(300));
        assert_eq!(config.client.connect_timeout, Duration::from_secs(5));
        config.origin_client().unwrap();
    }

    #[test]
    fn only_the_database_path_is_required() {
        let config: BuildIndexConfig = toml::from_str("database_path = \"x.redb\"").unwrap();
        assert_eq!(config, BuildIndexConfig::new("x.redb"));
        config.validate().unwrap();
        assert!(config.origin_client().is_err(), "no origins to talk to");
        assert!(toml::from_str::<BuildIndexConfig>("origins = []").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_settings_are_refused() {
        let typo = "database_path = \"x\"\n[writeback]\nworker = 3";
        assert!(toml::from_str::<BuildIndexConfig>(typo).is_err());
        let mut config = BuildIndexConfig::new("x.redb");
        config.replication.rules.push(ReplicationRule {
            pattern: "library/(".into(),
            remotes: vec!["dc2:15004".into()],
        });
        assert!(config.validate().unwrap_err().contains("rules[0]"));
        config.replication.rules[0].pattern = "library/.*".into();
        config.replication.rules[0].remotes = vec!["http://dc2".into()];
        assert!(config.validate().unwrap_err().contains("host:port"));
        config.replication.rules[0].remotes.clear();
        assert!(config.validate().unwrap_err().contains("remotes"));
        let mut config = BuildIndexConfig::new("x.redb");
        config.client.put_timeout = Duration::ZERO;
        assert!(config.validate().unwrap_err().contains("put_timeout"));
    }

    #[test]
    fn patterns_are_anchored() {
        let rule = ReplicationRule {
            pattern: "library/.*".into(),
            remotes: vec![],
        };
        let regex = rule.compile().unwrap();
        assert!(regex.is_match("library/ubuntu:22.04"));
        assert!(!regex.is_match("mylibrary/ubuntu:22.04"));
        let rule = ReplicationRule {
            pattern: "^app:v1$".into(),
            remotes: vec![],
        };
        assert!(!rule.compile().unwrap().is_match("app:v10"));
    }
}
