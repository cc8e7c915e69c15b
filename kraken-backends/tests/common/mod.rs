//! Shared by the tests that talk to a real CNCF distribution registry
//! (`docker-registry`, Debian's build of distribution 2.8): starting one on
//! an ephemeral loopback port with a config the test writes, pushing
//! content into it over plain HTTP, and a token server for `auth: token`.
//!
//! Without `docker-registry` the tests print why they skip, unless `CI`
//! is set, where they fail.

#![allow(dead_code, unreachable_pub)]

pub mod garage;
pub mod nginx;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use kraken_core::{Backend, BackendError, Digest, Namespace};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// A reqwest builder for plain `http://` test clients. The workspace's
/// reqwest has `rustls-no-provider`, so a client built without a ready TLS
/// config would panic; this one gets a ring config that trusts nothing.
pub fn plain_http() -> reqwest::ClientBuilder {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config)
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]);
    dirs.map(|d| d.join(name)).find(|p| p.is_file())
}

/// Returns `name`'s path, or `None` (after saying why) when it is missing
/// outside CI; under CI a missing tool fails the test. `install` says how
/// to get it, such as `apt-get install nginx-light`.
pub fn tool(name: &str, install: &str) -> Option<PathBuf> {
    let found = binary(name);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed; .ci/run installs it ({install})"
        );
        eprintln!("skipping: {name} is not on PATH ({install})");
    }
    found
}

/// How the registry under test authenticates.
pub enum RegistryAuth {
    /// Anyone may push and pull.
    Open,
    /// `auth: htpasswd` with one bcrypt user.
    Htpasswd { username: String, password: String },
    /// `auth: token` trusting `issuer`, which signs tokens for `realm`.
    Token {
        realm: String,
        issuer: Arc<TokenIssuer>,
    },
}

/// A `docker-registry` on 127.0.0.1, killed on drop by its own handle.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    tls: bool,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The filesystem storage root, as distribution lays it out.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

/// Where the registry under test keeps its content.
pub enum RegistryStorage {
    /// The filesystem driver, rooted at [`Registry::storage`].
    Filesystem,
    /// The S3 driver on a Garage bucket, under `root` (`/registry`).
    Garage { endpoint: String, root: String },
}

fn storage_config(dir: &Path, storage: &RegistryStorage) -> String {
    match storage {
        RegistryStorage::Filesystem => format!(
            "  filesystem:\n    rootdirectory: {}/storage\n",
            dir.display()
        ),
        RegistryStorage::Garage { endpoint, root } => format!(
            // Quoted: YAML reads an all-digit secret as a number.
            "  s3:\n    accesskey: \"{}\"\n    secretkey: \"{}\"\n    region: us-east-1\n    \
             regionendpoint: {endpoint}\n    bucket: {}\n    rootdirectory: {root}\n    \
             secure: false\n    v4auth: true\n",
            garage::ACCESS_KEY,
            garage::SECRET_KEY,
            garage::BUCKET
        ),
    }
}

fn config(port: u16, storage: &str, tls: &str, auth: &str) -> String {
    format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
{storage}  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: kraken-backends-test
{tls}{auth}"
    )
}

fn auth_config(dir: &Path, auth: &RegistryAuth, htpasswd: Option<&Path>) -> String {
    match auth {
        RegistryAuth::Open => String::new(),
        RegistryAuth::Htpasswd { username, password } => {
            let tool = htpasswd.expect("htpasswd is found before");
            let output = Command::new(tool)
                .args(["-Bbn", username, password])
                .output()
                .unwrap();
            assert!(output.status.success(), "htpasswd failed");
            let file = dir.join("htpasswd");
            std::fs::write(&file, output.stdout).unwrap();
            format!(
                "auth:\n  htpasswd:\n    realm: kraken-test\n    path: {}\n",
                file.display()
            )
        }
        RegistryAuth::Token { realm, issuer } => {
            let bundle = dir.join("token-signer.pem");
            std::fs::write(&bundle, issuer.cert_pem()).unwrap();
            format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    \
                 rootcertbundle: {}\n",
                issuer.service,
                issuer.issuer,
                bundle.display()
            )
        }
    }
}

/// Starts a registry, or returns `None` (after saying why) when
/// `docker-registry`, or `htpasswd` for basic auth, is missing outside CI.
pub async fn start_registry(auth: RegistryAuth) -> Option<Registry> {
    start_registry_on(auth, RegistryStorage::Filesystem).await
}

/// Starts a registry on `storage`; see [`start_registry`].
pub async fn start_registry_on(auth: RegistryAuth, storage: RegistryStorage) -> Option<Registry> {
    start(auth, storage, None).await
}

