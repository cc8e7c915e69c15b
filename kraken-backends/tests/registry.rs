//! The registry backend against the CNCF reference registry
//! (`docker-registry`, distribution 2.8) started per test on a loopback
//! port: open, with htpasswd basic auth, and with `auth: token` behind an
//! in-test token server; plus small in-test servers for the statuses and
//! redirects a real registry cannot be made to send.
//!
//! Without `docker-registry` (and `htpasswd` for basic auth) the tests
//! print why they skip, unless `CI` is set, where they fail.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use common::{
    Pusher, RegistryAuth, TokenIssuer, TokenPolicy, random, read_all, start_registry,
    start_token_server,
};
use kraken_backends::registry::{
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, RegistryBackend, RegistryBackendOptions,
    RegistryCredentials,
};
use kraken_core::{Backend, BackendErrorKind, Digest, Namespace};

fn backend(url: &str) -> RegistryBackend {
    RegistryBackend::new(RegistryBackendOptions::new(url)).unwrap()
}

fn with_credentials(url: &str, username: &str, password: &str) -> RegistryBackend {
    let mut options = RegistryBackendOptions::new(url);
    options.credentials = Some(RegistryCredentials {
        username: username.into(),
        password: password.into(),
    });
    RegistryBackend::new(options).unwrap()
}

