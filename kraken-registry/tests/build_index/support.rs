//! A cluster ("site") per call, in this process: one origin over a
//! filesystem backend, and a build-index on a loopback address reserved up
//! front, so it can be stopped, wiped and started again at the same
//! address, and named in another site's replication rules before it runs.
//! The build-index reaches the backend through a fault switch; the origin
//! does not, so taking the backend down only concerns build-index.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_core::disk::{DiskStore, DiskStoreOptions};
use kraken_core::testkit::{Faults, FaultyBackend};
use kraken_core::{Backend, Digest, Namespace};
use kraken_p2p::origin::{Origin, OriginClient, OriginClientConfig, OriginConfig, OriginServer};
use kraken_p2p::queue::QueueConfig;
use kraken_registry::buildindex::{
    BuildIndex, BuildIndexClient, BuildIndexClientConfig, BuildIndexConfig, BuildIndexServer,
    ReplicationConfig, ReplicationRule,
};
use kraken_registry::manifest::media_type;
use kraken_registry::reference::{RepoName, Tag};
use serde_json::{Value, json};

pub fn repo(name: &str) -> RepoName {
    RepoName::new(name).unwrap()
}

pub fn tag(name: &str) -> Tag {
    Tag::new(name).unwrap()
}

/// A loopback address nobody listens on yet.
pub fn reserve() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Binds `addr`, retrying briefly while a closed listener's port is freed.
async fn bind(addr: &str) -> tokio::net::TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("cannot bind {addr}");
}

/// Waits up to twenty seconds for `check` to hold.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn fast_queue() -> QueueConfig {
    QueueConfig {
        workers: 2,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        poll_interval: Duration::from_millis(20),
    }
}

