//! The agents' side of the tracker API: a [`Tracker`] that talks HTTP to a
//! list of trackers.
//!
//! Each blob goes to the tracker that rendezvous hashing over the list
//! ranks first for its digest, so the announces of one swarm meet in one
//! place even when the trackers keep peers in memory; with Redis as the
//! peer store any tracker would do, and the ranking only spreads load. When
//! a tracker cannot be reached or answers 5xx, the next in rank is tried.
//!
//! Health is passive: a tracker that fails at the network level
//! [`HttpTrackerConfig::failure_threshold`] times within
//! [`HttpTrackerConfig::failure_window`] is skipped for
//! [`HttpTrackerConfig::cooldown`], unless every tracker is being skipped,
//! in which case all are tried in rank order. A success clears a tracker's
//! record.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use kraken_core::{Digest, Error, MetaInfo, Namespace, Node, Rendezvous, Result};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{RequestBuilder, StatusCode, Url};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::{AnnounceRequest, AnnounceResponse, Tracker};
use crate::http_error::ErrorBody;
use crate::http_tls::{self, ClientTlsOptions};
use crate::tls::TlsError;

/// Characters escaped in a namespace path segment: all but RFC 3986's
/// unreserved ones, so `/` travels as `%2F`.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest error message kept from a tracker's answer.
const MAX_MESSAGE: usize = 512;

/// Timeouts and health thresholds of an [`HttpTracker`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTrackerConfig {
    /// Longest wait for a TCP connection to one tracker.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for one request to one tracker, from sending it to the
    /// last byte of the answer.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Network failures within `failure_window` after which a tracker is
    /// skipped.
    pub failure_threshold: u32,
    /// How far back failures count towards `failure_threshold`.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long an unhealthy tracker is skipped.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// TLS towards trackers, whose URLs must then be `https://`: the CA
    /// they are verified against and the certificate presented to those
    /// that require one.
    pub tls: Option<ClientTlsOptions>,
}

impl Default for HttpTrackerConfig {
    fn default() -> Self {
        HttpTrackerConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            failure_threshold: 3,
            failure_window: Duration::from_secs(5 * 60),
            cooldown: Duration::from_secs(5 * 60),
            tls: None,
        }
    }
}

impl HttpTrackerConfig {
    /// Checks that the settings make sense together.
    ///
    /// # Errors
    ///
    /// [`TrackerClientError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> std::result::Result<(), TrackerClientError> {
        let invalid = |reason| Err(TrackerClientError::InvalidConfig(reason));
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return invalid("timeouts must be above zero");
        }
        if self.failure_threshold == 0 {
            return invalid("failure_threshold must be at least 1");
        }
        Ok(())
    }
}

