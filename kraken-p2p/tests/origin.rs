//! A cluster of three origins (replica count 2) in one process, each with
//! its own disk store and write-back queue, all in front of one filesystem
//! backend behind a failure switch; agents fetch through a tracker that
//! learns about blobs from the origins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_core::testkit::{Faults, FaultyBackend, Operation};
use kraken_core::{Backend, BlobStore, Digest, Error, Namespace};
use kraken_p2p::agent::Agent;
use kraken_p2p::auth::{Token, WriteAuth};
use kraken_p2p::origin::{
    ClusterConfig, HealthConfig, Members, Origin, OriginClient, OriginClientConfig, OriginConfig,
    OriginServer, ReadThroughConfig, WriteBackConfig,
};
use kraken_p2p::tracker::{MemoryPeerStore, TrackerConfig, TrackerService};
use reqwest::StatusCode;

mod common;
use common::blob;

const ORIGINS: usize = 3;

fn ns() -> Namespace {
    Namespace::new("library/app").unwrap()
}

struct Running {
    origin: Origin,
    server: OriginServer,
    store: Arc<DiskStore>,
}

struct TestCluster {
    /// The token origins require for writes, if any.
    token: Option<Token>,
    dir: tempfile::TempDir,
    addrs: Vec<String>,
    running: Vec<Option<Running>>,
    /// The backend every origin writes to and reads from.
    fs: Arc<FsBackend>,
    backend: Arc<FaultyBackend>,
    faults: Faults,
    client: OriginClient,
    http: reqwest::Client,
}

impl TestCluster {
    async fn start() -> TestCluster {
        TestCluster::start_with(None).await
    }

    async fn start_with(token: Option<Token>) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(
            FsBackend::open(FsBackendOptions {
                root: dir.path().join("backend"),
            })
            .await
            .unwrap(),
        );
        let (backend, faults) = FaultyBackend::wrap(fs.clone());
        // Ports picked by the OS, then released and bound again by each
        // origin, so every member list is known before any origin starts.
        let mut addrs = Vec::new();
        let mut held = Vec::new();
        for _ in 0..ORIGINS {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.push(l.local_addr().unwrap().to_string());
            held.push(l);
        }
        drop(held);
        let client = OriginClient::new(addrs.clone(), client_config()).unwrap();
        let mut cluster = TestCluster {
            token,
            dir,
            addrs,
            running: (0..ORIGINS).map(|_| None).collect(),
            fs,
            backend,
            faults,
            client,
            http: kraken_p2p::http_tls::client_builder(None)
                .unwrap()
                .build()
                .unwrap(),
        };
        for i in 0..ORIGINS {
            cluster.start_origin(i).await;
        }
        cluster.all_healthy().await;
        cluster
    }

    /// Waits until every running origin sees every other as healthy: an
    /// origin probing a member that had not started yet takes it out of
    /// placement until it passes a probe.
    async fn all_healthy(&self) {
        eventually("every origin sees every member healthy", || async {
            self.running.iter().flatten().all(|r| {
                r.origin
                    .cluster()
                    .members()
                    .iter()
                    .all(|m| m.health == kraken_p2p::origin::MemberHealth::Healthy)
            })
        })
        .await;
    }

    fn root(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("origin{i}"))
    }

    fn config(&self, i: usize) -> OriginConfig {
        OriginConfig {
            cluster: ClusterConfig {
                members: Members::Static(self.addrs.clone()),
                replicas: 2,
                health: HealthConfig {
                    interval: Duration::from_millis(100),
                    timeout: Duration::from_millis(500),
                    fails: 2,
                    passes: 1,
                },
                ..ClusterConfig::default()
            },
            writeback: WriteBackConfig {
                workers: 2,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
                poll_interval: Duration::from_millis(20),
            },
            read_through: ReadThroughConfig {
                failure_ttl: Duration::from_millis(100),
                ..ReadThroughConfig::default()
            },
            client: OriginClientConfig {
                token: self.token.clone(),
                ..client_config()
            },
            auth: WriteAuth {
                tokens: self.token.iter().cloned().collect(),
            },
            ..OriginConfig::single(self.addrs[i].clone(), self.root(i).join("queue.redb"))
        }
    }

    /// Starts origin `i` on its address with the store and queue it left.
    async fn start_origin(&mut self, i: usize) {
        let store = Arc::new(
            DiskStore::open(DiskStoreOptions::new(self.root(i).join("store")))
                .await
                .unwrap(),
        );
        let origin = Origin::start(self.config(i), store.clone(), self.backend.clone())
            .await
            .unwrap();
        let listener = bind(&self.addrs[i]).await;
        let server = OriginServer::serve(listener, origin.clone()).unwrap();
        self.running[i] = Some(Running {
            origin,
            server,
            store,
        });
    }

    async fn stop_origin(&mut self, i: usize) {
        let running = self.running[i].take().expect("origin running");
        running.server.shutdown().await.unwrap();
        running.origin.shutdown().await;
    }

    fn origin(&self, i: usize) -> &Origin {
        &self.running[i].as_ref().expect("origin running").origin
    }

    fn store(&self, i: usize) -> &Arc<DiskStore> {
        &self.running[i].as_ref().expect("origin running").store
    }

    fn index(&self, addr: &str) -> usize {
        self.addrs.iter().position(|a| a == addr).unwrap()
    }

    /// The owners of `digest` by index, best first.
    fn owners(&self, digest: &Digest) -> Vec<usize> {
        let live = self.running.iter().flatten().next().unwrap();
        live.origin
            .cluster()
            .owners(digest)
            .iter()
            .map(|a| self.index(a))
            .collect()
    }

    fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.addrs[i])
    }

    fn blob_url(&self, i: usize, digest: &Digest) -> String {
        self.url(i, &format!("/namespace/library%2Fapp/blobs/{digest}"))
    }

    async fn holds(&self, i: usize, digest: &Digest) -> bool {
        self.store(i).stat(digest).await.is_ok()
    }

    async fn in_backend(&self, digest: &Digest) -> bool {
        self.fs.stat(&ns(), &digest.to_string()).await.is_ok()
    }

    /// A tracker whose origins are this cluster, and an agent using it.
    async fn agent(&self, name: &str) -> Agent {
        let config = TrackerConfig {
            announce_interval: Duration::from_millis(200),
            ..TrackerConfig::default()
        };
        let peers = Arc::new(MemoryPeerStore::new(config.peer_ttl));
        let tracker = Arc::new(TrackerService::new(
            config,
            peers,
            Arc::new(self.client.clone()),
        ));
        let store = Arc::new(
            DiskStore::open(DiskStoreOptions::new(self.dir.path().join(name)))
                .await
                .unwrap(),
        );
        Agent::builder(store, tracker).build().await.unwrap()
    }
}

