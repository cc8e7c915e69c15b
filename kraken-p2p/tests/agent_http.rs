//! The agent's generic blob API against a real HTTP server on loopback, with
//! an in-process swarm behind it: what a client of the agent relies on.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use bytesize::ByteSize;
use common::{Peer, Swarm, blob, fast_config};
use futures::StreamExt;
use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_core::{
    Algorithm, BlobState, BlobStore, BlobStream, ByteRange, Digest, Error, MetaInfo, Namespace,
    Result, Scheduler, SchedulerStats,
};
use kraken_p2p::agent::Agent;
use kraken_p2p::scheduler::{EngineOptions, SchedulerConfig};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A swarm with one origin and one agent serving HTTP.
struct Cluster {
    swarm: Swarm,
    origin: Peer,
    agent: Agent,
    agent_store: Arc<DiskStore>,
    client: reqwest::Client,
}

impl Cluster {
    async fn start(origin_config: SchedulerConfig) -> Self {
        let swarm = Swarm::new();
        let origin = swarm.peer(origin_config, true).await;
        let root = swarm.dir.path().join("agent");
        let agent_store = Arc::new(DiskStore::open(DiskStoreOptions::new(root)).await.unwrap());
        let options = EngineOptions {
            scheduler: fast_config(),
            ..EngineOptions::default()
        };
        let agent = Agent::builder(agent_store.clone(), swarm.tracker.clone())
            .engine_options(options)
            .http(SocketAddr::from(([127, 0, 0, 1], 0)))
            .build()
            .await
            .unwrap();
        Cluster {
            swarm,
            origin,
            agent,
            agent_store,
            client: kraken_p2p::http_tls::client_builder(None)
                .unwrap()
                .build()
                .unwrap(),
        }
    }

