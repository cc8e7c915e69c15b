//! Every tunable of the scheduler, with its default and why.

use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// Scheduler settings. Deserializes from the `[scheduler]` table of a
/// component's TOML with human units (`"30s"`, `"50MiB"`); every field has a
/// default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Open connections per blob, inbound and outbound together. About ten
    /// keeps the swarm a well-connected random graph without splitting a
    /// host's bandwidth into slivers. A host dials only into the first
    /// half; the other half waits for peers that dial it, so the hosts of
    /// a swarm that start first cannot fill each other's slots and leave
    /// the later ones a swarm of their own, cut off from every source.
    pub max_connections: usize,
    /// Requests in flight per agent peer: enough to keep a link busy while
    /// the next request crosses the network.
    pub pipeline_limit: usize,
    /// Requests in flight per origin peer; origins have more bandwidth.
    pub origin_pipeline_limit: usize,
    /// When this many pieces or fewer are missing, the same piece may be
    /// requested from several peers so one slow peer cannot hold up the end.
    pub endgame_threshold: usize,
    /// The shortest time a piece request may take before it is given up
    /// and sent to another peer.
    #[serde(with = "humantime_serde")]
    pub request_timeout_min: Duration,
    /// Added to the request timeout per MiB of piece length.
    #[serde(with = "humantime_serde")]
    pub request_timeout_per_mib: Duration,
    /// How long a peer that failed or misbehaved is not connected to again
    /// for the same blob.
    #[serde(with = "humantime_serde")]
    pub blacklist_duration: Duration,
    /// A connection that moved no piece either way for this long is closed,
    /// freeing its slot for a peer that may help more.
    #[serde(with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
    /// Time allowed to dial a peer and exchange handshakes.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// How often a downloading blob announces when the tracker does not say.
    #[serde(with = "humantime_serde")]
    pub announce_interval: Duration,
    /// A download that receives no piece for this long fails; its partial
    /// file stays resumable.
    #[serde(with = "humantime_serde")]
    pub download_idle_timeout: Duration,
    /// A download with no peer connected for this long fails as
    /// unavailable: every peer the tracker handed out refused or was
    /// unreachable, so waiting for the idle timeout would only make the
    /// caller wait.
    #[serde(with = "humantime_serde")]
    pub no_peer_timeout: Duration,
    /// How long a completed blob keeps being announced for seeding after
    /// its last use.
    #[serde(with = "humantime_serde")]
    pub seed_idle_timeout: Duration,
    /// Pieces ahead of a streaming reader that are fetched first, in order,
    /// from agents; an origin is asked out of turn only for the next one.
    pub stream_window: u32,
    /// Pieces ahead of a streaming reader among which the rarest is fetched
    /// before any piece further on; 0 turns it off (rarest of the whole
    /// blob). Streaming agents then receive a blob in broad waves rather
    /// than in random order, so their readers are fed while the swarm
    /// downloads instead of all at once at the end. The default is half
    /// the blob or more with the default piece table (1,024 to 2,048
    /// pieces); in the 20-host lab it brought the last host from 0.73 to
    /// 0.80 of line rate. Narrower horizons cost origin copies: every agent
    /// asks the origin for the same few pieces.
    pub stream_horizon: u32,
    /// Bytes one connection may have sent and not yet acknowledged (the
    /// receiver acknowledges a piece by announcing it), at least two
    /// pieces. Pieces beyond it would wait in socket buffers behind a busy
    /// receiver while other peers could take them now, and a seed that
    /// hands every request to its sockets at once can no longer choose to
    /// send the least-sent piece first: in the 20-host lab, 512 KiB (four
    /// default pieces) had the origin send 1.24 copies of the blob and two
    /// pieces 1.09.
    pub upload_window: ByteSize,
    /// A sent piece not acknowledged within this time stops counting
    /// against the window.
    #[serde(with = "humantime_serde")]
    pub upload_ack_timeout: Duration,
    /// Cap on piece bytes received per second by this host; none when unset.
    pub ingress_limit: Option<ByteSize>,
    /// Cap on piece bytes sent per second by this host; none when unset.
    pub egress_limit: Option<ByteSize>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_connections: 10,
            pipeline_limit: 3,
            origin_pipeline_limit: 5,
            endgame_threshold: 3,
            request_timeout_min: Duration::from_secs(4),
            request_timeout_per_mib: Duration::from_secs(4),
            blacklist_duration: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            announce_interval: Duration::from_secs(3),
            download_idle_timeout: Duration::from_secs(300),
            no_peer_timeout: Duration::from_secs(30),
            seed_idle_timeout: Duration::from_secs(300),
            stream_window: 4,
            stream_horizon: 1024,
            upload_window: ByteSize::kib(256),
            upload_ack_timeout: Duration::from_secs(10),
            ingress_limit: None,
            egress_limit: None,
        }
    }
}

/// Why a scheduler configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scheduler config: {0}")]
pub struct ConfigError(pub(crate) &'static str);

impl SchedulerConfig {
    /// Checks that the settings can work together.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks = [
            (
                self.max_connections == 0,
                "max_connections must be at least 1",
            ),
            (
                self.pipeline_limit == 0,
                "pipeline_limit must be at least 1",
            ),
            (
                self.origin_pipeline_limit == 0,
                "origin_pipeline_limit must be at least 1",
            ),
            (
                self.request_timeout_min.is_zero(),
                "request_timeout_min must be positive",
            ),
            (
                self.handshake_timeout.is_zero(),
                "handshake_timeout must be positive",
            ),
            (
                self.announce_interval.is_zero(),
                "announce_interval must be positive",
            ),
            (
                self.ingress_limit.is_some_and(|l| l.0 == 0),
                "ingress_limit must be positive",
            ),
            (
                self.egress_limit.is_some_and(|l| l.0 == 0),
                "egress_limit must be positive",
            ),
        ];
        match checks.into_iter().find(|(bad, _)| *bad) {
            Some((_, why)) => Err(ConfigError(why)),
            None => Ok(()),
        }
    }

    /// Returns how long a request for a piece of `piece_length` bytes may
    /// take.
    pub fn request_timeout(&self, piece_length: u64) -> Duration {
        let mib = piece_length as f64 / (1 << 20) as f64;
        self.request_timeout_min
            .max(self.request_timeout_per_mib.mul_f64(mib))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_human_units_and_rejects_unknown_keys() {
        let json =
            r#"{"request_timeout_min": "2s", "egress_limit": "50MiB", "max_connections": 5}"#;
        let config: SchedulerConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.request_timeout_min, Duration::from_secs(2));
        assert_eq!(config.egress_limit, Some(ByteSize::mib(50)));
        assert_eq!(
            config.pipeline_limit,
            SchedulerConfig::default().pipeline_limit
        );
        config.validate().unwrap();
        assert!(serde_json::from_str::<SchedulerConfig>(r#"{"max_conections": 5}"#).is_err());
        assert!(
            serde_json::from_str::<SchedulerConfig>(r#"{"announce_interval": "soon"}"#).is_err()
        );
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let config = SchedulerConfig {
            max_connections: 0,
            ..SchedulerConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        let config = SchedulerConfig {
            egress_limit: Some(ByteSize(0)),
            ..Default::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn request_timeout_scales_with_piece_length() {
        let config = SchedulerConfig::default();
        assert_eq!(
            config.request_timeout(128 << 10),
            config.request_timeout_min
        );
        assert_eq!(config.request_timeout(4 << 20), Duration::from_secs(16));
    }
}
