//! A [`PeerStore`] in Redis, so that several trackers see the same peers
//! and an agent may announce to any of them.
//!
//! # Key scheme
//!
//! Redis cannot expire the members of a set one by one, so each torrent
//! keeps two keys that hold the same peer ids:
//!
//! - `{prefix}{<info hash hex>}:expiry`, a sorted set of peer ids (40 hex
//!   characters) scored by the millisecond at which the entry expires;
//! - `{prefix}{<info hash hex>}:peers`, a hash from peer id to the
//!   [`PeerInfo`] as JSON (its serde form, so IPv6 addresses and flags
//!   round-trip).
//!
//! An announce sets both under the peer id, so a re-announce replaces the
//! old address and flags and restarts the time to live instead of adding a
//! second entry; it then pushes both keys' own expiry out to a full time to
//! live, so a torrent nobody announces any more vanishes as a whole. A
//! sample first drops every id whose score has passed (from both keys),
//! then draws distinct ids with `ZRANDMEMBER` and reads their entries.
//!
//! Both steps run as Lua scripts, atomically, and take the time from the
//! Redis server, so trackers whose clocks disagree still agree on what has
//! expired. The braces make both keys of a torrent hash to the same slot,
//! which a clustered Redis requires of a script's keys. `ZRANDMEMBER` needs
//! Redis 6.2 or later.

use std::fmt;
use std::io;
use std::time::Duration;

use async_trait::async_trait;
use kraken_core::{Error, InfoHash, PeerInfo, PeerStore, Result};
use rand::seq::SliceRandom;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script};
use serde::{Deserialize, Serialize};

/// Expired ids removed per `ZRANGEBYSCORE` batch inside the sample script;
/// bounded because Lua's `unpack` has a stack limit of a few thousand.
const PRUNE_BATCH: usize = 1000;

/// Records one announce: refreshes the peer's expiry and entry, then the
/// keys' own lifetime.
const ANNOUNCE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
";

/// Drops expired ids in batches, then returns the entries of up to
/// `ARGV[1]` distinct random live ids.
const SAMPLE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local batch = tonumber(ARGV[2])
while true do
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, batch)
  if #expired == 0 then break end
  redis.call('ZREM', KEYS[1], unpack(expired))
  redis.call('HDEL', KEYS[2], unpack(expired))
  if #expired < batch then break end
end
local ids = redis.call('ZRANDMEMBER', KEYS[1], tonumber(ARGV[1]))
if #ids == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(ids))
";

/// How to reach Redis and how long to wait for it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisPeerStoreConfig {
    /// The server, as `redis://[user:password@]host:port[/db]`. Only
    /// plain TCP is supported for now.
    pub url: String,
    /// Prepended to every key, so that several clusters can share one
    /// Redis; clusters must not share a prefix.
    pub key_prefix: String,
    /// Longest wait for a TCP connection to Redis.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for one announce or sample, reconnecting included;
    /// past it the call fails rather than hangs.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
}

impl Default for RedisPeerStoreConfig {
    fn default() -> Self {
        RedisPeerStoreConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "kraken:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(3),
        }
    }
}

impl fmt::Debug for RedisPeerStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPeerStoreConfig")
            .field("url", &redact_url(&self.url))
            .field("key_prefix", &self.key_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// Hides the credentials of a `scheme://user:password@host` URL.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<redacted>{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Keeps announces in Redis, each until its time to live runs out.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisPeerStore {
    connection: ConnectionManager,
    prefix: String,
    ttl: Duration,
    operation_timeout: Duration,
    announce_script: Script,
    sample_script: Script,
    /// For `Debug`, without credentials.
    redacted_url: String,
}

