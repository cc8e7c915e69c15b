//! How the tracker, the proxy and build-index talk to a cluster of origins.
//!
//! An [`OriginClient`] knows the cluster's member addresses. For each blob
//! it asks any member which origins own the digest, then tries the owners
//! in that order: a network error or a 5xx moves on to the next owner, any
//! other 4xx ends the call, and a 202 (the origin is reading the blob from
//! its backend) is polled on the same origin with growing waits, since
//! another owner would only start a second fetch.
//!
//! Agents never use this client: they reach origins only as peers, through
//! the tracker's handout.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use bytesize::ByteSize;
use futures::StreamExt;
use kraken_core::{
    BlobReader, BlobStream, ByteRange, Digest, Error, MetaInfo, Namespace, PeerInfo, Result,
    read_range,
};
use percent_encoding::utf8_percent_encode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, LOCATION, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::server::Locations;
use crate::auth::Token;
use crate::http_error::ErrorBody;
use crate::http_tls::{self, ClientTlsOptions};
use crate::tracker::{OriginDirectory, SEGMENT};

/// Longest error message kept from an origin's answer.
const MAX_MESSAGE: usize = 512;

/// Bytes read from a local blob per chunk of a request body.
const BODY_CHUNK: usize = 256 * 1024;

/// Timeouts, chunking and polling of an [`OriginClient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginClientConfig {
    /// Longest wait for a TCP connection to one origin.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for a request without a blob body (locations, stat,
    /// metainfo), from sending it to the last byte of the answer.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Longest wait for a request that carries or returns a blob: one chunk
    /// of an upload, a commit (which copies the blob to the other owners),
    /// a download.
    #[serde(with = "humantime_serde")]
    pub transfer_timeout: Duration,
    /// Blobs up to this size are uploaded in one request; larger ones in
    /// chunks of this size, so a failure costs one chunk, not the blob.
    pub chunk_size: ByteSize,
    /// First wait before polling an origin that answered 202.
    #[serde(with = "humantime_serde")]
    pub poll_initial: Duration,
    /// Longest wait between two polls.
    #[serde(with = "humantime_serde")]
    pub poll_max: Duration,
    /// How long to keep polling before giving up with a timeout.
    #[serde(with = "humantime_serde")]
    pub poll_timeout: Duration,
    /// How long an origin's peer identity is remembered.
    #[serde(with = "humantime_serde")]
    pub peer_cache_ttl: Duration,
    /// Sent as `Authorization: Bearer` to origins that require a token
    /// for writes.
    pub token: Option<Token>,
    /// When set, origins are reached over `https://` with this TLS (the CA
    /// they are verified against, and the certificate presented to those
    /// that require one).
    pub tls: Option<ClientTlsOptions>,
}

impl Default for OriginClientConfig {
    fn default() -> Self {
        OriginClientConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(15 * 60),
            chunk_size: ByteSize::mib(32),
            poll_initial: Duration::from_secs(1),
            poll_max: Duration::from_secs(5),
            poll_timeout: Duration::from_secs(15 * 60),
            peer_cache_ttl: Duration::from_secs(60),
            token: None,
            tls: None,
        }
    }
}

impl OriginClientConfig {
    /// Checks that the settings make sense together.
    ///
    /// # Errors
    ///
    /// A message naming the first bad field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let timeouts = [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("transfer_timeout", self.transfer_timeout),
            ("poll_initial", self.poll_initial),
            ("poll_max", self.poll_max),
        ];
        if let Some((name, _)) = timeouts.iter().find(|(_, t)| t.is_zero()) {
            return Err(format!("origin client: {name} must be above zero"));
        }
        if self.poll_max < self.poll_initial {
            return Err("origin client: poll_max must be at least poll_initial".into());
        }
        if self.chunk_size.as_u64() == 0 {
            return Err("origin client: chunk_size must be above zero".into());
        }
        Ok(())
    }
}

/// A client of a cluster of origins, with failover across the owners of
/// each blob. Cheap to clone.
#[derive(Clone)]
pub struct OriginClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    http: reqwest::Client,
    members: Vec<String>,
    config: OriginClientConfig,
    peers: Mutex<HashMap<String, (Instant, PeerInfo)>>,
}