    async fn publish(&self, data: &Bytes) -> MetaInfo {
        self.swarm.publish(&self.origin, data, 64 * 1024).await
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.agent.http_addr().unwrap())
    }

    fn blob_url(&self, digest: &Digest) -> String {
        self.url(&format!("/namespace/library%2Fubuntu/blobs/{digest}"))
    }

    async fn get_range(&self, digest: &Digest, range: &str) -> reqwest::Response {
        let request = self.client.get(self.blob_url(digest));
        request.header("range", range).send().await.unwrap()
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    let value = response.headers().get(name);
    value
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

async fn error_message(response: reqwest::Response) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    body["error"]
        .as_str()
        .expect("error is a string")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_get_returns_the_blob_with_its_headers() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(700_000, 1);
    let meta = cluster.publish(&data).await;
    let digest = meta.digest();

    let response = cluster
        .client
        .get(cluster.blob_url(digest))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), "700000");
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    assert_eq!(
        header(&response, "docker-content-digest"),
        digest.to_string()
    );
    assert_eq!(header(&response, "etag"), format!("\"{digest}\""));
    assert_eq!(response.bytes().await.unwrap(), data);
    // The body can end just before the download is committed; once it is,
    // the agent keeps the blob without fetching it again.
    let ns = Namespace::new("library/ubuntu").unwrap();
    let kept = cluster.agent.get(&ns, digest).await.unwrap();
    assert_eq!(kept.len(), 700_000);
    assert!(cluster.origin.engine.stats().bytes_out < 2 * 700_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_sends_the_length_and_no_body() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(300_000, 2);
    let meta = cluster.publish(&data).await;
    let addr = cluster.agent.http_addr().unwrap();

    // A raw exchange, so a body the client library would discard shows.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "HEAD /namespace/library%2Fubuntu/blobs/{} HTTP/1.1\r\nhost: agent\r\n\
         range: bytes=0-9\r\nconnection: close\r\n\r\n",
        meta.digest()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap().to_ascii_lowercase();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();

    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-length: 300000"), "{head}");
    assert!(head.contains("accept-ranges: bytes"), "{head}");
    assert!(head.contains(&format!("docker-content-digest: {}", meta.digest())));
    assert_eq!(body, "", "HEAD carries no body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_ranges_are_served_as_partial_content() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(200_000, 3);
    let meta = cluster.publish(&data).await;
    let digest = meta.digest();

    let cases = [
        ("bytes=0-0", 0..1),
        ("bytes=100-", 100..200_000),
        ("bytes=-10", 199_990..200_000),
        ("bytes=150000-999999", 150_000..200_000),
    ];
    for (range, expected) in cases {
        let response = cluster.get_range(digest, range).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let content_range = format!("bytes {}-{}/200000", expected.start, expected.end - 1);
        assert_eq!(header(&response, "content-range"), content_range, "{range}");
        let length = (expected.end - expected.start).to_string();
        assert_eq!(header(&response, "content-length"), length, "{range}");
        assert_eq!(response.bytes().await.unwrap(), data[expected], "{range}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_multiple_ranges_are_ignored() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(50_000, 4);
    let meta = cluster.publish(&data).await;

    for range in ["bytes=5-3", "bytes=0-1,5-6", "items=0-1", "bytes=x-"] {
        let response = cluster.get_range(meta.digest(), range).await;
        assert_eq!(response.status(), StatusCode::OK, "{range}");
        assert!(response.headers().get("content-range").is_none());
        assert_eq!(response.bytes().await.unwrap(), data, "{range}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_past_the_end_are_not_satisfiable() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(50_000, 5);
    let meta = cluster.publish(&data).await;

    for range in ["bytes=50000-", "bytes=60000-70000", "bytes=-0"] {
        let response = cluster.get_range(meta.digest(), range).await;
        assert_eq!(
            response.status(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "{range}"
        );
        assert_eq!(header(&response, "content-range"), "bytes */50000");
        assert!(error_message(response).await.contains("not satisfiable"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_digest_is_404_with_a_json_error() {
    let cluster = Cluster::start(fast_config()).await;
    let digest = Digest::sha256_of(b"nobody has this");

    let response = cluster
        .client
        .get(cluster.blob_url(&digest))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&response, "content-type"), "application/json");
    assert!(error_message(response).await.contains(&digest.to_string()));
    let head = cluster.client.head(cluster.blob_url(&digest)).send().await;
    assert_eq!(head.unwrap().status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_digests_and_namespaces_are_400() {
    let cluster = Cluster::start(fast_config()).await;
    let good = Digest::sha256_of(b"x");
    let paths = [
        "/namespace/library%2Fubuntu/blobs/sha256:XYZ".to_owned(),
        "/namespace/library%2Fubuntu/blobs/sha256:abc".to_owned(),
        "/namespace/library%2Fubuntu/blobs/md5:d41d8cd98f00b204e9800998ecf8427e".to_owned(),
        format!("/namespace/..%2Fetc/blobs/{good}"),
        format!("/namespace/a%2F%2Fb/blobs/{good}"),
        format!("/namespace/%FF/blobs/{good}"),
    ];
    for path in paths {
        let response = cluster.client.get(cluster.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        assert!(!error_message(response).await.is_empty(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha512_blobs_are_served() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(333_333, 6);
    let meta = cluster
        .swarm
        .publish_as(&cluster.origin, &data, 64 * 1024, Algorithm::Sha512)
        .await;
    let digest = meta.digest();
    assert_eq!(digest.algorithm(), Algorithm::Sha512);

    let response = cluster
        .client
        .get(cluster.blob_url(digest))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "docker-content-digest"),
        digest.to_string()
    );
    assert_eq!(response.bytes().await.unwrap(), data);

    let response = cluster.get_range(digest, "bytes=-5").await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap(), data[333_328..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_bytes_arrive_while_the_blob_still_downloads() {
    // About two seconds of transfer: the bucket bursts one second's worth.
    let capped = SchedulerConfig {
        egress_limit: Some(ByteSize::mib(4)),
        ..fast_config()
    };
    let cluster = Cluster::start(capped).await;
    let data = blob(8 << 20, 7);
    let meta = cluster
        .swarm
        .publish(&cluster.origin, &data, 256 * 1024)
        .await;
    let digest = *meta.digest();

    let started = Instant::now();
    let mut response = cluster
        .client
        .get(cluster.blob_url(&digest))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let first = response.chunk().await.unwrap().expect("a first chunk");
    let first_at = started.elapsed();
    let state_at_first = cluster.agent_store.stat(&digest).await.unwrap().state;
    let mut got = first.to_vec();
    while let Some(chunk) = response.chunk().await.unwrap() {
        got.extend_from_slice(&chunk);
    }
    let done_at = started.elapsed();
    println!("first chunk after {first_at:?}, whole blob after {done_at:?}");

    assert_eq!(got, data);
    assert!(
        matches!(state_at_first, BlobState::Downloading { .. }),
        "the first chunk came before the blob was complete: {state_at_first:?}"
    );
    assert!(
        first_at * 2 < done_at,
        "first chunk at {first_at:?}, whole blob at {done_at:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_of_one_digest_share_one_download() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(2 << 20, 8);
    let meta = cluster.publish(&data).await;
    let url = cluster.blob_url(meta.digest());

    let gets = (0..4).map(|_| async {
        let response = cluster.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.bytes().await.unwrap()
    });
    let bodies = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(gets))
        .await
        .expect("downloads finished in time");

    for body in bodies {
        assert_eq!(body, data);
    }
    let sent = cluster.origin.engine.stats().bytes_out;
    assert!(
        sent < 2 * data.len() as u64,
        "origin sent {sent} bytes for four readers of a {}-byte blob",
        data.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_answer_200_and_unknown_routes_404() {
    let cluster = Cluster::start(fast_config()).await;
    for path in ["/health", "/readiness"] {
        let response = cluster.client.get(cluster.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let unencoded = cluster.url("/namespace/library/ubuntu/blobs/sha256:00");
    let response = cluster.client.get(unencoded).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_message(response).await, "no such route");
    let blob = cluster.url("/namespace/library%2Fubuntu/blobs/sha256:00");
    let response = cluster.client.put(blob).body("x").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(error_message(response).await.contains("GET and HEAD"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_agent_gets_and_streams_by_digest() {
    let cluster = Cluster::start(fast_config()).await;
    let data = blob(400_000, 9);
    let meta = cluster.publish(&data).await;
    let ns = Namespace::new("library/ubuntu").unwrap();

    let reader = cluster.agent.get(&ns, meta.digest()).await.unwrap();
    assert_eq!(reader.len(), data.len() as u64);
    assert_eq!(reader.read_at(0, data.len()).await.unwrap(), data);

    let range = ByteRange::From(399_000);
    let stream = cluster
        .agent
        .stream(&ns, meta.digest(), range)
        .await
        .unwrap();
    let chunks: Vec<_> = stream.body.collect().await;
    let tail: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
    assert_eq!(tail, data[399_000..]);
    cluster.agent.shutdown().await;
}

/// A scheduler whose streams fail after their first chunk.
#[derive(Debug)]
struct FailingMidStream;

#[async_trait]
impl Scheduler for FailingMidStream {
    async fn download(&self, _: &Namespace, digest: &Digest) -> Result<()> {
        Err(Error::Unavailable(*digest))
    }

    async fn stream(&self, _: &Namespace, digest: &Digest, _: ByteRange) -> Result<BlobStream> {
        let failure = Error::Unavailable(*digest);
        let first = futures::stream::once(async { Ok(Bytes::from(vec![7; 1000])) });
        // The pause lets the server flush the headers and the first chunk,
        // as when a download stalls and then fails.
        let then_fail = futures::stream::once(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err(failure)
        });
        Ok(BlobStream {
            length: 100_000,
            range: 0..100_000,
            body: first.chain(then_fail).boxed(),
        })
    }

    async fn seed(&self, _: &Namespace, digest: &Digest) -> Result<()> {
        Err(Error::NotFound(*digest))
    }

    fn cancel(&self, _: &Digest) {}

    fn stats(&self) -> SchedulerStats {
        SchedulerStats::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_failure_after_the_headers_truncates_the_response() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = kraken_p2p::agent::router(Arc::new(FailingMidStream));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let digest = Digest::sha256_of(b"half a blob");
    let url = format!("http://{addr}/namespace/ns/blobs/{digest}");

    let client = kraken_p2p::http_tls::client_builder(None)
        .unwrap()
        .build()
        .unwrap();
    let mut response = client.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-length"), "100000");
    let mut received = 0;
    let outcome = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };

    assert!(outcome.is_err(), "the client must see the transfer fail");
    assert!(received < 100_000, "received {received} bytes");
}
