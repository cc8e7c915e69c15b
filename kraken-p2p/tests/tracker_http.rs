//! The tracker over real HTTP on loopback: engines announce and fetch
//! metainfo through `HttpTracker` to a `TrackerServer`, fail over past a
//! dead tracker, and the server turns bad input into JSON errors.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{Swarm, agents, blob, download_exact, fast_config, ns};
use kraken_core::{
    Digest, Error, InfoHash, MetaInfo, Node, PeerInfo, PeerStore, Rendezvous, Scheduler,
};
use kraken_p2p::tracker::{
    ErrorBody, HttpTracker, HttpTrackerConfig, MAX_BODY_BYTES, TrackerConfig, TrackerServer,
    TrackerService,
};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

/// Client settings for tests: short timeouts, so a dead tracker costs
/// little.
fn client_config() -> HttpTrackerConfig {
    HttpTrackerConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        ..HttpTrackerConfig::default()
    }
}

async fn serve(service: Arc<TrackerService>, cancel: &CancellationToken) -> TrackerServer {
    let addr = "127.0.0.1:0".parse().unwrap();
    TrackerServer::bind(addr, service, cancel).await.unwrap()
}

/// A loopback URL nothing listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// Downloads `data` into four leechers of `swarm`, seeded by one origin,
/// and checks every copy.
async fn leechers_download(swarm: &Swarm, data: &bytes::Bytes) {
    let origin = swarm.peer(fast_config(), true).await;
    let meta = swarm.publish(&origin, data, 64 * 1024).await;
    let leechers = agents(swarm, 4, &fast_config()).await;
    download_exact(&leechers, &meta, data, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leechers_download_through_an_http_tracker() {
    let swarm = Swarm::new();
    let cancel = CancellationToken::new();
    let server = serve(swarm.tracker.clone(), &cancel).await;
    let client = HttpTracker::new([server.url()], client_config()).unwrap();
    let swarm = swarm.with_engine_tracker(Arc::new(client));

    leechers_download(&swarm, &blob(1 << 20, 11)).await;

    let agent = swarm.peer(fast_config(), false).await;
    let unknown = Digest::sha256_of(b"nobody has this");
    let err = agent.engine.download(&ns(), &unknown).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)),
        "404 maps to NotFound: {err}"
    );

    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_fail_over_past_a_dead_tracker() {
    let swarm = Swarm::new();
    let cancel = CancellationToken::new();
    let server = serve(swarm.tracker.clone(), &cancel).await;
    let data = blob(1 << 20, 12);
    let digest = Digest::sha256_of(&data);

    // Pick a dead address that rendezvous hashing ranks first for this
    // blob, so every request really goes to it before failing over.
    let dead = loop {
        let dead = dead_url();
        let ring = Rendezvous::new([Node::new(dead.clone()), Node::new(server.url())]);
        if ring.ranked(&digest)[0].label == dead {
            break dead;
        }
    };
    let client = HttpTracker::new([dead, server.url()], client_config()).unwrap();
    let swarm = swarm.with_engine_tracker(Arc::new(client));

    leechers_download(&swarm, &data).await;
    cancel.cancel();
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_trackers_dead_is_an_error_not_a_hang() {
    let client = HttpTracker::new([dead_url(), dead_url()], client_config()).unwrap();
    let digest = Digest::sha256_of(b"x");
    let started = std::time::Instant::now();
    let err = kraken_p2p::tracker::Tracker::metainfo(&client, &ns(), &digest)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        err.to_string().contains("tracker http://127.0.0.1:"),
        "{err}"
    );
}

/// Sends requests straight to a server, checking the JSON error shape.
struct Raw {
    http: reqwest::Client,
    base: String,
}

impl Raw {
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Vec<u8>) {
        let request = self.http.post(format!("{}{path}", self.base));
        let response = request.body(body).send().await.unwrap();
        (response.status(), response.bytes().await.unwrap().to_vec())
    }

    async fn get(&self, path: &str) -> (StatusCode, Vec<u8>) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (response.status(), response.bytes().await.unwrap().to_vec())
    }

    /// Asserts `answer` failed with `status` and a JSON error mentioning
    /// `needle`.
    fn rejected(what: &str, answer: &(StatusCode, Vec<u8>), status: StatusCode, needle: &str) {
        assert_eq!(
            answer.0,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&answer.1)
        );
        let body: ErrorBody = serde_json::from_slice(&answer.1)
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e})"));
        assert!(body.error.contains(needle), "{what}: {:?}", body.error);
    }
}

