//! A whole cluster on loopback for the registry tests, over a filesystem
//! backend, and helpers to push content to it with plain HTTP.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use bytes::Bytes;
use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_core::Digest;
use kraken_core::testkit::{Faults, FaultyBackend};
use kraken_registry::cluster::{Cluster, ClusterOptions, Ports};
use kraken_registry::manifest::media_type;
use reqwest::{Method, StatusCode};

pub struct TestCluster {
    pub cluster: Cluster,
    /// The backend behind the fault switch.
    pub backend: Arc<FsBackend>,
    pub faults: Faults,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// One origin, the given number of agents, ephemeral ports.
    pub async fn start(agents: usize) -> TestCluster {
        TestCluster::with(1, agents).await
    }

    pub async fn with(origins: usize, agents: usize) -> TestCluster {
        TestCluster::secured(origins, agents, None).await
    }

    /// As [`TestCluster::with`], writes needing `token` when given.
    pub async fn secured(
        origins: usize,
        agents: usize,
        token: Option<kraken_p2p::auth::Token>,
    ) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(
            FsBackend::open(FsBackendOptions {
                root: dir.path().join("backend"),
            })
            .await
            .unwrap(),
        );
        let (backend, faults) = FaultyBackend::wrap(fs.clone());
        let options = ClusterOptions {
            origins,
            agents,
            replicas: 2,
            ports: Ports::Ephemeral,
            token,
            ..ClusterOptions::local(dir.path().join("cluster"))
        };
        let cluster = Cluster::start(options, backend).await.unwrap();
        TestCluster {
            cluster,
            backend: fs,
            faults,
            http: kraken_p2p::http_tls::client_builder(None)
                .unwrap()
                .build()
                .unwrap(),
            dir,
        }
    }

    pub fn proxy(&self) -> String {
        format!("http://{}", self.cluster.proxy_addr())
    }

    pub fn agent(&self, i: usize) -> String {
        format!("http://{}", self.cluster.agents()[i].registry_addr())
    }

    pub async fn send(&self, method: Method, url: &str) -> reqwest::Response {
        self.http.request(method, url).send().await.unwrap()
    }

    /// Pushes a blob with one monolithic POST + PUT.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = Digest::sha256_of(data);
        let start = self
            .send(
                Method::POST,
                &format!("{}/v2/{repo}/blobs/uploads/", self.proxy()),
            )
            .await;
        assert_eq!(start.status(), StatusCode::ACCEPTED);
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let put = self
            .http
            .put(format!("{}{location}?digest={digest}", self.proxy()))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            put.status(),
            StatusCode::CREATED,
            "{}",
            put.text().await.unwrap()
        );
        digest
    }

    /// Pushes a manifest under `reference` and returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        media: &str,
    ) -> Digest {
        let response = self.put_manifest(repo, reference, body, media).await;
        let status = response.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        Digest::sha256_of(body)
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        media: &str,
    ) -> reqwest::Response {
        self.put_manifest_at(&self.proxy(), repo, reference, body, media)
            .await
    }

    pub async fn put_manifest_to(
        &self,
        base: &str,
        repo: &str,
        reference: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.put_manifest_at(base, repo, reference, body, media_type::OCI_MANIFEST)
            .await
    }

    async fn put_manifest_at(
        &self,
        base: &str,
        repo: &str,
        reference: &str,
        body: &[u8],
        media: &str,
    ) -> reqwest::Response {
        self.http
            .put(format!("{base}/v2/{repo}/manifests/{reference}"))
            .header("content-type", media)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a small image (config and `layers` random layers) and returns
    /// its manifest bytes.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: u64, layers: usize) -> Bytes {
        let config = format!("{{\"seed\":{seed}}}").into_bytes();
        let config_digest = self.push_blob(repo, &config).await;
        let mut descriptors = Vec::new();
        for i in 0..layers {
            let layer = blob(40_000 + i * 1000, seed * 100 + i as u64);
            let digest = self.push_blob(repo, &layer).await;
            descriptors.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest.to_string(),
                "size": layer.len(),
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": descriptors,
        });
        let bytes = Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap());
        self.push_manifest(repo, tag, &bytes, media_type::OCI_MANIFEST)
            .await;
        bytes
    }

    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
}

/// Deterministic pseudo-random bytes.
pub fn blob(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The first error code of an OCI error body.
pub async fn code(response: reqwest::Response) -> String {
    let body: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).expect("an OCI error body");
    body["errors"][0]["code"].as_str().unwrap().to_owned()
}