/// Starts an open registry on filesystem storage that serves only TLS,
/// with a certificate `ca` issues; see [`start_registry`].
pub async fn start_registry_tls(ca: &nginx::TestCa) -> Option<Registry> {
    start(RegistryAuth::Open, RegistryStorage::Filesystem, Some(ca)).await
}

async fn start(
    auth: RegistryAuth,
    storage: RegistryStorage,
    ca: Option<&nginx::TestCa>,
) -> Option<Registry> {
    let binary = tool("docker-registry", "apt-get install docker-registry")?;
    let htpasswd = match auth {
        RegistryAuth::Htpasswd { .. } => Some(tool("htpasswd", "apt-get install apache2-utils")?),
        _ => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("config.yml");
    let auth = auth_config(dir.path(), &auth, htpasswd.as_deref());
    let storage = storage_config(dir.path(), &storage);
    let tls = match ca {
        None => String::new(),
        Some(ca) => {
            let cert = ca.server_cert(dir.path());
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.cert.display(),
                cert.key.display()
            )
        }
    };
    std::fs::write(&conf, config(port, &storage, &tls, &auth)).unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let mut command = Command::new(binary);
    // The S3 driver's AWS SDK reads these; a CA bundle path set for other
    // tools makes it refuse its own transport.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    let child = command
        .arg("serve")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut registry = Registry {
        child,
        port,
        dir,
        tls: ca.is_some(),
    };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(registry);
        }
        if let Some(status) = registry.child.try_wait().unwrap() {
            panic!("docker-registry exited with {status}: {}", registry.log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "docker-registry did not listen on port {port}: {}",
        registry.log()
    );
}

/// An image pushed by [`Pusher::image`].
pub struct Image {
    pub config: Bytes,
    pub layers: Vec<Bytes>,
    pub manifest: Bytes,
    pub digest: Digest,
}

/// Pushes blobs and manifests the way a client does: monolithic blob
/// uploads (`POST` then `PUT ?digest=`) and manifest `PUT`s.
pub struct Pusher {
    http: reqwest::Client,
    base: String,
    auth: Option<String>,
}

impl Pusher {
    pub fn new(base: &str, auth: Option<String>) -> Self {
        Pusher {
            http: plain_http().build().unwrap(),
            base: base.trim_end_matches('/').to_owned(),
            auth,
        }
    }