fn ns(name: &str) -> Namespace {
    Namespace::new(name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_backend_suite_against_distribution() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let backend = backend(&registry.url());
    assert!(!backend.capabilities().write);
    kraken_core::testkit::backend_suite(Arc::new(backend)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_blobs_manifests_and_tags_pushed_to_distribution() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let pusher = Pusher::new(&registry.url(), None);
    let image = pusher
        .image("library/app", "v1", &[300_000, 17], true)
        .await;
    let backend = backend(&registry.url());
    let app = ns("library/app");

    // Blobs: size, whole bytes, ranges clamped at the end.
    let layer = &image.layers[0];
    let layer_name = Digest::sha256_of(layer).to_string();
    assert_eq!(backend.stat(&app, &layer_name).await.unwrap().size, 300_000);
    let whole = read_all(&backend, &app, &layer_name, None).await.unwrap();
    assert!(whole == *layer);
    for (range, expected) in [
        (0..10, 0..10),
        (1000..150_000, 1000..150_000),
        (299_990..400_000, 299_990..300_000),
    ] {
        let got = read_all(&backend, &app, &layer_name, Some(range.clone()))
            .await
            .unwrap();
        assert!(got == layer.slice(expected), "range {range:?}");
    }
    let past = read_all(&backend, &app, &layer_name, Some(400_000..400_010)).await;
    assert!(past.unwrap().is_empty());

    // A tag's object is the digest it points at, as text.
    let tag = backend.stat(&app, "library/app:v1").await.unwrap();
    assert_eq!(tag.size, 71);
    let text = read_all(&backend, &app, "library/app:v1", None)
        .await
        .unwrap();
    assert_eq!(text, image.digest.to_string().as_bytes());
    let part = read_all(&backend, &app, "library/app:v1", Some(0..7)).await;
    assert_eq!(part.unwrap(), &b"sha256:"[..]);

    // Manifests by tag and by digest, verbatim, typed and checked; and a
    // manifest digest read as a blob falls back to the manifest.
    let by_tag = backend.manifest(&app, "v1").await.unwrap();
    assert_eq!(by_tag.bytes, image.manifest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    assert_eq!(by_tag.digest, image.digest);
    let by_digest = backend
        .manifest(&app, &image.digest.to_string())
        .await
        .unwrap();
    assert_eq!(by_digest, by_tag);
    let manifest_name = image.digest.to_string();
    let as_blob = read_all(&backend, &app, &manifest_name, None)
        .await
        .unwrap();
    assert_eq!(as_blob, image.manifest);
    let size = backend.stat(&app, &manifest_name).await.unwrap().size;
    assert_eq!(size, image.manifest.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_type_comes_through_with_its_media_type() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let pusher = Pusher::new(&registry.url(), None);
    let oci = pusher.image("team/multi", "oci", &[100], true).await;
    let docker = pusher.image("team/multi", "docker", &[100], false).await;
    let (index, index_digest) = pusher.index("team/multi", "index", &[&oci]).await;
    let list = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{
            "mediaType": DOCKER_MANIFEST,
            "digest": docker.digest.to_string(),
            "size": docker.manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    });
    let list = Bytes::from(serde_json::to_vec(&list).unwrap());
    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    let list_digest = pusher
        .manifest("team/multi", "list", list_type, &list)
        .await;

    let backend = backend(&registry.url());
    let multi = ns("team/multi");
    let cases = [
        ("oci", OCI_MANIFEST, &oci.manifest, &oci.digest),
        ("docker", DOCKER_MANIFEST, &docker.manifest, &docker.digest),
        ("index", OCI_INDEX, &index, &index_digest),
        ("list", list_type, &list, &list_digest),
    ];
    for (tag, media_type, bytes, digest) in cases {
        let got = backend.manifest(&multi, tag).await.unwrap();
        assert_eq!(got.media_type, media_type, "{tag}");
        assert_eq!(&got.bytes, bytes, "{tag}");
        assert_eq!(&got.digest, digest, "{tag}");
        let name = format!("team/multi:{tag}");
        let text = read_all(&backend, &multi, &name, None).await.unwrap();
        assert_eq!(text, digest.to_string().as_bytes(), "{tag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_content_and_bad_names_fail_clearly() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let pusher = Pusher::new(&registry.url(), None);
    pusher.image("library/app", "v1", &[10], true).await;
    let backend = backend(&registry.url());
    let app = ns("library/app");
    let absent = Digest::sha256_of(b"never pushed").to_string();
    for (namespace, name) in [
        (&app, absent.as_str()),
        (&app, "library/app:v2"),
        (&ns("library/none"), absent.as_str()),
        (&app, "library/none:v1"),
    ] {
        let stat = backend.stat(namespace, name).await.unwrap_err();
        assert_eq!(stat.kind(), BackendErrorKind::NotFound, "{name}: {stat}");
        let download = read_all(&backend, namespace, name, None).await.unwrap_err();
        assert_eq!(download.kind(), BackendErrorKind::NotFound, "{name}");
    }
    let missing = backend.manifest(&app, "v2").await.unwrap_err();
    assert_eq!(missing.kind(), BackendErrorKind::NotFound, "{missing}");

    for name in ["sha256:1234", "Library/App:v1", "library/app:-v1"] {
        let error = backend.stat(&app, name).await.unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Other, "{name}: {error}");
        assert!(error.message().contains("not a valid"), "{error}");
    }
    let error = backend.manifest(&app, "sha256:zz").await.unwrap_err();
    assert!(error.message().contains("not a valid digest"), "{error}");
    let upper = backend.stat(&ns("CI-cache"), &absent).await.unwrap_err();
    assert!(
        upper.message().contains("not a valid repository"),
        "{upper}"
    );
    let body: kraken_core::UploadBody = futures::StreamExt::boxed(futures::stream::empty());
    let upload = backend.upload(&app, &absent, 1, body).await.unwrap_err();
    assert_eq!(upload.kind(), BackendErrorKind::Unsupported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_are_listed_by_prefix_in_pages() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let pusher = Pusher::new(&registry.url(), None);
    let image = pusher.image("library/app", "v1", &[10], true).await;
    for tag in ["v2", "v10", "w1", "a"] {
        pusher
            .manifest("library/app", tag, OCI_MANIFEST, &image.manifest)
            .await;
    }
    let backend = backend(&registry.url());
    let app = ns("library/app");
    let mut listed = Vec::new();
    let mut page = None;
    loop {
        let got = backend
            .list(&app, "library/app:v", page.as_deref(), 1)
            .await
            .unwrap();
        assert!(got.names.len() <= 1);
        listed.extend(got.names);
        page = got.next;
        if page.is_none() {
            break;
        }
    }
    assert_eq!(
        listed,
        ["library/app:v1", "library/app:v10", "library/app:v2"]
    );
    let all = backend.list(&app, "", None, 100).await.unwrap();
    assert_eq!(all.names.len(), 5);
    assert_eq!(all.next, None);
    let other = backend
        .list(&app, "library/other:", None, 100)
        .await
        .unwrap();
    assert!(other.names.is_empty());
    let unknown = backend
        .list(&ns("library/none"), "", None, 10)
        .await
        .unwrap();
    assert!(unknown.names.is_empty() && unknown.next.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_bytes_that_do_not_hash_to_the_digest_are_refused() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let pusher = Pusher::new(&registry.url(), None);
    let image = pusher.image("library/app", "v1", &[4096], true).await;
    let layer = Digest::sha256_of(&image.layers[0]);
    // Damage the blob where distribution keeps it; it serves the file as is.
    let hex = layer.hex();
    let data = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let backend = backend(&registry.url());
    let error = read_all(&backend, &ns("library/app"), &layer.to_string(), None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Corrupt, "{error}");
    let message = error.to_string();
    let actual = Digest::sha256_of(&bytes);
    for needle in [
        "registry GET",
        &format!("/v2/library/app/blobs/{layer}"),
        &layer.to_string(),
        &actual.to_string(),
    ] {
        assert!(message.contains(needle), "{needle} missing from: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_sends_credentials_only_when_challenged_and_names_refusals() {
    let auth = RegistryAuth::Htpasswd {
        username: "puller".into(),
        password: "right horse".into(),
    };
    let Some(registry) = start_registry(auth).await else {
        return;
    };
    let pusher = Pusher::new(&registry.url(), Some(basic_header("puller", "right horse")));
    let image = pusher.image("private/app", "v1", &[1000], true).await;
    let app = ns("private/app");
    let layer = Digest::sha256_of(&image.layers[0]).to_string();

    let right = with_credentials(&registry.url(), "puller", "right horse");
    let got = read_all(&right, &app, &layer, None).await.unwrap();
    assert!(got == image.layers[0]);
    assert_eq!(
        right.manifest(&app, "v1").await.unwrap().digest,
        image.digest
    );

    let none = backend(&registry.url());
    let error = none.stat(&app, &layer).await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unauthorized, "{error}");
    assert!(error.message().contains("none are configured"), "{error}");

    let wrong = with_credentials(&registry.url(), "puller", "wrong horse");
    let error = wrong.stat(&app, &layer).await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unauthorized, "{error}");
    assert!(
        error
            .message()
            .contains("refused the credentials of puller"),
        "{error}"
    );
    assert!(!error.is_retryable());
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A registry with `auth: token` behind the in-test token server, with
/// `image` pushed to `repository` using a push token minted directly.
async fn token_registry(
    policy: TokenPolicy,
    repository: &str,
) -> Option<(common::Registry, common::TokenServer, common::Image)> {
    let issuer = Arc::new(TokenIssuer::new("kraken-test-registry"));
    let server = start_token_server(issuer.clone(), policy).await;
    let auth = RegistryAuth::Token {
        realm: server.realm(),
        issuer: issuer.clone(),
    };
    let registry = start_registry(auth).await?;
    let push = issuer.mint(repository, &["pull", "push"], Duration::from_secs(300));
    let pusher = Pusher::new(&registry.url(), Some(format!("Bearer {push}")));
    let image = pusher.image(repository, "v1", &[50_000], true).await;
    Some((registry, server, image))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_anonymously_once_per_scope_and_renewed_on_expiry() {
    let policy = TokenPolicy {
        credentials: None,
        expires_in: 2,
        denied: vec!["library/secret".into()],
    };
    let Some((registry, server, image)) = token_registry(policy, "library/app").await else {
        return;
    };
    let backend = Arc::new(backend(&registry.url()));
    let app = ns("library/app");
    let layer = Digest::sha256_of(&image.layers[0]).to_string();

    // A burst of concurrent reads in one repository costs one token.
    let reads = (0..10).map(|_| {
        let (backend, app, layer) = (backend.clone(), app.clone(), layer.clone());
        tokio::spawn(async move { read_all(&*backend, &app, &layer, None).await })
    });
    for read in futures::future::join_all(reads).await {
        assert!(read.unwrap().unwrap() == image.layers[0]);
    }
    assert_eq!(server.count(), 1, "one token for the burst");
    backend.manifest(&app, "v1").await.unwrap();
    backend.stat(&app, "library/app:v1").await.unwrap();
    assert_eq!(server.count(), 1, "the token is reused");

    // Another repository is another scope; an expired token is renewed.
    let other = backend
        .stat(&ns("library/other"), &layer)
        .await
        .unwrap_err();
    assert_eq!(other.kind(), BackendErrorKind::NotFound, "{other}");
    assert_eq!(server.count(), 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    backend.stat(&app, &layer).await.unwrap();
    assert_eq!(server.count(), 3, "the expired token was renewed");

    // A token that grants nothing is refused by the registry, which the
    // error says, after one fresh try.
    let before = server.count();
    let secret = backend
        .stat(&ns("library/secret"), &layer)
        .await
        .unwrap_err();
    assert_eq!(secret.kind(), BackendErrorKind::Unauthorized, "{secret}");
    assert!(secret.message().contains("insufficient_scope"), "{secret}");
    assert!(
        secret.message().contains("no credentials are configured"),
        "{secret}"
    );
    assert_eq!(server.count(), before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_with_basic_credentials_when_configured() {
    let policy = TokenPolicy {
        credentials: Some(("robot".into(), "s3cr3t".into())),
        expires_in: 300,
        denied: Vec::new(),
    };
    let Some((registry, server, image)) = token_registry(policy, "team/app").await else {
        return;
    };
    let app = ns("team/app");
    let layer = Digest::sha256_of(&image.layers[0]).to_string();

    let right = with_credentials(&registry.url(), "robot", "s3cr3t");
    let got = read_all(&right, &app, &layer, None).await.unwrap();
    assert!(got == image.layers[0]);
    assert_eq!(server.count(), 1);

    let anonymous = backend(&registry.url());
    let error = anonymous.stat(&app, &layer).await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unauthorized, "{error}");
    assert!(error.message().contains("no anonymous tokens"), "{error}");

    let wrong = with_credentials(&registry.url(), "robot", "guess");
    let error = wrong.stat(&app, &layer).await.unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Unauthorized, "{error}");
    assert!(
        error.message().contains("refused the credentials of robot"),
        "{error}"
    );
}

/// A fake registry: every request is answered by `answer`.
async fn fake_registry<F, R>(answer: F) -> SocketAddr
where
    F: Fn(axum::http::Method, String, HeaderMap) -> R + Clone + Send + Sync + 'static,
    R: IntoResponse,
{
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: HeaderMap| {
            let answer = answer.clone();
            async move { answer(method, uri.to_string(), headers).into_response() }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn statuses_map_to_distinct_kinds() {
    let addr = fake_registry(|_, path: String, _| {
        let status: u16 = path
            .split('/')
            .nth(2)
            .unwrap()
            .trim_start_matches('s')
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        if status == 429 || status == 503 {
            headers.insert(header::RETRY_AFTER, "7".parse().unwrap());
        }
        (StatusCode::from_u16(status).unwrap(), headers, "")
    })
    .await;
    let backend = backend(&format!("http://{addr}"));
    let digest = Digest::sha256_of(b"x").to_string();
    let cases = [
        (404, BackendErrorKind::NotFound),
        (403, BackendErrorKind::Forbidden),
        (429, BackendErrorKind::RateLimited),
        (500, BackendErrorKind::Unavailable),
        (503, BackendErrorKind::Unavailable),
        (400, BackendErrorKind::Other),
    ];
    for (status, kind) in cases {
        let repo = ns(&format!("s{status}"));
        for error in [
            backend.stat(&repo, &digest).await.unwrap_err(),
            read_all(&backend, &repo, &digest, None).await.unwrap_err(),
            backend.manifest(&repo, "v1").await.unwrap_err(),
        ] {
            assert_eq!(error.kind(), kind, "{status}: {error}");
            assert_eq!(error.is_retryable(), kind.is_retryable(), "{status}");
        }
    }
    let limited = backend.stat(&ns("s429"), &digest).await.unwrap_err();
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
    // A 401 without any challenge is refused at once, not looped on.
    let bare = backend.stat(&ns("s401"), &digest).await.unwrap_err();
    assert_eq!(bare.kind(), BackendErrorKind::Unauthorized);
    assert!(
        bare.message()
            .contains("without a Basic or Bearer challenge"),
        "{bare}"
    );
}

#[tokio::test]
async fn redirects_are_followed_without_carrying_credentials_elsewhere() {
    let blob = random(10_000);
    let digest = Digest::sha256_of(&blob);
    let leaked = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let cdn = {
        let (blob, leaked, served) = (blob.clone(), leaked.clone(), served.clone());
        fake_registry(move |_, _, headers: HeaderMap| {
            if headers.contains_key(header::AUTHORIZATION) {
                leaked.store(true, Ordering::SeqCst);
            }
            served.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, blob.clone())
        })
        .await
    };
    let registry = fake_registry(move |_, path: String, headers: HeaderMap| {
        let expected = format!(
            "Basic {}",
            basic_header("u", "p").trim_start_matches("Basic ")
        );
        let authorized = headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.to_str().unwrap() == expected);
        let mut out = HeaderMap::new();
        if !authorized {
            out.insert(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"fake\"".parse().unwrap(),
            );
            return (StatusCode::UNAUTHORIZED, out);
        }
        let to = format!("http://{cdn}/storage{path}?signature=abc");
        out.insert(header::LOCATION, to.parse().unwrap());
        (StatusCode::TEMPORARY_REDIRECT, out)
    })
    .await;
    let backend = with_credentials(&format!("http://{registry}"), "u", "p");
    let got = read_all(&backend, &ns("library/app"), &digest.to_string(), None)
        .await
        .unwrap();
    assert!(got == blob);
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert!(
        !leaked.load(Ordering::SeqCst),
        "credentials went to the CDN"
    );
}

#[tokio::test]
async fn redirect_loops_are_refused() {
    let looping = fake_registry(|_, path: String, _| {
        let mut out = HeaderMap::new();
        out.insert(header::LOCATION, format!("{path}x").parse().unwrap());
        (StatusCode::FOUND, out)
    })
    .await;
    let backend = backend(&format!("http://{looping}"));
    let digest = Digest::sha256_of(b"x").to_string();
    let error = backend.stat(&ns("library/app"), &digest).await.unwrap_err();
    assert!(error.message().contains("more than 5 redirects"), "{error}");
}