/// Why an [`HttpTracker`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerClientError {
    /// No tracker address was given.
    #[error("no tracker addresses configured")]
    NoTrackers,
    /// A tracker address is not an `http://host:port` base URL.
    #[error("invalid tracker url {url:?}: {reason}")]
    InvalidUrl {
        /// The address as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid tracker client config: {0}")]
    InvalidConfig(&'static str),
    /// The HTTP client could not be built.
    #[error("building the http client: {0}")]
    Client(#[source] reqwest::Error),
    /// The TLS files of the config could not be loaded.
    #[error("tracker client tls: {0}")]
    Tls(#[from] TlsError),
}

/// A [`Tracker`] reached over HTTP, with failover across several trackers.
///
/// Environment proxy settings are ignored: trackers are reached directly
/// inside the cluster, over `https://` when the config has TLS options.
pub struct HttpTracker {
    client: reqwest::Client,
    /// Base URLs without a trailing slash; `health` is indexed alike.
    bases: Vec<String>,
    ring: Rendezvous,
    health: Mutex<Vec<Health>>,
    config: HttpTrackerConfig,
}

impl fmt::Debug for HttpTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTracker")
            .field("trackers", &self.bases)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl HttpTracker {
    /// Creates a client for the trackers at `urls`, each a base URL such as
    /// `http://10.0.0.5:15003`; duplicates are dropped.
    ///
    /// # Errors
    ///
    /// When the list is empty, a URL is not an http(s) base URL, or the
    /// config does not [validate](HttpTrackerConfig::validate).
    pub fn new<I, S>(
        urls: I,
        config: HttpTrackerConfig,
    ) -> std::result::Result<Self, TrackerClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        config.validate()?;
        let mut bases = Vec::new();
        for url in urls {
            let base = base_url(url.as_ref())?;
            check_scheme(&base, config.tls.is_some())?;
            if !bases.contains(&base) {
                bases.push(base);
            }
        }
        if bases.is_empty() {
            return Err(TrackerClientError::NoTrackers);
        }
        let client = http_tls::client_builder(config.tls.as_ref())?
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .build()
            .map_err(TrackerClientError::Client)?;
        Ok(HttpTracker {
            client,
            ring: Rendezvous::new(bases.iter().map(Node::new)),
            health: Mutex::new(bases.iter().map(|_| Health::default()).collect()),
            bases,
            config,
        })
    }

    /// Returns the trackers to try for `digest`, best first: the healthy
    /// ones in rendezvous order, or all of them when none is healthy.
    fn order(&self, digest: &Digest) -> Vec<usize> {
        let ranked: Vec<usize> = self
            .ring
            .ranked(digest)
            .into_iter()
            .filter_map(|node| self.bases.iter().position(|b| *b == node.label))
            .collect();
        let now = Instant::now();
        let health = self.lock_health();
        let healthy: Vec<usize> = ranked
            .iter()
            .copied()
            .filter(|&i| health[i].available(now))
            .collect();
        if healthy.is_empty() { ranked } else { healthy }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, Vec<Health>> {
        // Health records are advisory; one left half-updated by a panic
        // only skews the next choice of tracker.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one request to tracker `index` and reads the whole answer,
    /// recording network failures and successes against its health.
    async fn exchange(
        &self,
        index: usize,
        request: RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let base = &self.bases[index];
        let sent = async {
            let response = request.send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.bytes().await?.to_vec()))
        };
        match sent.await {
            Ok(answer) => {
                self.lock_health()[index].succeeded();
                Ok(answer)
            }
            Err(e) => {
                self.network_failure(index);
                Err(network_error(base, &e))
            }
        }
    }

    fn network_failure(&self, index: usize) {
        let now = Instant::now();
        let tripped = self.lock_health()[index].failed(now, &self.config);
        if tripped {
            tracing::warn!(
                tracker = %self.bases[index],
                cooldown = ?self.config.cooldown,
                "tracker keeps failing; skipping it"
            );
        }
    }
}

#[async_trait]
impl Tracker for HttpTracker {
    async fn announce(&self, request: &AnnounceRequest) -> Result<AnnounceResponse> {
        let body = serde_json::to_vec(request).map_err(io::Error::other)?;
        let mut last = None;
        for index in self.order(&request.digest) {
            let base = &self.bases[index];
            let http = self
                .client
                .post(format!("{base}/announce"))
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
            let e = match self.exchange(index, http).await {
                Ok((status, bytes)) if status.is_success() => {
                    return serde_json::from_slice(&bytes).map_err(|e| {
                        let message = format!("tracker {base} sent an unreadable announce: {e}");
                        Error::Io(io::Error::new(io::ErrorKind::InvalidData, message))
                    });
                }
                Ok((status, bytes)) => {
                    let e = status_error(base, &request.digest, status, &bytes);
                    if !status.is_server_error() {
                        return Err(e);
                    }
                    e
                }
                Err(e) => e,
            };
            tracing::debug!(
                digest = %request.digest,
                tracker = %base,
                error = %e,
                "announce failed; trying the next tracker"
            );
            last = Some(e);
        }
        Err(last.expect("the tracker list is never empty"))
    }

    async fn metainfo(&self, namespace: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        let ns = utf8_percent_encode(namespace.as_str(), SEGMENT);
        let mut last = None;
        for index in self.order(digest) {
            let base = &self.bases[index];
            let url = format!("{base}/namespace/{ns}/blobs/{digest}/metainfo");
            let e = match self.exchange(index, self.client.get(url)).await {
                Ok((StatusCode::OK, bytes)) => return decode_metainfo(digest, &bytes),
                // The origin is still reading the blob from its backend:
                // another tracker would only ask the same origin.
                Ok((StatusCode::ACCEPTED, _)) => return Err(Error::Unavailable(*digest)),
                Ok((status, bytes)) => {
                    let e = status_error(base, digest, status, &bytes);
                    if !status.is_server_error() {
                        return Err(e);
                    }
                    e
                }
                Err(e) => e,
            };
            tracing::debug!(
                %digest,
                tracker = %base,
                error = %e,
                "metainfo failed; trying the next tracker"
            );
            last = Some(e);
        }
        Err(last.expect("the tracker list is never empty"))
    }
}

/// Checks and normalises one tracker base URL.
fn base_url(url: &str) -> std::result::Result<String, TrackerClientError> {
    let invalid = |reason: &str| TrackerClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host().is_none() {
        return Err(invalid("a host is required"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("a base url takes no query or fragment"));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// Refuses a URL whose scheme disagrees with the TLS settings, so that
/// neither a forgotten `https://` silently drops TLS nor an `https://` URL
/// meets a client that trusts no CA.
fn check_scheme(base: &str, tls: bool) -> std::result::Result<(), TrackerClientError> {
    let https = base.starts_with("https://");
    if https == tls {
        return Ok(());
    }
    let reason = if tls {
        "tls is configured, so the url must be https://"
    } else {
        "an https:// url needs [tls] options (the ca to trust)"
    };
    Err(TrackerClientError::InvalidUrl {
        url: base.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Parses a metainfo answer and checks it describes the blob asked for.
fn decode_metainfo(digest: &Digest, bytes: &[u8]) -> Result<MetaInfo> {
    let meta = MetaInfo::from_bytes(bytes)?;
    if meta.digest() != digest {
        return Err(Error::DigestMismatch {
            expected: *digest,
            actual: *meta.digest(),
        });
    }
    Ok(meta)
}

/// Turns a tracker's non-success answer into an error: 404 is a blob
/// nobody has, 503 one nobody can provide now, 504 a timeout upstream;
/// anything else is reported with the tracker's own message.
fn status_error(base: &str, digest: &Digest, status: StatusCode, body: &[u8]) -> Error {
    match status {
        StatusCode::NOT_FOUND => return Error::NotFound(*digest),
        StatusCode::SERVICE_UNAVAILABLE => return Error::Unavailable(*digest),
        _ => {}
    }
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => body.error,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let message: String = message.chars().take(MAX_MESSAGE).collect();
    let text = format!("tracker {base} answered {status}: {message}");
    match status {
        StatusCode::GATEWAY_TIMEOUT => Error::Timeout(text),
        s if s.is_client_error() => Error::Io(io::Error::new(io::ErrorKind::InvalidInput, text)),
        _ => Error::Io(io::Error::other(text)),
    }
}

/// Classifies a failure to reach a tracker.
fn network_error(base: &str, e: &reqwest::Error) -> Error {
    // reqwest's own message is terse ("error sending request"); its
    // source says why.
    let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
    let text = format!("tracker {base}: {cause}");
    if e.is_timeout() {
        Error::Timeout(text)
    } else if e.is_connect() {
        Error::Io(io::Error::new(io::ErrorKind::ConnectionRefused, text))
    } else {
        Error::Io(io::Error::new(io::ErrorKind::ConnectionAborted, text))
    }
}

/// What the client remembers of one tracker's recent failures.
#[derive(Debug, Default)]
struct Health {
    failures: VecDeque<Instant>,
    skip_until: Option<Instant>,
}

impl Health {
    fn available(&self, now: Instant) -> bool {
        self.skip_until.is_none_or(|until| now >= until)
    }

    fn succeeded(&mut self) {
        self.failures.clear();
        self.skip_until = None;
    }

    /// Records a network failure; returns true when it makes the tracker
    /// unhealthy.
    fn failed(&mut self, now: Instant, config: &HttpTrackerConfig) -> bool {
        while let Some(&oldest) = self.failures.front() {
            if now.duration_since(oldest) <= config.failure_window {
                break;
            }
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.failures.len() < config.failure_threshold as usize {
            return false;
        }
        self.failures.clear();
        self.skip_until = Some(now + config.cooldown);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> HttpTrackerConfig {
        HttpTrackerConfig::default()
    }

    #[test]
    fn three_failures_in_the_window_trip_a_cooldown() {
        let config = config();
        let start = Instant::now();
        let mut health = Health::default();
        assert!(!health.failed(start, &config));
        assert!(!health.failed(start + Duration::from_secs(60), &config));
        assert!(health.failed(start + Duration::from_secs(120), &config));
        let tripped = start + Duration::from_secs(120);
        assert!(!health.available(tripped + Duration::from_secs(299)));
        assert!(health.available(tripped + config.cooldown));
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let config = config();
        let start = Instant::now();
        let mut health = Health::default();
        assert!(!health.failed(start, &config));
        assert!(!health.failed(start + Duration::from_secs(200), &config));
        // The first failure is more than five minutes old by now.
        assert!(!health.failed(start + Duration::from_secs(400), &config));
        assert!(health.available(start + Duration::from_secs(400)));
    }

    #[test]
    fn success_clears_the_record() {
        let config = config();
        let start = Instant::now();
        let mut health = Health::default();
        health.failed(start, &config);
        health.failed(start, &config);
        health.succeeded();
        assert!(!health.failed(start, &config));
    }

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert_eq!(
            base_url("http://127.0.0.1:15003/").unwrap(),
            "http://127.0.0.1:15003"
        );
        assert_eq!(
            base_url("http://[::1]:15003").unwrap(),
            "http://[::1]:15003"
        );
        for bad in [
            "127.0.0.1:15003",
            "ftp://host",
            "http://host/?q=1",
            "not a url",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn construction_rejects_empty_lists_and_bad_config() {
        let none: [&str; 0] = [];
        assert!(matches!(
            HttpTracker::new(none, config()),
            Err(TrackerClientError::NoTrackers)
        ));
        let zero = HttpTrackerConfig {
            failure_threshold: 0,
            ..config()
        };
        assert!(HttpTracker::new(["http://127.0.0.1:1"], zero).is_err());
    }

    #[test]
    fn every_digest_ranks_every_healthy_tracker_once() {
        let urls = ["http://a:1", "http://b:1", "http://c:1", "http://a:1/"];
        let tracker = HttpTracker::new(urls, config()).unwrap();
        let digest = Digest::sha256_of(b"blob");
        let mut order = tracker.order(&digest);
        assert_eq!(order.len(), 3);
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2]);
    }

    #[test]
    fn unhealthy_trackers_are_skipped_until_all_are() {
        let tracker = HttpTracker::new(["http://a:1", "http://b:1"], config()).unwrap();
        let digest = Digest::sha256_of(b"blob");
        let first = tracker.order(&digest)[0];
        for _ in 0..3 {
            tracker.network_failure(first);
        }
        assert_eq!(tracker.order(&digest), [1 - first]);
        for _ in 0..3 {
            tracker.network_failure(1 - first);
        }
        assert_eq!(tracker.order(&digest).len(), 2, "all unhealthy: try all");
    }

    #[test]
    fn config_reads_human_durations_and_rejects_unknown_fields() {
        let parsed: HttpTrackerConfig =
            serde_json::from_str(r#"{"cooldown": "30s", "failure_threshold": 5}"#).unwrap();
        assert_eq!(parsed.cooldown, Duration::from_secs(30));
        assert_eq!(parsed.failure_threshold, 5);
        assert_eq!(parsed.request_timeout, config().request_timeout);
        assert!(serde_json::from_str::<HttpTrackerConfig>(r#"{"retries": 2}"#).is_err());
    }

    #[test]
    fn status_errors_keep_their_meaning() {
        let d = Digest::sha256_of(b"x");
        let b = "http://t:1";
        assert!(matches!(
            status_error(b, &d, StatusCode::NOT_FOUND, b""),
            Error::NotFound(_)
        ));
        assert!(matches!(
            status_error(b, &d, StatusCode::SERVICE_UNAVAILABLE, b""),
            Error::Unavailable(_)
        ));
        let e = status_error(b, &d, StatusCode::BAD_REQUEST, br#"{"error":"bad digest"}"#);
        assert!(e.to_string().contains("bad digest"), "{e}");
    }
}