impl fmt::Debug for RedisPeerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPeerStore")
            .field("url", &self.redacted_url)
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RedisPeerStore {
    /// Connects to Redis; entries live for `ttl` after each announce.
    ///
    /// # Errors
    ///
    /// `Io` when the URL is malformed or Redis cannot be reached within
    /// the connect timeout; `Timeout` when the whole attempt, retries
    /// included, outlasts the operation timeout.
    pub async fn connect(config: &RedisPeerStoreConfig, ttl: Duration) -> Result<Self> {
        let redacted_url = redact_url(&config.url);
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| map_redis(&format!("invalid redis url {redacted_url}"), &e))?;
        // One reconnect attempt per operation: the operation timeout, not
        // the manager's backoff, bounds how long a caller waits.
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.operation_timeout))
            .set_number_of_retries(1);
        let connect = ConnectionManager::new_with_config(client, manager_config);
        let connection = tokio::time::timeout(config.operation_timeout, connect)
            .await
            .map_err(|_| {
                Error::Timeout(format!(
                    "redis peer store: connecting to {redacted_url} took over {:?}",
                    config.operation_timeout
                ))
            })?
            .map_err(|e| map_redis(&format!("connecting to redis at {redacted_url}"), &e))?;
        tracing::info!(
            url = %redacted_url,
            prefix = %config.key_prefix,
            "redis peer store connected"
        );
        Ok(RedisPeerStore {
            connection,
            prefix: config.key_prefix.clone(),
            ttl,
            operation_timeout: config.operation_timeout,
            announce_script: Script::new(ANNOUNCE_SCRIPT),
            sample_script: Script::new(SAMPLE_SCRIPT),
            redacted_url,
        })
    }

    /// Returns the torrent's sorted set of expiries and hash of entries.
    fn keys(&self, info_hash: &InfoHash) -> (String, String) {
        let base = format!("{}{{{info_hash}}}", self.prefix);
        (format!("{base}:expiry"), format!("{base}:peers"))
    }

    /// Runs one Redis call under the operation timeout.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.operation_timeout, call).await {
            Ok(result) => {
                result.map_err(|e| map_redis(&format!("{what} on {}", self.redacted_url), &e))
            }
            Err(_) => Err(Error::Timeout(format!(
                "redis peer store: {what} on {} took over {:?}",
                self.redacted_url, self.operation_timeout
            ))),
        }
    }
}

#[async_trait]
impl PeerStore for RedisPeerStore {
    async fn announce(&self, info_hash: &InfoHash, peer: &PeerInfo) -> Result<()> {
        let (expiry, peers) = self.keys(info_hash);
        let entry = serde_json::to_string(peer).map_err(io::Error::other)?;
        let ttl_ms = u64::try_from(self.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut connection = self.connection.clone();
        let mut invocation = self.announce_script.prepare_invoke();
        invocation
            .key(expiry)
            .key(peers)
            .arg(peer.peer_id.to_string())
            .arg(entry)
            .arg(ttl_ms);
        let call = invocation.invoke_async::<i64>(&mut connection);
        self.bounded("announce", call).await?;
        Ok(())
    }

    async fn sample(&self, info_hash: &InfoHash, n: usize) -> Result<Vec<PeerInfo>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let (expiry, peers) = self.keys(info_hash);
        // ZRANDMEMBER takes a signed count; a negative one would allow
        // repeats, so clamp rather than wrap.
        let count = i64::try_from(n).unwrap_or(i64::MAX);
        let mut connection = self.connection.clone();
        let mut invocation = self.sample_script.prepare_invoke();
        invocation
            .key(expiry)
            .key(peers)
            .arg(count)
            .arg(PRUNE_BATCH);
        let call = invocation.invoke_async::<Vec<Option<String>>>(&mut connection);
        let entries = self.bounded("sample", call).await?;
        let mut peers: Vec<PeerInfo> = entries.iter().flatten().filter_map(|e| decode(e)).collect();
        // ZRANDMEMBER answers a count above the set's size with the whole
        // set in its own order.
        peers.shuffle(&mut rand::rng());
        Ok(peers)
    }
}

/// Parses a stored entry; one written by an incompatible version is
/// skipped rather than failing the whole sample.
fn decode(entry: &str) -> Option<PeerInfo> {
    match serde_json::from_str(entry) {
        Ok(peer) => Some(peer),
        Err(e) => {
            tracing::warn!(error = %e, "skipping unreadable peer entry in redis");
            None
        }
    }
}

/// Wraps a Redis failure as an I/O error of the closest kind, keeping
/// timeouts recognisable.
fn map_redis(what: &str, e: &RedisError) -> Error {
    if e.is_timeout() {
        return Error::Timeout(format!("redis peer store: {what}: {e}"));
    }
    let kind = if e.is_connection_refusal() {
        io::ErrorKind::ConnectionRefused
    } else if e.is_connection_dropped() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    Error::Io(io::Error::new(
        kind,
        format!("redis peer store: {what}: {e}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials_in_debug() {
        let config = RedisPeerStoreConfig {
            url: "redis://user:s3cret@redis.internal:6379/2".to_owned(),
            ..RedisPeerStoreConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("redis.internal:6379/2"), "{shown}");
        assert_eq!(redact_url("redis://host:1"), "redis://host:1");
    }

    #[test]
    fn config_reads_human_durations_and_rejects_unknown_fields() {
        let config: RedisPeerStoreConfig = serde_json::from_str(
            r#"{"url": "redis://10.0.0.1:6379", "operation_timeout": "500ms"}"#,
        )
        .unwrap();
        assert_eq!(config.operation_timeout, Duration::from_millis(500));
        assert_eq!(config.key_prefix, "kraken:");
        assert!(serde_json::from_str::<RedisPeerStoreConfig>(r#"{"ttl": "1h"}"#).is_err());
    }
}
