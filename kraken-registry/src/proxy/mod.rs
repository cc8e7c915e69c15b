//! The proxy: the read/write registry that pushes go to.
//!
//! Uploads land in the proxy's scratch [`BlobStore`], which verifies each
//! blob's digest as it commits; the verified blob then goes to its owning
//! origin, and only once the origin committed it does the push succeed.
//! Manifests go to the origins the same way, then to build-index, which
//! checks their whole tree exists before it moves a tag. Reads go to the
//! origins ([`OriginBlobs`]) and build-index. [`router`] serves it all,
//! with the preheat webhook of other registries beside the API.

mod preheat;
mod uploads;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use kraken_core::{BlobStore, BlobStream, ByteRange, Digest, Namespace};
use kraken_p2p::auth::WriteAuth;
use kraken_p2p::origin::OriginClient;

use crate::api::{BlobSource, Registry};
use crate::error::{Error, Result, Subject};
use crate::reference::RepoName;

pub use preheat::PreheatReport;
pub use uploads::UploadConfig;

/// The proxy's HTTP API: the read/write registry of `registry`, and
/// `POST /registry/notifications`, the preheat webhook, which makes
/// `origins` fetch what other registries announce.
///
/// With tokens in `auth`, every write (and the webhook) needs one, sent as
/// the password of basic credentials (`skopeo --dest-creds any:<token>`,
/// `docker login`) or as a bearer token; `GET /v2/` without them answers
/// 401 with a `Basic` challenge, so clients learn to send them. Pulls stay
/// open.
pub fn router(registry: Registry, origins: OriginClient, auth: WriteAuth) -> axum::Router {
    let webhook = axum::Router::new()
        .route(
            "/registry/notifications",
            axum::routing::post(preheat::notifications),
        )
        .layer(axum::middleware::from_fn(crate::http::registry_layer))
        .with_state(origins);
    let app = crate::api::router(registry).merge(webhook);
    if auth.is_open() {
        return app;
    }
    app.layer(axum::middleware::from_fn_with_state(auth, require_token))
}

/// Lets reads through; writes and the `/v2/` ping need an accepted token.
async fn require_token(
    axum::extract::State(auth): axum::extract::State<WriteAuth>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    use axum::response::IntoResponse;
    let path = request.uri().path();
    let ping = path == "/v2/" || path == "/v2";
    let read = matches!(*request.method(), Method::GET | Method::HEAD);
    if (read && !ping) || auth.allows(request.headers()) {
        return next.run(request).await;
    }
    Error::new(
        crate::error::ErrorCode::Unauthorized,
        "pushes to this registry need credentials: the password is a token of the proxy's [proxy.auth]",
    )
    .with_header("www-authenticate", "Basic realm=\"kraken\"".into())
    .into_response()
}

/// Takes uploads and pushes verified blobs and manifests to the origins.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    inner: Arc<WriterInner>,
}

#[derive(Debug)]
struct WriterInner {
    scratch: Arc<dyn BlobStore>,
    origins: OriginClient,
    config: UploadConfig,
}

impl Writer {
    /// A writer that keeps uploads in progress in `scratch` and pushes to
    /// `origins`.
    pub fn new(scratch: Arc<dyn BlobStore>, origins: OriginClient, config: UploadConfig) -> Writer {
        Writer {
            inner: Arc::new(WriterInner {
                scratch,
                origins,
                config,
            }),
        }
    }

    /// Uploads manifest bytes (already verified against `digest`) to the
    /// owning origin.
    pub(crate) async fn put_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
        bytes: Bytes,
    ) -> Result<()> {
        self.inner
            .origins
            .upload_bytes(&repo.namespace(), digest, bytes)
            .await
            .map_err(|e| Error::from_core(Subject::Manifest, &e))
    }
}

/// The origin cluster as a registry's blob source (the proxy's).
#[derive(Debug, Clone)]
pub struct OriginBlobs(pub OriginClient);

#[async_trait]
impl BlobSource for OriginBlobs {
    async fn size(&self, namespace: &Namespace, digest: &Digest) -> kraken_core::Result<u64> {
        self.0
            .stat(namespace, digest)
            .await?
            .ok_or(kraken_core::Error::NotFound(*digest))
    }

    async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> kraken_core::Result<BlobStream> {
        self.0.stream(namespace, digest, range).await
    }

    async fn read(&self, namespace: &Namespace, digest: &Digest) -> kraken_core::Result<Bytes> {
        self.0.download(namespace, digest).await
    }

    /// An origin answers where a probe digest lives.
    async fn ready(&self) -> kraken_core::Result<()> {
        let probe = Digest::sha256_of(b"kraken readiness probe");
        self.0.locations(&probe).await.map(drop)
    }
}