fn origin_client_config() -> OriginClientConfig {
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

pub fn client_config() -> BuildIndexClientConfig {
    BuildIndexClientConfig {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(10),
        put_timeout: Duration::from_secs(30),
        token: None,
        tls: None,
    }
}

/// Tags of repositories matching `pattern` go to `remote`.
pub fn rule(pattern: &str, remote: &str) -> ReplicationRule {
    ReplicationRule {
        pattern: pattern.into(),
        remotes: vec![remote.into()],
    }
}

pub struct Site {
    pub dir: tempfile::TempDir,
    /// The backend itself, for looking at what reached it.
    pub fs: Arc<FsBackend>,
    /// Its fault switch, in front of build-index only.
    pub faults: Faults,
    backend: Arc<FaultyBackend>,
    origin: Option<(Origin, OriginServer)>,
    pub origins: OriginClient,
    pub index_addr: String,
    index: Option<(BuildIndex, BuildIndexServer)>,
    rules: Vec<ReplicationRule>,
    /// A client of this site's build-index.
    pub client: BuildIndexClient,
    pub http: reqwest::Client,
}

impl Site {
    /// A site with no replication rules, build-index running.
    pub async fn start() -> Site {
        let mut site = Site::new(reserve(), Vec::new()).await;
        site.start_index().await;
        site
    }

    /// A site whose build-index will listen on `index_addr` and replicate
    /// by `rules`; only the origin runs yet.
    pub async fn new(index_addr: String, rules: Vec<ReplicationRule>) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsBackend::open(FsBackendOptions {
            root: dir.path().join("backend"),
        })
        .await
        .unwrap();
        let fs = Arc::new(fs);
        let (backend, faults) = FaultyBackend::wrap(fs.clone());
        let origin_addr = reserve();
        let store = DiskStore::open(DiskStoreOptions::new(dir.path().join("origin/store")))
            .await
            .unwrap();
        let config = OriginConfig {
            client: origin_client_config(),
            ..OriginConfig::single(origin_addr.clone(), dir.path().join("origin/queue.redb"))
        };
        let origin = Origin::start(config, Arc::new(store), fs.clone())
            .await
            .unwrap();
        let server = OriginServer::serve(bind(&origin_addr).await, origin.clone()).unwrap();
        let origins = OriginClient::new([origin_addr], origin_client_config()).unwrap();
        let client = BuildIndexClient::new([index_addr.clone()], client_config()).unwrap();
        Site {
            dir,
            fs,
            faults,
            backend,
            origin: Some((origin, server)),
            origins,
            index_addr,
            index: None,
            rules,
            client,
            http: kraken_p2p::http_tls::client_builder(None)
                .unwrap()
                .build()
                .unwrap(),
        }
    }

    pub fn database(&self) -> PathBuf {
        self.dir.path().join("index/index.redb")
    }

    fn config(&self) -> BuildIndexConfig {
        BuildIndexConfig {
            origin_client: origin_client_config(),
            writeback: fast_queue(),
            replication: ReplicationConfig {
                rules: self.rules.clone(),
                queue: fast_queue(),
            },
            client: client_config(),
            ..BuildIndexConfig::new(self.database())
        }
    }

    /// Starts build-index. Right after a stop, the connections of the old
    /// server may not have dropped their handle (and so the database
    /// lock) yet: axum lets `serve` return a moment before that, so the
    /// start is retried briefly.
    pub async fn start_index(&mut self) {
        assert!(self.index.is_none(), "build-index runs already");
        let mut tries = 0;
        let index = loop {
            let backend = self.backend.clone();
            match BuildIndex::start(self.config(), backend, self.origins.clone()).await {
                Ok(index) => break index,
                Err(e) if e.message().contains("already open") && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("build-index does not start: {e}"),
            }
        };
        let server = BuildIndexServer::serve(bind(&self.index_addr).await, index.clone()).unwrap();
        self.index = Some((index, server));
    }

    /// Stops build-index and waits until it let go of its database.
    pub async fn stop_index(&mut self) {
        let (index, server) = self.index.take().expect("build-index running");
        server.shutdown().await.unwrap();
        index.shutdown().await;
    }

    /// Deletes build-index's database, as a lost disk would.
    pub fn wipe_index(&self) {
        assert!(self.index.is_none(), "stop build-index first");
        std::fs::remove_file(self.database()).unwrap();
    }

    pub fn index(&self) -> &BuildIndex {
        &self.index.as_ref().expect("build-index running").0
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.index_addr)
    }

    /// Uploads `bytes` to the origins under `repo`.
    pub async fn upload(&self, repo: &RepoName, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        let bytes = Bytes::copy_from_slice(bytes);
        self.origins
            .upload_bytes(&repo.namespace(), &digest, bytes)
            .await
            .unwrap();
        digest
    }

    /// Uploads a blob and answers its descriptor.
    pub async fn blob(&self, repo: &RepoName, media_type: &str, bytes: &[u8]) -> Value {
        let digest = self.upload(repo, bytes).await;
        descriptor(media_type, &digest, bytes.len())
    }

    /// Uploads a manifest (as a blob, as the proxy does).
    pub async fn manifest(&self, repo: &RepoName, body: &Value) -> Digest {
        self.upload(repo, body.to_string().as_bytes()).await
    }

    /// Uploads an image (config and two layers, unique by `seed`) and its
    /// manifest; answers the manifest's digest and its blobs.
    pub async fn image(&self, repo: &RepoName, seed: u32) -> (Digest, Vec<Digest>) {
        let config = self
            .blob(repo, CONFIG, format!("{{\"seed\":{seed}}}").as_bytes())
            .await;
        let mut layers = Vec::new();
        for i in 0..2 {
            let bytes = format!("layer {i} of image {seed}").repeat(100);
            layers.push(self.blob(repo, LAYER, bytes.as_bytes()).await);
        }
        let blobs = std::iter::once(&config)
            .chain(&layers)
            .map(digest_of)
            .collect();
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": config,
            "layers": layers,
        });
        (self.manifest(repo, &body).await, blobs)
    }

    /// The content of an object in the backend, `None` when absent.
    pub async fn in_backend(&self, namespace: &str, name: &str) -> Option<Vec<u8>> {
        let namespace = Namespace::new(namespace).unwrap();
        let mut stream = self.fs.download(&namespace, name, None).await.ok()?;
        let mut all = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            all.extend_from_slice(&chunk.unwrap());
        }
        Some(all)
    }

    /// Writes an object to the backend directly.
    pub async fn put_in_backend(&self, namespace: &str, name: &str, content: &[u8]) {
        let namespace = Namespace::new(namespace).unwrap();
        let bytes = Bytes::copy_from_slice(content);
        let body = futures::StreamExt::boxed(futures::stream::once(async move { Ok(bytes) }));
        self.fs
            .upload(&namespace, name, content.len() as u64, body)
            .await
            .unwrap();
    }

    pub async fn shutdown(mut self) {
        if self.index.is_some() {
            self.stop_index().await;
        }
        if let Some((origin, server)) = self.origin.take() {
            server.shutdown().await.unwrap();
            origin.shutdown().await;
        }
    }
}

pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn descriptor(media_type: &str, digest: &Digest, size: usize) -> Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

pub fn digest_of(descriptor: &Value) -> Digest {
    descriptor["digest"].as_str().unwrap().parse().unwrap()
}
