//! Pull-through in containerd mirror mode: an agent asked for content the
//! cluster lacks, with `?ns=<upstream>`, gets it from a registry backend
//! routed for that upstream; content the cluster has is served whatever
//! `ns` says. The upstream is a real CNCF reference registry
//! (`docker-registry`, Debian), started on a loopback port; without it the
//! test says why and passes, except under `CI=true`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_backends::registry::{RegistryBackend, RegistryBackendOptions};
use kraken_backends::router::NamespaceRouter;
use kraken_core::{Backend, Digest};
use kraken_registry::cluster::{Cluster, ClusterOptions, Ports};
use kraken_registry::manifest::media_type;
use reqwest::StatusCode;

/// A `docker-registry` this test started, killed when dropped.
struct Upstream {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_upstream() -> Option<Upstream> {
    let found = Command::new("sh")
        .args(["-c", "command -v docker-registry"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs docker-registry (apt-get install docker-registry)"
        );
        eprintln!("skipping the pull-through test: docker-registry is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Held at once, so the process is killed and reaped however this ends.
    let upstream = Upstream {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(upstream);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("docker-registry did not listen on {port}");
}

/// Pushes a one-layer image to the registry at `base`; returns the
/// manifest bytes.
async fn push(http: &reqwest::Client, base: &str, repo: &str, tag: &str, seed: u64) -> Vec<u8> {
    let mut descriptors = Vec::new();
    for data in [
        format!("{{\"seed\":{seed}}}").into_bytes(),
        common::blob(30_000, seed),
    ] {
        let digest = Digest::sha256_of(&data);
        let start = http
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        let location = start.headers()["location"].to_str().unwrap().to_owned();
        let url = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = http
            .put(format!("{url}{sep}digest={digest}"))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
        descriptors.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest.to_string(),
            "size": data.len(),
        }));
    }
    let mut config = descriptors.remove(0);
    config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config,
        "layers": descriptors,
    }))
    .unwrap();
    let put = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.status(),
        StatusCode::CREATED,
        "{}",
        put.text().await.unwrap()
    );
    manifest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_with_ns_pulls_through_and_cluster_content_wins() {
    let Some(upstream) = start_upstream() else {
        return;
    };
    let http = kraken_p2p::http_tls::client_builder(None)
        .unwrap()
        .build()
        .unwrap();
    let upstream_url = format!("http://127.0.0.1:{}", upstream.port);
    let only_upstream = push(&http, &upstream_url, "library/app", "v1", 1).await;
    let upstream_digest = Digest::sha256_of(&only_upstream);

    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryBackend::new(RegistryBackendOptions {
        strip_namespace_prefix: "127.0.0.1_".to_owned() + &upstream.port.to_string(),
        ..RegistryBackendOptions::new(&upstream_url)
    })
    .unwrap();
    let fs = FsBackend::open(FsBackendOptions::new(dir.path().join("backend")))
        .await
        .unwrap();
    let routes: Vec<(String, Arc<dyn Backend>)> = vec![
        (
            format!("127\\.0\\.0\\.1_{}/.*", upstream.port),
            Arc::new(registry),
        ),
        (".*".into(), Arc::new(fs)),
    ];
    let backend = Arc::new(NamespaceRouter::new(routes).unwrap());
    let options = ClusterOptions {
        agents: 1,
        ports: Ports::Ephemeral,
        ..ClusterOptions::local(dir.path().join("cluster"))
    };
    let cluster = Cluster::start(options, backend).await.unwrap();
    let agent = format!("http://{}", cluster.agents()[0].registry_addr());
    let ns = format!("127.0.0.1:{}", upstream.port);

    // Not in the cluster: without ns, 404; with it, pulled through.
    let url = format!("{agent}/v2/library/app/manifests/v1");
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let got = http.get(format!("{url}?ns={ns}")).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        got.headers()["docker-content-digest"],
        upstream_digest.to_string().as_str()
    );
    assert_eq!(got.bytes().await.unwrap(), only_upstream);
    let manifest: serde_json::Value = serde_json::from_slice(&only_upstream).unwrap();
    let layer: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let blob = http
        .get(format!("{agent}/v2/library/app/blobs/{layer}?ns={ns}"))
        .send()
        .await
        .unwrap();
    assert_eq!(blob.status(), StatusCode::OK);
    assert_eq!(Digest::sha256_of(&blob.bytes().await.unwrap()), layer);

    // Pushed to the cluster under the same name: the cluster's image is
    // served, ns or not.
    let proxy = format!("http://{}", cluster.proxy_addr());
    let ours = push(&http, &proxy, "library/app", "v1", 2).await;
    for query in [String::new(), format!("?ns={ns}")] {
        let got = http.get(format!("{url}{query}")).send().await.unwrap();
        assert_eq!(got.bytes().await.unwrap(), ours, "query {query:?}");
    }
    cluster.shutdown().await;
}