fn client_config() -> OriginClientConfig {
    OriginClientConfig {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(10),
        transfer_timeout: Duration::from_secs(30),
        poll_initial: Duration::from_millis(20),
        poll_max: Duration::from_millis(100),
        poll_timeout: Duration::from_secs(20),
        ..OriginClientConfig::default()
    }
}

/// Binds `addr`, retrying briefly while a closed listener's port is freed.
async fn bind(addr: &str) -> tokio::net::TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("cannot bind {addr}");
}

/// Waits up to ten seconds for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn read_all(reader: Arc<dyn kraken_core::BlobReader>) -> Bytes {
    reader.read_at(0, reader.len() as usize).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_through_any_origin_is_served_by_every_owner_and_by_p2p() {
    let cluster = TestCluster::start().await;
    let data = blob(3 * 1024 * 1024 + 17, 1);
    let digest = Digest::sha256_of(&data);
    let owners = cluster.owners(&digest);
    assert_eq!(owners.len(), 2);
    let outsider = (0..ORIGINS).find(|i| !owners.contains(i)).unwrap();

    // Every origin answers the same placement.
    for i in 0..ORIGINS {
        let response = cluster
            .http
            .get(cluster.url(i, &format!("/blobs/{digest}/locations")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let header = response.headers()["origin-locations"]
            .to_str()
            .unwrap()
            .to_owned();
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        let listed: Vec<String> = serde_json::from_value(body["locations"].clone()).unwrap();
        assert_eq!(
            listed,
            owners
                .iter()
                .map(|&o| cluster.addrs[o].clone())
                .collect::<Vec<_>>()
        );
        assert_eq!(header, listed.join(","));
    }

    // Uploaded to the origin that owns nothing of it: it still stores,
    // copies to both owners and queues the write-back.
    let response = cluster
        .http
        .put(cluster.blob_url(outsider, &digest))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["docker-content-digest"],
        digest.to_string().as_str()
    );
    for &owner in &owners {
        assert!(
            cluster.holds(owner, &digest).await,
            "owner {owner} lacks the blob"
        );
        let got = cluster
            .http
            .get(cluster.blob_url(owner, &digest))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(got.bytes().await.unwrap(), data);
    }
    let ranged = cluster
        .http
        .get(cluster.blob_url(owners[1], &digest))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.bytes().await.unwrap(), data.slice(10..20));
    eventually("write-back", || cluster.in_backend(&digest)).await;
    eventually("queue drained", || async {
        cluster.origin(outsider).writeback().is_empty()
    })
    .await;

    // The client, as the proxy uses it, uploads to the owners (chunked
    // here) and reads back.
    let chunked = blob(700_000, 2);
    let chunked_digest = Digest::sha256_of(&chunked);
    let small_chunks = OriginClient::new(
        cluster.addrs.clone(),
        OriginClientConfig {
            chunk_size: bytesize::ByteSize::kib(256),
            ..client_config()
        },
    )
    .unwrap();
    small_chunks
        .upload_bytes(&ns(), &chunked_digest, chunked.clone())
        .await
        .unwrap();
    assert_eq!(
        cluster
            .client
            .download(&ns(), &chunked_digest)
            .await
            .unwrap(),
        chunked
    );
    for owner in cluster.owners(&chunked_digest) {
        assert!(cluster.holds(owner, &chunked_digest).await);
    }
    assert_eq!(
        cluster.client.stat(&ns(), &digest).await.unwrap(),
        Some(data.len() as u64)
    );

    // A leecher gets it through the swarm, from the origins as seeders.
    let agent = cluster.agent("leecher").await;
    let got = agent.get(&ns(), &digest).await.unwrap();
    assert_eq!(read_all(got).await, data);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_owner_stopped_blobs_still_upload_and_download() {
    let mut cluster = TestCluster::start().await;
    let data = blob(500_000, 3);
    let digest = Digest::sha256_of(&data);
    let owners = cluster.owners(&digest);
    cluster.stop_origin(owners[0]).await;

    // The client fails over to the next owner at once.
    cluster
        .client
        .upload_bytes(&ns(), &digest, data.clone())
        .await
        .unwrap();
    assert!(cluster.holds(owners[1], &digest).await);
    assert_eq!(cluster.client.download(&ns(), &digest).await.unwrap(), data);

    // Once health checks take the dead owner out, the third origin stands
    // in for it and new uploads reach two live origins. Each origin probes
    // on its own clock, and the client may ask either for the owners, so
    // both must have seen it go.
    let live = owners[1];
    let dead = &cluster.addrs[owners[0]];
    let alive: Vec<usize> = (0..cluster.addrs.len())
        .filter(|&i| i != owners[0])
        .collect();
    eventually(
        "dead owner out of every live origin's placement",
        || async {
            alive
                .iter()
                .all(|&i| !cluster.origin(i).cluster().owners(&digest).contains(dead))
        },
    )
    .await;
    let later = blob(400_000, 4);
    let later_digest = Digest::sha256_of(&later);
    cluster
        .client
        .upload_bytes(&ns(), &later_digest, later.clone())
        .await
        .unwrap();
    let placed = cluster.origin(live).cluster().owners(&later_digest);
    assert_eq!(placed.len(), 2);
    for addr in &placed {
        let i = cluster.index(addr);
        assert_ne!(i, owners[0]);
        eventually("both live owners hold the later blob", || {
            cluster.holds(i, &later_digest)
        })
        .await;
    }
    assert_eq!(
        cluster.client.download(&ns(), &later_digest).await.unwrap(),
        later
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_lands_after_the_backend_returns_across_a_restart() {
    let mut cluster = TestCluster::start().await;
    cluster.faults.set_outage(true);
    let data = blob(300_000, 5);
    let digest = Digest::sha256_of(&data);
    let first = cluster.owners(&digest)[0];

    cluster
        .client
        .upload_bytes(&ns(), &digest, data.clone())
        .await
        .unwrap();
    assert!(cluster.holds(first, &digest).await);
    assert!(cluster.origin(first).writeback().is_pending(&digest));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let task = cluster.origin(first).writeback().pending()[0].clone();
    assert!(task.attempts >= 1, "the write-back was not attempted");
    assert!(task.last_error.is_some());
    assert!(!cluster.in_backend(&digest).await);
    let stat = cluster.store(first).stat(&digest).await.unwrap();
    assert!(stat.pinned, "a blob pending write-back must stay pinned");

    cluster.stop_origin(first).await;
    cluster.start_origin(first).await;
    assert!(cluster.origin(first).writeback().is_pending(&digest));
    cluster.faults.set_outage(false);
    eventually("write-back after restart", || cluster.in_backend(&digest)).await;
    eventually("queue drained", || async {
        cluster.origin(first).writeback().is_empty()
    })
    .await;
    // The task leaves the queue first, then unpins the blob.
    eventually("unpinned once written back", || async {
        !cluster.store(first).stat(&digest).await.unwrap().pinned
    })
    .await;
    let stored = cluster
        .fs
        .download(&ns(), &digest.to_string(), None)
        .await
        .unwrap();
    let stored: Vec<Bytes> = futures::TryStreamExt::try_collect(stored).await.unwrap();
    assert_eq!(stored.concat(), data.to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_only_in_the_backend_is_read_once_and_reaches_the_swarm() {
    let cluster = TestCluster::start().await;
    let data = blob(2 * 1024 * 1024, 6);
    let digest = Digest::sha256_of(&data);
    let body = futures::stream::iter([Ok(data.clone())]).boxed();
    cluster
        .fs
        .upload(&ns(), &digest.to_string(), data.len() as u64, body)
        .await
        .unwrap();
    cluster.faults.reset_calls();
    // Slow enough that every request below arrives while the fetch runs.
    cluster.faults.set_latency(Duration::from_millis(300));
    let first = cluster.owners(&digest)[0];

    let response = cluster
        .http
        .get(cluster.blob_url(first, &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(response.headers().contains_key("retry-after"));

    let namespace = ns();
    let downloads = (0..20).map(|_| cluster.client.download(&namespace, &digest));
    for got in futures::future::join_all(downloads).await {
        assert_eq!(got.unwrap(), data);
    }
    assert_eq!(cluster.faults.calls(Operation::Download), 1);
    let fetched: u64 = (0..ORIGINS)
        .map(|i| cluster.origin(i).read_through_fetches())
        .sum();
    assert_eq!(fetched, 1);
    cluster.faults.set_latency(Duration::ZERO);

    // Another blob only in the backend, asked for by an agent first.
    let other = blob(1024 * 1024 + 3, 7);
    let other_digest = Digest::sha256_of(&other);
    let body = futures::stream::iter([Ok(other.clone())]).boxed();
    cluster
        .fs
        .upload(&ns(), &other_digest.to_string(), other.len() as u64, body)
        .await
        .unwrap();
    let agent = cluster.agent("agent").await;
    let got = agent.get(&ns(), &other_digest).await.unwrap();
    assert_eq!(read_all(got).await, other);
    agent.shutdown().await;
    // The metainfo request made the first owner read it; the agent's
    // connection to the second owner, which lacked it, made that one read
    // it too, so both seed it.
    for owner in cluster.owners(&other_digest) {
        eventually("every owner seeds a blob agents asked for", || {
            cluster.holds(owner, &other_digest)
        })
        .await;
    }

    // Absent everywhere: 404; backend unreachable: 503, never 404.
    let missing = Digest::sha256_of(b"in no backend");
    let response = cluster
        .http
        .get(cluster.blob_url(0, &missing))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    cluster.faults.set_outage(true);
    let unknown = Digest::sha256_of(b"the backend cannot say");
    let response = cluster
        .http
        .get(cluster.blob_url(0, &unknown))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().len() > 5);
    let readiness = cluster
        .http
        .get(cluster.url(0, "/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(readiness.status(), StatusCode::SERVICE_UNAVAILABLE);
    cluster.faults.set_outage(false);
    let readiness = cluster
        .http
        .get(cluster.url(0, "/readiness"))
        .send()
        .await
        .unwrap();
    assert_eq!(readiness.status(), StatusCode::OK);
}

/// Nothing of `digest` anywhere: no origin store, no backend, no queue.
async fn nothing_stored(cluster: &TestCluster, digest: &Digest) {
    for i in 0..ORIGINS {
        assert!(
            matches!(cluster.store(i).stat(digest).await, Err(Error::NotFound(_))),
            "origin {i} kept {digest}"
        );
        assert!(!cluster.origin(i).writeback().is_pending(digest));
    }
    assert!(!cluster.in_backend(digest).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_truncated_uploads_store_nothing() {
    let cluster = TestCluster::start().await;
    let data = blob(100_000, 8);
    let digest = Digest::sha256_of(&data);
    let owner = cluster.owners(&digest)[0];

    // Other bytes for the digest, in one request.
    let response = cluster
        .http
        .put(cluster.blob_url(owner, &digest))
        .body(blob(100_000, 9))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("digest mismatch"),
        "{body}"
    );
    nothing_stored(&cluster, &digest).await;

    // Chunked: an out-of-order chunk is 416 and names what the upload
    // holds; a commit of half the bytes is 400.
    let start = cluster
        .http
        .post(cluster.url(
            owner,
            &format!("/namespace/library%2Fapp/blobs/{digest}/uploads"),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    let upload = cluster.url(owner, &location);
    let chunk = cluster
        .http
        .patch(&upload)
        .header("content-range", "0-49999")
        .body(data.slice(0..50_000))
        .send()
        .await
        .unwrap();
    assert_eq!(chunk.status(), StatusCode::ACCEPTED);
    assert_eq!(chunk.headers()["range"], "0-49999");
    let skipped = cluster
        .http
        .patch(&upload)
        .header("content-range", "60000-69999")
        .body(data.slice(60_000..70_000))
        .send()
        .await
        .unwrap();
    assert_eq!(skipped.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(skipped.headers()["range"], "0-49999");
    let status = cluster.http.get(&upload).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["range"], "0-49999");
    let commit = cluster.http.put(&upload).send().await.unwrap();
    assert_eq!(commit.status(), StatusCode::BAD_REQUEST);
    nothing_stored(&cluster, &digest).await;
    // The upload ended with the failed commit.
    let gone = cluster.http.get(&upload).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // A body that breaks off: the connection closes after half the
    // declared length.
    {
        use tokio::io::AsyncWriteExt;
        let mut tcp = tokio::net::TcpStream::connect(&cluster.addrs[owner])
            .await
            .unwrap();
        let head = format!(
            "PUT /namespace/library%2Fapp/blobs/{digest} HTTP/1.1\r\nhost: origin\r\ncontent-length: {}\r\n\r\n",
            data.len()
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        tcp.write_all(&data[..data.len() / 2]).await.unwrap();
        tcp.shutdown().await.unwrap();
        drop(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    nothing_stored(&cluster, &digest).await;

    // Malformed input is named, not guessed at.
    for (path, what) in [
        ("/namespace/library%2Fapp/blobs/sha256:abc", "digest"),
        (
            "/namespace/Bad..Name/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "namespace",
        ),
    ] {
        let response = cluster
            .http
            .put(cluster.url(owner, path))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
    }
    let start = cluster
        .http
        .post(cluster.url(
            owner,
            &format!("/namespace/library%2Fapp/blobs/{digest}/uploads"),
        ))
        .send()
        .await
        .unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    let response = cluster
        .http
        .patch(cluster.url(owner, &location))
        .header("content-range", "bytes=0-9")
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The right bytes still go through afterwards.
    cluster
        .client
        .upload_bytes(&ns(), &digest, data.clone())
        .await
        .unwrap();
    assert_eq!(cluster.client.download(&ns(), &digest).await.unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_origin_gets_the_blob_back_from_the_backend() {
    let mut cluster = TestCluster::start().await;
    let data = blob(600_000, 10);
    let digest = Digest::sha256_of(&data);
    cluster
        .client
        .upload_bytes(&ns(), &digest, data.clone())
        .await
        .unwrap();
    eventually("write-back", || cluster.in_backend(&digest)).await;
    let owners = cluster.owners(&digest);
    eventually("queue drained", || async {
        cluster.origin(owners[0]).writeback().is_empty()
    })
    .await;

    // Both owners lose their disks.
    for &i in &owners {
        cluster.stop_origin(i).await;
        std::fs::remove_dir_all(cluster.root(i)).unwrap();
        cluster.start_origin(i).await;
        assert!(!cluster.holds(i, &digest).await);
    }
    // Deleting is refused while a write-back is pending, allowed after.
    let deleted = cluster
        .http
        .delete(cluster.url(owners[0], &format!("/internal/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NOT_FOUND);

    cluster.faults.reset_calls();
    assert_eq!(cluster.client.download(&ns(), &digest).await.unwrap(), data);
    assert_eq!(cluster.faults.calls(Operation::Download), 1);
    assert!(cluster.holds(owners[0], &digest).await);
    let deleted = cluster
        .http
        .delete(cluster.url(owners[0], &format!("/internal/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
}

async fn collect(stream: kraken_core::BlobStream) -> Vec<u8> {
    let chunks: Vec<Bytes> = futures::TryStreamExt::try_collect(stream.body)
        .await
        .unwrap();
    chunks.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_streams_ranges_mounts_and_copies_to_another_cluster() {
    use kraken_core::ByteRange;

    let cluster = TestCluster::start().await;
    let data = blob(800_000, 11);
    let digest = Digest::sha256_of(&data);
    cluster
        .client
        .upload_bytes(&ns(), &digest, data.clone())
        .await
        .unwrap();

    let whole = cluster
        .client
        .stream(&ns(), &digest, ByteRange::Full)
        .await
        .unwrap();
    assert_eq!((whole.length, whole.range.clone()), (800_000, 0..800_000));
    assert_eq!(collect(whole).await, data.to_vec());
    let part = ByteRange::Inclusive {
        start: 1000,
        end: 1999,
    };
    let ranged = cluster.client.stream(&ns(), &digest, part).await.unwrap();
    assert_eq!((ranged.length, ranged.range.clone()), (800_000, 1000..2000));
    assert_eq!(collect(ranged).await, data[1000..2000].to_vec());
    let tail = cluster
        .client
        .stream(&ns(), &digest, ByteRange::Suffix(10))
        .await
        .unwrap();
    assert_eq!(collect(tail).await, data[data.len() - 10..].to_vec());
    match cluster
        .client
        .stream(&ns(), &digest, ByteRange::From(900_000))
        .await
    {
        Err(Error::RangeNotSatisfiable { length, .. }) => assert_eq!(length, 800_000),
        other => panic!("expected 416, got {other:?}"),
    }

    // Only in the backend: the stream waits out the read-through.
    let cold = blob(300_000, 12);
    let cold_digest = Digest::sha256_of(&cold);
    let body = futures::stream::iter([Ok(cold.clone())]).boxed();
    cluster
        .fs
        .upload(&ns(), &cold_digest.to_string(), 300_000, body)
        .await
        .unwrap();
    let streamed = cluster
        .client
        .stream(&ns(), &cold_digest, ByteRange::Full)
        .await
        .unwrap();
    assert_eq!(collect(streamed).await, cold.to_vec());

    // A mount keeps a held blob under a second namespace: its write-back
    // goes there too. A blob nobody holds is not mounted.
    let other = Namespace::new("team/other").unwrap();
    assert!(cluster.client.mount(&other, &digest).await.unwrap());
    eventually("write-back under the mounted namespace", || async {
        cluster.fs.stat(&other, &digest.to_string()).await.is_ok()
    })
    .await;
    let nobody = Digest::sha256_of(b"held by nobody");
    assert!(!cluster.client.mount(&other, &nobody).await.unwrap());

    // Another cluster, with its own backend, gets the blob from an owner.
    let remote = TestCluster::start().await;
    cluster
        .client
        .copy_to_cluster(&ns(), &digest, &remote.addrs)
        .await
        .unwrap();
    assert_eq!(remote.client.download(&ns(), &digest).await.unwrap(), data);
    eventually("remote write-back", || remote.in_backend(&digest)).await;
    match cluster
        .client
        .copy_to_cluster(&ns(), &nobody, &remote.addrs)
        .await
    {
        Err(Error::NotFound(_)) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_configured_only_writes_that_carry_it_are_taken() {
    let token = Token::new("origin-secret");
    let cluster = TestCluster::start_with(Some(token.clone())).await;
    let data = blob(200_000, 13);
    let digest = Digest::sha256_of(&data);

    match cluster
        .client
        .upload_bytes(&ns(), &digest, data.clone())
        .await
    {
        Err(e) => assert!(e.to_string().contains("401"), "{e}"),
        Ok(()) => panic!("an upload without the token was taken"),
    }
    let response = cluster
        .http
        .put(cluster.blob_url(0, &digest))
        .bearer_auth("wrong")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    for i in 0..ORIGINS {
        assert!(
            !cluster.holds(i, &digest).await,
            "origin {i} kept a refused upload"
        );
    }

    // With the token: taken, and copied to the other owner (origins send
    // it to each other).
    let client = OriginClient::new(
        cluster.addrs.clone(),
        OriginClientConfig {
            token: Some(token),
            ..client_config()
        },
    )
    .unwrap();
    client
        .upload_bytes(&ns(), &digest, data.clone())
        .await
        .unwrap();
    for owner in cluster.owners(&digest) {
        assert!(cluster.holds(owner, &digest).await, "owner {owner}");
    }
    // Reads stay open.
    assert_eq!(cluster.client.download(&ns(), &digest).await.unwrap(), data);
}