    fn with_auth(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some(auth) => request.header(header::AUTHORIZATION, auth),
            None => request,
        }
    }

    pub async fn blob(&self, repository: &str, data: &Bytes) -> Digest {
        let digest = Digest::sha256_of(data);
        let start = format!("{}/v2/{repository}/blobs/uploads/", self.base);
        let started = self.with_auth(self.http.post(&start)).send().await.unwrap();
        assert_eq!(started.status(), 202, "start upload: {}", started.status());
        let location = started.headers()[header::LOCATION].to_str().unwrap();
        let mut url = reqwest::Url::parse(&self.base)
            .unwrap()
            .join(location)
            .unwrap();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let put = self.http.put(url).body(data.clone());
        let done = self.with_auth(put).send().await.unwrap();
        assert_eq!(done.status(), 201, "finish upload: {}", done.status());
        digest
    }

    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &Bytes,
    ) -> Digest {
        let url = format!("{}/v2/{repository}/manifests/{reference}", self.base);
        let put = self
            .http
            .put(url)
            .header(header::CONTENT_TYPE, media_type)
            .body(bytes.clone());
        let done = self.with_auth(put).send().await.unwrap();
        let status = done.status();
        assert_eq!(status, 201, "put manifest: {}", done.text().await.unwrap());
        Digest::sha256_of(bytes)
    }

    /// Pushes an image of random layers of `sizes` bytes under `tag`, as
    /// an OCI or a Docker schema 2 manifest.
    pub async fn image(&self, repository: &str, tag: &str, sizes: &[usize], oci: bool) -> Image {
        let config = Bytes::from(format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"comment":"{}"}}"#,
            hex(&random(8))
        ));
        let config_digest = self.blob(repository, &config).await;
        let mut layers = Vec::new();
        for &size in sizes {
            let layer = random(size);
            self.blob(repository, &layer).await;
            layers.push(layer);
        }
        let (media_type, config_type, layer_type) = if oci {
            (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        } else {
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            )
        };
        let layer_json: Vec<_> = layers
            .iter()
            .map(|l| descriptor(layer_type, &Digest::sha256_of(l), l.len()))
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": descriptor(config_type, &config_digest, config.len()),
            "layers": layer_json,
        });
        let manifest = Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap());
        let digest = self.manifest(repository, tag, media_type, &manifest).await;
        Image {
            config,
            layers,
            manifest,
            digest,
        }
    }

    /// Pushes an OCI index of `manifests` under `tag`.
    pub async fn index(
        &self,
        repository: &str,
        tag: &str,
        manifests: &[&Image],
    ) -> (Bytes, Digest) {
        let entries: Vec<_> = manifests
            .iter()
            .map(|m| {
                let mut entry = descriptor(OCI_MANIFEST, &m.digest, m.manifest.len());
                entry["platform"] = serde_json::json!({"architecture": "amd64", "os": "linux"});
                entry
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        let index = Bytes::from(serde_json::to_vec(&index).unwrap());
        let digest = self.manifest(repository, tag, OCI_INDEX, &index).await;
        (index, digest)
    }
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

pub fn random(len: usize) -> Bytes {
    let rng = SystemRandom::new();
    let mut data = vec![0u8; len];
    ring::rand::SecureRandom::fill(&rng, &mut data).unwrap();
    Bytes::from(data)
}

pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

pub async fn read_all(
    backend: &dyn Backend,
    ns: &Namespace,
    name: &str,
    range: Option<std::ops::Range<u64>>,
) -> Result<Bytes, BackendError> {
    let mut stream = backend.download(ns, name, range).await?;
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

/// Signs registry tokens: ES256 JWTs whose `x5c` header carries a
/// self-signed certificate the registry trusts as its root bundle.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    cert_pem: String,
    pub issuer: String,
    pub service: String,
}

impl TokenIssuer {
    pub fn new(service: &str) -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["kraken-token-signer".into()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let rng = SystemRandom::new();
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
                .unwrap();
        TokenIssuer {
            key: signer,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            issuer: "kraken-test-issuer".into(),
            service: service.into(),
        }
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Mints a token granting `actions` on `repository` (none when empty).
    pub fn mint(&self, repository: &str, actions: &[&str], lifetime: Duration) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let access: Vec<_> = if actions.is_empty() {
            Vec::new()
        } else {
            vec![serde_json::json!({"type": "repository", "name": repository, "actions": actions})]
        };
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": "kraken-test",
            "aud": self.service,
            "exp": now + lifetime.as_secs(),
            "nbf": now - 1,
            "iat": now,
            "jti": hex(&random(8)),
            "access": access,
        });
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
        let signing_input = format!("{}.{}", encode(&header), encode(&claims));
        let signature = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

/// What the in-test token server grants.
pub struct TokenPolicy {
    /// Required basic credentials; anonymous tokens when `None`.
    pub credentials: Option<(String, String)>,
    /// The `expires_in` of every token, in seconds.
    pub expires_in: u64,
    /// Repositories whose tokens grant nothing.
    pub denied: Vec<String>,
}

/// A token endpoint that grants pull access by [`TokenPolicy`] and counts
/// the requests it answers.
pub struct TokenServer {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicUsize>,
    pub issuer: Arc<TokenIssuer>,
}

impl TokenServer {
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

struct TokenState {
    issuer: Arc<TokenIssuer>,
    policy: TokenPolicy,
    requests: Arc<AtomicUsize>,
}

pub async fn start_token_server(issuer: Arc<TokenIssuer>, policy: TokenPolicy) -> TokenServer {
    let requests = Arc::new(AtomicUsize::new(0));
    let state = Arc::new(TokenState {
        issuer: issuer.clone(),
        policy,
        requests: requests.clone(),
    });
    let app = axum::Router::new()
        .route("/token", axum::routing::get(grant))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    TokenServer {
        addr,
        requests,
        issuer,
    }
}

async fn grant(
    State(state): State<Arc<TokenState>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if let Some((user, password)) = &state.policy.credentials {
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) {
            return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
        }
    }
    if query.get("service") != Some(&state.issuer.service) {
        return (StatusCode::BAD_REQUEST, "wrong service").into_response();
    }
    let scope = query.get("scope").cloned().unwrap_or_default();
    let mut parts = scope.splitn(3, ':');
    let (Some("repository"), Some(repository), Some(actions)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return (StatusCode::BAD_REQUEST, "bad scope").into_response();
    };
    // Only pulls are granted, and nothing in denied repositories.
    let granted: Vec<&str> = actions
        .split(',')
        .filter(|a| *a == "pull" && !state.policy.denied.iter().any(|d| d == repository))
        .collect();
    let lifetime = Duration::from_secs(state.policy.expires_in);
    let token = state.issuer.mint(repository, &granted, lifetime);
    let body = serde_json::json!({"token": token, "expires_in": state.policy.expires_in});
    (StatusCode::OK, axum::Json(body)).into_response()
}