impl fmt::Debug for OriginClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginClient")
            .field("members", &self.inner.members)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What an origin said to a prefetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// The origin holds the blob.
    Present,
    /// The origin started reading it from its backend.
    Started,
}

impl OriginClient {
    /// Creates a client for the origins at `members`, each an HTTP address
    /// `host:port` as the origins list their cluster.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the list is empty, an address is not `host:port`,
    /// or the config does not validate.
    pub fn new<I, S>(members: I, config: OriginClientConfig) -> Result<OriginClient>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let invalid = |m: String| Error::Io(io::Error::new(io::ErrorKind::InvalidInput, m));
        config.validate().map_err(invalid)?;
        let mut list: Vec<String> = Vec::new();
        for member in members {
            let member = member.into();
            if !is_host_port(&member) {
                return Err(invalid(format!(
                    "origin address {member:?} is not host:port"
                )));
            }
            if !list.contains(&member) {
                list.push(member);
            }
        }
        if list.is_empty() {
            return Err(invalid("no origin addresses configured".into()));
        }
        let http = http_tls::client_builder(config.tls.as_ref())
            .map_err(|e| invalid(format!("origin client tls: {e}")))?
            .connect_timeout(config.connect_timeout)
            .build()
            .map_err(|e| Error::Io(io::Error::other(format!("building the http client: {e}"))))?;
        Ok(OriginClient {
            inner: Arc::new(ClientInner {
                http,
                members: list,
                config,
                peers: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Returns the member addresses this client was given.
    pub fn members(&self) -> &[String] {
        &self.inner.members
    }

    /// Returns the owners of `digest`, best first, as any reachable member
    /// computes them.
    ///
    /// # Errors
    ///
    /// `Unavailable` when no member answers.
    pub async fn locations(&self, digest: &Digest) -> Result<Vec<String>> {
        let mut last = None;
        for member in &self.inner.members {
            let url = format!("{}://{member}/blobs/{digest}/locations", self.scheme());
            let request = self.request(Method::GET, &url, false);
            match self.exchange(member, digest, request).await {
                Ok((StatusCode::OK, _, body)) => {
                    let parsed: Locations = serde_json::from_slice(&body).map_err(|e| {
                        invalid_data(format!("origin {member} sent unreadable locations: {e}"))
                    })?;
                    if parsed.locations.is_empty() {
                        return Err(invalid_data(format!(
                            "origin {member} lists no owners for {digest}"
                        )));
                    }
                    return Ok(parsed.locations);
                }
                Ok((status, _, body)) => last = Some(status_error(member, digest, status, &body)),
                Err(e) => last = Some(e),
            }
            tracing::debug!(%digest, origin = %member, error = ?last, "locations failed; trying the next origin");
        }
        Err(last.unwrap_or(Error::Unavailable(*digest)))
    }

    /// Returns the peer identity of the origin at `addr` (its P2P address
    /// and peer id), remembered for [`OriginClientConfig::peer_cache_ttl`].
    ///
    /// # Errors
    ///
    /// When the origin cannot be reached or answers with something else.
    pub async fn peer(&self, addr: &str) -> Result<PeerInfo> {
        let now = Instant::now();
        if let Some((at, peer)) = self.lock_peers().get(addr)
            && now.duration_since(*at) < self.inner.config.peer_cache_ttl
        {
            return Ok(peer.clone());
        }
        let url = format!("{}://{addr}/internal/peer", self.scheme());
        let request = self.request(Method::GET, &url, false);
        let probe = Digest::sha256_of(addr.as_bytes());
        let (status, _, body) = self.exchange(addr, &probe, request).await?;
        if status != StatusCode::OK {
            return Err(status_error(addr, &probe, status, &body));
        }
        let mut peer: PeerInfo = serde_json::from_slice(&body)
            .map_err(|e| invalid_data(format!("origin {addr} sent an unreadable peer: {e}")))?;
        peer.origin = true;
        peer.complete = true;
        self.lock_peers()
            .insert(addr.to_owned(), (now, peer.clone()));
        Ok(peer)
    }

    /// Returns the size of a blob at its first reachable owner, `None` when
    /// the cluster and its backend lack it. Asking may start a read-through
    /// at the origin, which is then polled.
    ///
    /// # Errors
    ///
    /// `Unavailable` when no owner answers; `Timeout` when polling runs out.
    pub async fn stat(&self, namespace: &Namespace, digest: &Digest) -> Result<Option<u64>> {
        let path = blob_path(namespace, digest);
        match self.poll_owners(digest, Method::HEAD, &path, false).await {
            Ok((headers, _)) => {
                let length = headers
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| invalid_data("origin sent no Content-Length".into()))?;
                Ok(Some(length))
            }
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Returns the metainfo of a blob, polling while its owner reads it
    /// from the backend.
    ///
    /// # Errors
    ///
    /// `NotFound` when neither the cluster nor its backend has the blob;
    /// `Unavailable` when no owner answers; `Timeout` when polling runs out;
    /// `DigestMismatch` when an origin describes another blob.
    pub async fn metainfo(&self, namespace: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        let path = format!("{}/metainfo", blob_path(namespace, digest));
        let (_, body) = self.poll_owners(digest, Method::GET, &path, false).await?;
        decode_metainfo(digest, &body)
    }

    /// Downloads a whole blob into memory, polling while its owner reads it
    /// from the backend; for blobs too large for memory use the P2P engine.
    ///
    /// # Errors
    ///
    /// As [`OriginClient::metainfo`], and `DigestMismatch` when the bytes do
    /// not hash to `digest`.
    pub async fn download(&self, namespace: &Namespace, digest: &Digest) -> Result<Bytes> {
        let path = blob_path(namespace, digest);
        let (_, body) = self.poll_owners(digest, Method::GET, &path, true).await?;
        let actual = Digest::of(digest.algorithm(), &body);
        if actual != *digest {
            return Err(Error::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        Ok(body)
    }

    /// Streams `range` of a blob from its first reachable owner, polling
    /// while the owner reads it from its backend. The bytes are not
    /// verified here: the caller hashes what it keeps.
    ///
    /// # Errors
    ///
    /// As [`OriginClient::metainfo`]; `RangeNotSatisfiable` when `range`
    /// starts past the end. A failure midway ends the stream with an error.
    pub async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> Result<BlobStream> {
        let path = blob_path(namespace, digest);
        let header = range_header(range);
        let (owner, response) = self
            .poll(digest, || async {
                let found = self.first_response(digest, |base| {
                    let request = self.request(Method::GET, &format!("{base}{path}"), true);
                    match &header {
                        Some(h) => request.header(RANGE, h.as_str()),
                        None => request,
                    }
                });
                let (owner, response) = found.await?;
                match response.status() {
                    StatusCode::ACCEPTED => Ok(None),
                    StatusCode::RANGE_NOT_SATISFIABLE => Err(unsatisfiable(range, &response)),
                    _ => Ok(Some((owner, response))),
                }
            })
            .await?;
        stream_of(&owner, digest, response)
    }

    /// Makes the owners keep a blob they hold under `namespace` too (its
    /// write-back goes to that namespace's backend), without a transfer.
    /// Returns false when no owner holds it, so it must be uploaded.
    ///
    /// # Errors
    ///
    /// `Unavailable` when no owner answers.
    pub async fn mount(&self, namespace: &Namespace, digest: &Digest) -> Result<bool> {
        let path = format!("{}/mount", blob_path(namespace, digest));
        let answer = self
            .first_owner(digest, |base| {
                self.request(Method::POST, &format!("{base}{path}"), false)
            })
            .await;
        match answer {
            Ok(_) => Ok(true),
            Err(Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Has an owner copy a blob to another cluster of origins, whose
    /// members are `remote`; polls while the owner first reads the blob
    /// from its backend. Returns once the remote cluster committed it.
    ///
    /// # Errors
    ///
    /// `NotFound` when neither this cluster nor its backend has the blob;
    /// the remote's failure, as the owner reports it, otherwise.
    pub async fn copy_to_cluster(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        remote: &[String],
    ) -> Result<()> {
        let path = format!("{}/remote", blob_path(namespace, digest));
        let body = serde_json::to_vec(&RemoteCluster {
            members: remote.to_vec(),
        })
        .map_err(|e| invalid_data(e.to_string()))?;
        self.poll(digest, || async {
            let (status, _, _) = self
                .first_owner(digest, |base| {
                    self.request(Method::POST, &format!("{base}{path}"), true)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone())
                })
                .await?;
            Ok((status != StatusCode::ACCEPTED).then_some(()))
        })
        .await
    }

    /// Asks the owners to have the blob ready: it reads it from the backend
    /// when it lacks it.
    ///
    /// # Errors
    ///
    /// `NotFound` when the backend lacks it; `Unavailable` when no owner
    /// answers.
    pub async fn prefetch(&self, namespace: &Namespace, digest: &Digest) -> Result<Prefetch> {
        let path = format!("{}/prefetch", blob_path(namespace, digest));
        let (status, _, _) = self
            .first_owner(digest, |base| {
                self.request(Method::POST, &format!("{base}{path}"), false)
            })
            .await?;
        Ok(if status == StatusCode::ACCEPTED {
            Prefetch::Started
        } else {
            Prefetch::Present
        })
    }

    /// Uploads a blob held in memory; see [`OriginClient::upload`].
    ///
    /// # Errors
    ///
    /// As [`OriginClient::upload`].
    pub async fn upload_bytes(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<()> {
        self.upload(namespace, digest, Arc::new(BytesReader(bytes)))
            .await
    }

    /// Uploads a blob to its first reachable owner, which verifies it,
    /// copies it to the other owners and queues the write-back; returns
    /// once it is committed. Blobs above the chunk size go in chunks.
    /// An owner that fails mid-upload is replaced by the next, from the
    /// start.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when an origin refuses the bytes (they do not hash to
    /// `digest`); `Unavailable` when no owner takes the upload.
    pub async fn upload(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        blob: Arc<dyn BlobReader>,
    ) -> Result<()> {
        let owners = self.locations(digest).await?;
        let mut last = None;
        for owner in &owners {
            let result = if blob.len() <= self.inner.config.chunk_size.as_u64() {
                self.upload_whole(owner, namespace, digest, &blob).await
            } else {
                self.upload_chunked(owner, namespace, digest, &blob).await
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if failover(&e) => {
                    tracing::warn!(%digest, origin = %owner, error = %e, "upload failed; trying the next owner");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(Error::Unavailable(*digest)))
    }

    /// Copies a blob to one origin with the internal route, which stores it
    /// as a replica (no further copies). Used by origins themselves.
    pub(crate) async fn replicate(
        &self,
        addr: &str,
        namespace: &Namespace,
        digest: &Digest,
        blob: Arc<dyn BlobReader>,
    ) -> Result<()> {
        let ns = utf8_percent_encode(namespace.as_str(), SEGMENT);
        let url = format!(
            "{}://{addr}/internal/namespace/{ns}/blobs/{digest}",
            self.scheme()
        );
        let request = self
            .request(Method::PUT, &url, true)
            .header(CONTENT_LENGTH, blob.len())
            .body(body_of(blob.clone(), 0..blob.len()));
        let (status, _, body) = self.exchange(addr, digest, request).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(addr, digest, status, &body))
        }
    }

    async fn upload_whole(
        &self,
        owner: &str,
        namespace: &Namespace,
        digest: &Digest,
        blob: &Arc<dyn BlobReader>,
    ) -> Result<()> {
        let url = format!(
            "{}://{owner}{}",
            self.scheme(),
            blob_path(namespace, digest)
        );
        let request = self
            .request(Method::PUT, &url, true)
            .header(CONTENT_LENGTH, blob.len())
            .body(body_of(blob.clone(), 0..blob.len()));
        let (status, _, body) = self.exchange(owner, digest, request).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(owner, digest, status, &body))
        }
    }

    async fn upload_chunked(
        &self,
        owner: &str,
        namespace: &Namespace,
        digest: &Digest,
        blob: &Arc<dyn BlobReader>,
    ) -> Result<()> {
        let base = format!("{}://{owner}", self.scheme());
        let start = format!("{base}{}/uploads", blob_path(namespace, digest));
        let request = self.request(Method::POST, &start, false);
        let (status, headers, body) = self.exchange(owner, digest, request).await?;
        match status {
            // The origin holds the blob already.
            StatusCode::CREATED => return Ok(()),
            StatusCode::ACCEPTED => {}
            _ => return Err(status_error(owner, digest, status, &body)),
        }
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .filter(|l| l.starts_with('/'))
            .ok_or_else(|| invalid_data(format!("origin {owner} sent no upload location")))?;
        let url = format!("{base}{location}");
        let chunk = self.inner.config.chunk_size.as_u64();
        let length = blob.len();
        let mut offset = 0;
        while offset < length {
            let end = (offset + chunk).min(length);
            let request = self
                .request(Method::PATCH, &url, true)
                .header(CONTENT_RANGE, format!("{offset}-{}", end - 1))
                .header(CONTENT_LENGTH, end - offset)
                .body(body_of(blob.clone(), offset..end));
            let (status, _, body) = self.exchange(owner, digest, request).await?;
            if !status.is_success() {
                return Err(status_error(owner, digest, status, &body));
            }
            offset = end;
        }
        let request = self.request(Method::PUT, &url, true);
        let (status, _, body) = self.exchange(owner, digest, request).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(status_error(owner, digest, status, &body))
        }
    }

    /// Sends a request to the owners of `digest` in order until one gives
    /// a final answer, and reads it whole; 202 answers are polled.
    async fn poll_owners(
        &self,
        digest: &Digest,
        method: Method,
        path: &str,
        transfer: bool,
    ) -> Result<(reqwest::header::HeaderMap, Bytes)> {
        self.poll(digest, || async {
            let (status, headers, body) = self
                .first_owner(digest, |base| {
                    self.request(method.clone(), &format!("{base}{path}"), transfer)
                })
                .await?;
            Ok((status != StatusCode::ACCEPTED).then_some((headers, body)))
        })
        .await
    }

    /// Runs `attempt` until it gives an answer (`Some`), waiting longer
    /// after each `None` (an origin still reading from its backend), until
    /// [`OriginClientConfig::poll_timeout`].
    async fn poll<T, F, Fut>(&self, digest: &Digest, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.poll_timeout;
        let mut wait = config.poll_initial;
        loop {
            if let Some(answer) = attempt().await? {
                return Ok(answer);
            }
            if Instant::now() + wait > deadline {
                return Err(Error::Timeout(format!(
                    "origins still fetching {digest} from the backend after {:?}",
                    config.poll_timeout
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait.mul_f32(1.5)).min(config.poll_max);
        }
    }

    /// Tries the owners of `digest` in order; returns the first answer that
    /// is a success or 202, read whole, or the error that ends the call.
    async fn first_owner(
        &self,
        digest: &Digest,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes)> {
        let (owner, response) = self.first_response(digest, build).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| network_error(&owner, digest, &e))?;
        if status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(status_error(&owner, digest, status, &body));
        }
        Ok((status, headers, body))
    }

    /// Tries the owners of `digest` in order; returns the first response
    /// that is a success, a 202 or a 416, unread, with the owner that sent
    /// it. A network error or a 5xx moves on to the next owner; any other
    /// status ends the call.
    async fn first_response(
        &self,
        digest: &Digest,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<(String, Response)> {
        let owners = self.locations(digest).await?;
        let mut last = None;
        for owner in owners {
            let e = match build(&format!("{}://{owner}", self.scheme())).send().await {
                // A 416 names the blob's length in a header the caller reads.
                Ok(response)
                    if response.status().is_success()
                        || response.status() == StatusCode::RANGE_NOT_SATISFIABLE =>
                {
                    return Ok((owner, response));
                }
                Ok(response) => {
                    let status = response.status();
                    let body = response.bytes().await.unwrap_or_default();
                    status_error(&owner, digest, status, &body)
                }
                Err(e) => network_error(&owner, digest, &e),
            };
            if !failover(&e) {
                return Err(e);
            }
            tracing::debug!(%digest, origin = %owner, error = %e, "origin failed; trying the next owner");
            last = Some(e);
        }
        Err(last.unwrap_or(Error::Unavailable(*digest)))
    }

    fn scheme(&self) -> &'static str {
        http_tls::scheme(self.inner.config.tls.as_ref())
    }

    fn request(&self, method: Method, url: &str, transfer: bool) -> RequestBuilder {
        let config = &self.inner.config;
        let timeout = if transfer {
            config.transfer_timeout
        } else {
            config.request_timeout
        };
        let request = self.inner.http.request(method, url).timeout(timeout);
        match &config.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Sends one request and reads the whole answer.
    async fn exchange(
        &self,
        addr: &str,
        digest: &Digest,
        request: RequestBuilder,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Bytes)> {
        let answer = async {
            let response: Response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            Ok::<_, reqwest::Error>((status, headers, response.bytes().await?))
        };
        answer.await.map_err(|e| network_error(addr, digest, &e))
    }

    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, PeerInfo)>> {
        // A cache: an entry left by a panicking thread is still an answer.
        self.inner.peers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The tracker's view of the cluster: the owners as peers, and metainfo
/// without polling, since an agent retries a 202 itself.
#[async_trait]
impl OriginDirectory for OriginClient {
    async fn origins(&self, _namespace: &Namespace, digest: &Digest) -> Result<Vec<PeerInfo>> {
        let owners = self.locations(digest).await?;
        let mut peers = Vec::with_capacity(owners.len());
        for owner in &owners {
            match self.peer(owner).await {
                Ok(peer) => peers.push(peer),
                Err(e) => {
                    tracing::debug!(origin = %owner, error = %e, "origin peer identity unknown; leaving it out");
                }
            }
        }
        Ok(peers)
    }

    async fn metainfo(&self, namespace: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        let path = format!("{}/metainfo", blob_path(namespace, digest));
        let (status, _, body) = self
            .first_owner(digest, |base| {
                self.request(Method::GET, &format!("{base}{path}"), false)
            })
            .await?;
        if status == StatusCode::ACCEPTED {
            return Err(Error::Unavailable(*digest));
        }
        decode_metainfo(digest, &body)
    }
}

/// A blob in memory, as a [`BlobReader`].
#[derive(Debug)]
struct BytesReader(Bytes);

#[async_trait]
impl BlobReader for BytesReader {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.0.len());
        let end = start.saturating_add(len).min(self.0.len());
        Ok(self.0.slice(start..end))
    }
}

/// A request body streaming `range` of a blob.
fn body_of(blob: Arc<dyn BlobReader>, range: std::ops::Range<u64>) -> reqwest::Body {
    let stream = read_range(blob, range, BODY_CHUNK).map(|chunk| chunk.map_err(io::Error::other));
    reqwest::Body::wrap_stream(stream)
}

/// The path of a blob's public routes.
pub(crate) fn blob_path(namespace: &Namespace, digest: &Digest) -> String {
    let ns = utf8_percent_encode(namespace.as_str(), SEGMENT);
    format!("/namespace/{ns}/blobs/{digest}")
}

/// The body of `POST /namespace/{ns}/blobs/{d}/remote`: the other
/// cluster's origins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCluster {
    /// HTTP addresses (`host:port`) of the remote cluster's origins.
    pub members: Vec<String>,
}

/// The `Range` request header for `range`, `None` for the whole blob.
fn range_header(range: ByteRange) -> Option<String> {
    match range {
        ByteRange::Full => None,
        ByteRange::From(start) => Some(format!("bytes={start}-")),
        ByteRange::Inclusive { start, end } => Some(format!("bytes={start}-{end}")),
        ByteRange::Suffix(n) => Some(format!("bytes=-{n}")),
    }
}

/// The error for a 416 answer, whose `Content-Range: bytes */<length>`
/// names the blob's length.
fn unsatisfiable(range: ByteRange, response: &Response) -> Error {
    let length = response
        .headers()
        .get(CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes */"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = match range {
        ByteRange::From(s) | ByteRange::Inclusive { start: s, .. } => s,
        ByteRange::Full | ByteRange::Suffix(_) => length,
    };
    Error::RangeNotSatisfiable {
        start,
        end: length,
        length,
    }
}

/// Wraps a 200 or 206 answer as a [`BlobStream`].
fn stream_of(owner: &str, digest: &Digest, response: Response) -> Result<BlobStream> {
    let headers = response.headers();
    let number = |name| {
        headers
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let sent = number(CONTENT_LENGTH)
        .ok_or_else(|| invalid_data(format!("origin {owner} sent no Content-Length")))?;
    let (range, length) = if response.status() == StatusCode::PARTIAL_CONTENT {
        let text = headers
            .get(CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        parse_content_range(text)
            .ok_or_else(|| invalid_data(format!("origin {owner} sent Content-Range {text:?}")))?
    } else {
        (0..sent, sent)
    };
    if range.end - range.start != sent {
        return Err(invalid_data(format!(
            "origin {owner} sent {sent} bytes for range {range:?}"
        )));
    }
    let (owner, digest) = (owner.to_owned(), *digest);
    let body = response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| network_error(&owner, &digest, &e)))
        .boxed();
    Ok(BlobStream {
        length,
        range,
        body,
    })
}

/// Parses `bytes <start>-<end>/<length>`.
fn parse_content_range(text: &str) -> Option<(std::ops::Range<u64>, u64)> {
    let rest = text.strip_prefix("bytes ")?;
    let (span, length) = rest.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    let (start, end, length): (u64, u64, u64) =
        (start.parse().ok()?, end.parse().ok()?, length.parse().ok()?);
    (start <= end && end < length).then_some((start..end + 1, length))
}

/// Whether a failure should move the call on to the next owner: the
/// origin could not be reached, timed out, or failed on its side.
fn failover(e: &Error) -> bool {
    match e {
        Error::Unavailable(_) | Error::Timeout(_) => true,
        Error::Io(io) => matches!(
            io.kind(),
            io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::Other
        ),
        _ => false,
    }
}

fn is_host_port(addr: &str) -> bool {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok()
}

fn invalid_data(message: String) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidData, message))
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

/// Turns an origin's non-success answer into an error: 404 is a blob
/// nobody has, 5xx a failure on the origin's side (the next owner is
/// tried), other 4xx a request the origin refuses, with its message.
fn status_error(addr: &str, digest: &Digest, status: StatusCode, body: &[u8]) -> Error {
    if status == StatusCode::NOT_FOUND {
        return Error::NotFound(*digest);
    }
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(body) => body.error,
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let message: String = message.chars().take(MAX_MESSAGE).collect();
    let text = format!("origin {addr} answered {status} for {digest}: {message}");
    match status {
        StatusCode::GATEWAY_TIMEOUT => Error::Timeout(text),
        s if s.is_server_error() => Error::Io(io::Error::other(text)),
        _ => Error::Io(io::Error::new(io::ErrorKind::InvalidInput, text)),
    }
}

/// Classifies a failure to reach an origin.
fn network_error(addr: &str, digest: &Digest, e: &reqwest::Error) -> Error {
    let cause = std::error::Error::source(e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
    let text = format!("origin {addr} ({digest}): {cause}");
    if e.is_timeout() {
        Error::Timeout(text)
    } else if e.is_connect() {
        Error::Io(io::Error::new(io::ErrorKind::ConnectionRefused, text))
    } else {
        Error::Io(io::Error::new(io::ErrorKind::ConnectionAborted, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_host_and_port() {
        let config = OriginClientConfig::default();
        assert!(OriginClient::new(["127.0.0.1:15002", "[::1]:1"], config.clone()).is_ok());
        for bad in ["127.0.0.1", "http://a:1", ":1", "a:99999"] {
            let e = OriginClient::new([bad], config.clone()).unwrap_err();
            assert!(e.to_string().contains("host:port"), "{bad}: {e}");
        }
        let none: [&str; 0] = [];
        assert!(OriginClient::new(none, config).is_err());
    }

    #[test]
    fn config_rejects_zero_waits() {
        let config = OriginClientConfig {
            poll_initial: Duration::ZERO,
            ..OriginClientConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("poll_initial"));
        let config = OriginClientConfig {
            poll_max: Duration::from_millis(1),
            ..OriginClientConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn failures_that_move_to_the_next_owner() {
        let digest = Digest::sha256_of(b"x");
        assert!(failover(&status_error(
            "a:1",
            &digest,
            StatusCode::INTERNAL_SERVER_ERROR,
            b""
        )));
        assert!(failover(&status_error(
            "a:1",
            &digest,
            StatusCode::GATEWAY_TIMEOUT,
            b""
        )));
        assert!(!failover(&status_error(
            "a:1",
            &digest,
            StatusCode::BAD_REQUEST,
            b"{\"error\":\"x\"}"
        )));
        assert!(!failover(&status_error(
            "a:1",
            &digest,
            StatusCode::NOT_FOUND,
            b""
        )));
        let e = status_error(
            "a:1",
            &digest,
            StatusCode::BAD_REQUEST,
            b"{\"error\":\"digest mismatch\"}",
        );
        assert!(e.to_string().contains("digest mismatch"), "{e}");
    }
}
