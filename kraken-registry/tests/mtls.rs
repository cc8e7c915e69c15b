//! A whole cluster on mutual TLS: every HTTP API between components and
//! every peer connection needs a certificate from the cluster CA, and the
//! push and pull flows still work end to end. Clients without such a
//! certificate are refused during the handshake, a plain-HTTP client is
//! told the port speaks TLS, and bad TLS files stop the start naming them.
//!
//! Certificates are made at test time with rcgen, as in kraken-p2p's TLS
//! tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_core::Digest;
use kraken_p2p::http_tls::{ClientTlsOptions, client_builder};
use kraken_p2p::tls::TlsOptions;
use kraken_registry::cluster::{Cluster, ClusterOptions, Ports};
use kraken_registry::manifest::media_type;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use reqwest::StatusCode;

const LIMIT: Duration = Duration::from_secs(60);

/// A CA that writes its certificate, and those it issues, as PEM files.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Ca { issuer, dir }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a certificate for `127.0.0.1` in both the server and the
    /// client role; returns its certificate and key paths.
    fn issue(&self, file: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.join(format!("{file}.crt"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn member(&self, file: &str) -> TlsOptions {
        let (cert, key) = self.issue(file);
        TlsOptions {
            ca: self.ca_path(),
            cert,
            key,
            server_name: None,
        }
    }
}

async fn start(dir: &Path, tls: TlsOptions) -> Result<Cluster, kraken_registry::node::StartError> {
    let backend = FsBackend::open(FsBackendOptions {
        root: dir.join("backend"),
    })
    .await
    .unwrap();
    let options = ClusterOptions {
        origins: 2,
        agents: 1,
        replicas: 2,
        ports: Ports::Ephemeral,
        tls: Some(tls),
        ..ClusterOptions::local(dir.join("cluster"))
    };
    Cluster::start(options, Arc::new(backend)).await
}

fn client(tls: Option<&ClientTlsOptions>) -> reqwest::Client {
    client_builder(tls)
        .unwrap()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Pushes one blob to the proxy at `base`, as a registry client does.
async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> Digest {
    let digest = Digest::sha256_of(data);
    let start = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    let put = http
        .put(format!("{base}{location}?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_and_a_pull_work_with_mutual_tls_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let member = ca.member("member");
    let cluster = start(dir.path(), member.clone()).await.unwrap();
    let pusher = client(Some(&ClientTlsOptions::from(&member)));
    let proxy = format!("https://{}", cluster.proxy_addr());

    let config = br#"{"architecture":"amd64"}"#.to_vec();
    let layer: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let config_digest = push_blob(&pusher, &proxy, "demo/app", &config).await;
    let layer_digest = push_blob(&pusher, &proxy, "demo/app", &layer).await;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    }))
    .unwrap();
    let put = pusher
        .put(format!("{proxy}/v2/demo/app/manifests/v1"))
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

    // The agent's registry stays plain HTTP on loopback; behind it the tag
    // comes from build-index and the layer through the swarm, both on TLS.
    let puller = client(None);
    let agent = format!("http://{}", cluster.agents()[0].registry_addr());
    let pull = async {
        let got = puller
            .get(format!("{agent}/v2/demo/app/manifests/v1"))
            .header("accept", media_type::OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert_eq!(got.bytes().await.unwrap(), manifest);
        let got = puller
            .get(format!("{agent}/v2/demo/app/blobs/{layer_digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        assert!(got.bytes().await.unwrap() == layer, "the layer differs");
    };
    tokio::time::timeout(LIMIT, pull)
        .await
        .expect("pull timed out");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_cluster_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let rogue = Ca::new(dir.path(), "rogue-ca");
    let member = ca.member("member");
    let cluster = start(dir.path(), member.clone()).await.unwrap();
    let listeners = [
        ("proxy", cluster.proxy_addr(), "/v2/"),
        ("origin", cluster.origins()[0].http_addr(), "/health"),
        ("tracker", cluster.tracker_addr(), "/health"),
        ("build-index", cluster.build_index_addr(), "/health"),
    ];

    let member_client = client(Some(&ClientTlsOptions::from(&member)));
    let anonymous = client(Some(&ClientTlsOptions {
        ca: ca.ca_path(),
        cert: None,
        key: None,
    }));
    let (rogue_cert, rogue_key) = rogue.issue("intruder");
    let intruder = client(Some(&ClientTlsOptions {
        ca: ca.ca_path(),
        cert: Some(rogue_cert),
        key: Some(rogue_key),
    }));
    let plain = client(None);
    for (name, addr, path) in listeners {
        let url = format!("https://{addr}{path}");
        let ok = member_client.get(&url).send().await.unwrap();
        assert!(ok.status().is_success(), "{name}: {}", ok.status());

        // Refused in the handshake: no HTTP status ever comes back.
        let e = anonymous.get(&url).send().await.unwrap_err();
        assert!(e.status().is_none(), "{name} without a certificate: {e:?}");
        let e = intruder.get(&url).send().await.unwrap_err();
        assert!(e.status().is_none(), "{name} from another CA: {e:?}");

        let answer = plain
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{name}");
        let text = answer.text().await.unwrap();
        assert!(text.contains("https only"), "{name}: {text}");
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_missing_key_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster-ca");
    let member = TlsOptions {
        key: dir.path().join("no-such.key"),
        ..ca.member("member")
    };
    let e = start(dir.path(), member).await.unwrap_err().to_string();
    assert!(
        e.contains("private key") && e.contains("no-such.key"),
        "{e}"
    );
}