fn announce_json(info_hash: &str, digest: &str, peer_id: &str) -> String {
    format!(
        r#"{{"info_hash":"{info_hash}","digest":"{digest}","namespace":"library/ubuntu",
            "peer":{{"peer_id":"{peer_id}","addr":"[2001:db8::1]:16001","complete":false}}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_json_errors_and_good_input_still_works() {
    let swarm = Swarm::new();
    let cancel = CancellationToken::new();
    let server = serve(swarm.tracker.clone(), &cancel).await;
    let raw = Raw {
        http: kraken_p2p::http_tls::client_builder(None)
            .unwrap()
            .build()
            .unwrap(),
        base: server.url(),
    };
    let hash = "ab".repeat(InfoHash::LEN);
    let digest = Digest::sha256_of(b"blob").to_string();
    let peer = "cd".repeat(20);

    let ok = raw
        .post("/announce", announce_json(&hash, &digest, &peer))
        .await;
    assert_eq!(ok.0, StatusCode::OK, "{}", String::from_utf8_lossy(&ok.1));
    let answer: serde_json::Value = serde_json::from_slice(&ok.1).unwrap();
    assert!(
        answer["interval"].is_string(),
        "humantime interval: {answer}"
    );

    let bad = StatusCode::BAD_REQUEST;
    let cases = [
        (
            "malformed json",
            "{\"info_hash\": ".to_owned(),
            "invalid announce",
        ),
        (
            "bad digest",
            announce_json(&hash, "sha256:zz", &peer),
            "invalid announce",
        ),
        ("bad info hash", announce_json("XYZ", &digest, &peer), "hex"),
        (
            "bad peer id",
            announce_json(&hash, &digest, &"AB".repeat(20)),
            "hex",
        ),
        (
            "short peer id",
            announce_json(&hash, &digest, "abcd"),
            "hex",
        ),
        ("empty body", String::new(), "invalid announce"),
    ];
    for (what, body, needle) in cases {
        Raw::rejected(what, &raw.post("/announce", body).await, bad, needle);
    }
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    let too_large = StatusCode::PAYLOAD_TOO_LARGE;
    Raw::rejected(
        "oversized body",
        &raw.post("/announce", huge).await,
        too_large,
        "",
    );

    let metainfo = |ns: &str, digest: &str| format!("/namespace/{ns}/blobs/{digest}/metainfo");
    let cases = [
        (
            "bad digest",
            metainfo("library%2Fubuntu", "sha256:nothex"),
            "invalid digest",
        ),
        (
            "no algorithm",
            metainfo("library%2Fubuntu", "abc"),
            "invalid digest",
        ),
        (
            "bad namespace",
            metainfo("..%2Fetc", &digest),
            "invalid namespace",
        ),
        (
            "namespace char",
            metainfo("a%20b", &digest),
            "invalid namespace",
        ),
        ("bad utf-8", metainfo("%FF", &digest), "invalid path"),
    ];
    for (what, path, needle) in cases {
        Raw::rejected(what, &raw.get(&path).await, bad, needle);
    }
    let not_found = StatusCode::NOT_FOUND;
    let unknown = metainfo("library%2Fubuntu", &digest);
    Raw::rejected(
        "unknown blob",
        &raw.get(&unknown).await,
        not_found,
        "not found",
    );
    Raw::rejected(
        "no route",
        &raw.get("/nope").await,
        not_found,
        "no such route",
    );
    let wrong = StatusCode::METHOD_NOT_ALLOWED;
    Raw::rejected("get announce", &raw.get("/announce").await, wrong, "method");

    // A known blob comes back in its canonical binary form.
    let origin = swarm.peer(fast_config(), true).await;
    let meta = swarm.publish(&origin, &blob(300_000, 13), 64 * 1024).await;
    let known = metainfo("test%2Fswarm", &meta.digest().to_string());
    let (status, bytes) = raw.get(&known).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(MetaInfo::from_bytes(&bytes).unwrap(), meta);

    assert_eq!(raw.get("/health").await, (StatusCode::OK, b"ok".to_vec()));
    assert_eq!(
        raw.get("/readiness").await,
        (StatusCode::OK, b"ok".to_vec())
    );
    server.shutdown().await.unwrap();
    assert!(
        raw.http
            .get(format!("{}/health", raw.base))
            .send()
            .await
            .is_err()
    );
}

/// A peer store that is down.
#[derive(Debug)]
struct DownStore;

#[async_trait]
impl PeerStore for DownStore {
    async fn announce(&self, _: &InfoHash, _: &PeerInfo) -> kraken_core::Result<()> {
        Err(std::io::Error::other("store is down").into())
    }

    async fn sample(&self, _: &InfoHash, _: usize) -> kraken_core::Result<Vec<PeerInfo>> {
        Err(std::io::Error::other("store is down").into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_peer_store_fails_readiness_and_announces_fail_over() {
    let swarm = Swarm::new();
    let directory = swarm.directory.clone();
    let broken = TrackerService::new(TrackerConfig::default(), Arc::new(DownStore), directory);
    let cancel = CancellationToken::new();
    let broken = serve(Arc::new(broken), &cancel).await;
    let good = serve(swarm.tracker.clone(), &cancel).await;
    let raw = Raw {
        http: kraken_p2p::http_tls::client_builder(None)
            .unwrap()
            .build()
            .unwrap(),
        base: broken.url(),
    };
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    Raw::rejected(
        "readiness",
        &raw.get("/readiness").await,
        unavailable,
        "store is down",
    );

    // A blob the broken tracker ranks first for: every announce meets its
    // 500 and moves on to the good tracker.
    let ring = Rendezvous::new([Node::new(broken.url()), Node::new(good.url())]);
    let data = (14..)
        .map(|seed| blob(512 * 1024, seed))
        .find(|data| ring.ranked(&Digest::sha256_of(data))[0].label == broken.url())
        .unwrap();
    let client = HttpTracker::new([broken.url(), good.url()], client_config()).unwrap();
    let swarm = swarm.with_engine_tracker(Arc::new(client));
    leechers_download(&swarm, &data).await;

    cancel.cancel();
    broken.shutdown().await.unwrap();
    good.shutdown().await.unwrap();
}
