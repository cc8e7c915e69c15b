//! Backends from config: the `[[backends]]` routes of an origin's or
//! build-index's TOML file, built into one routed, wrapped backend.
//!
//! ```toml
//! [[backends]]
//! namespace = "library/.*"       # anchored regex over the namespace
//! kind = "s3"
//! bucket = "kraken-blobs"
//! region = "eu-west-1"
//! retry = { max_attempts = 5 }   # optional wrappers
//!
//! [[backends]]
//! namespace = ".*"
//! kind = "fs"
//! root = "/var/lib/kraken/backend"
//! ```
//!
//! Routes are tried in order; the first whose pattern matches the whole
//! namespace wins. Each backend is checked once at start-up where its kind
//! can be (an object store lists its bucket, so a missing bucket or a bad
//! credential stops the process with what to set), and namespaces that
//! must take pushes are checked to route to a writable backend.

use std::sync::Arc;

use kraken_core::Backend;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::fs::{FsBackend, FsBackendOptions};
use crate::http::{HttpBackend, HttpBackendOptions};
use crate::layout::Layout;
use crate::registry::{RegistryBackend, RegistryBackendOptions};
use crate::router::NamespaceRouter;
use crate::s3::{S3Backend, S3BackendOptions};
use crate::wrappers::{
    Observed, Retry, RetryOptions, Throttle, ThrottleOptions, Timeout, TimeoutOptions,
};

/// A filesystem backend and its layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsRoute {
    /// The directory that holds every object.
    pub root: std::path::PathBuf,
    /// How names map to paths: `plain`, or `docker_registry` to share the
    /// tree with a vanilla registry.
    #[serde(default)]
    pub layout: Layout,
}

/// The backends one route can name, each with its own options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BackendKind {
    /// A local or mounted filesystem.
    Fs(FsRoute),
    /// Any HTTP file server, by URL templates.
    Http(HttpBackendOptions),
    /// Amazon S3 or an S3-compatible store.
    S3(S3BackendOptions),
    /// An OCI or Docker registry, read-only (pull-through).
    Registry(RegistryBackendOptions),
    /// Google Cloud Storage.
    #[cfg(feature = "gcs")]
    Gcs(crate::gcs::GcsBackendOptions),
    /// Azure Blob Storage.
    #[cfg(feature = "azure")]
    Azure(crate::azure::AzureBackendOptions),
    /// HDFS through WebHDFS.
    #[cfg(feature = "webhdfs")]
    Webhdfs(crate::webhdfs::WebHdfsBackendOptions),
}

/// One route: the namespaces it takes, its backend, and the wrappers
/// around it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendRoute {
    /// Anchored regex over namespaces (`library/.*`, `.*`).
    pub namespace: String,
    /// The backend.
    #[serde(flatten)]
    pub backend: BackendKind,
    /// Retries of retryable failures, with jittered backoff.
    #[serde(default)]
    pub retry: Option<RetryOptions>,
    /// Time limits of each operation.
    #[serde(default)]
    pub timeout: Option<TimeoutOptions>,
    /// A bandwidth cap.
    #[serde(default)]
    pub throttle: Option<ThrottleOptions>,
}

/// Builds the routed backend of `routes`, each wrapped as configured and
/// observed (tracing spans and counters).
///
/// # Errors
///
/// [`Error::BadPattern`] for a pattern that is not a regex; a backend's
/// own error for options it refuses or a start-up check it fails (an
/// object store whose bucket is missing or whose credentials are refused).
pub async fn build(routes: &[BackendRoute]) -> Result<Arc<dyn Backend>, Error> {
    build_checked(routes, &[]).await
}

/// Builds `routes` and checks that each of `pushed` (namespaces, or route
/// patterns written as configured) routes to a writable backend, so a
/// namespace that takes pushes but maps to a read-only registry is a
/// start-up error rather than a failed push.
///
/// # Errors
///
/// As [`build`]; [`Error::ReadOnly`] or [`Error::NoRoute`] for a pushed
/// namespace.
pub async fn build_checked(
    routes: &[BackendRoute],
    pushed: &[String],
) -> Result<Arc<dyn Backend>, Error> {
    if routes.is_empty() {
        return Err(Error::Config(
            "no [[backends]] configured: add at least one route, such as \
             namespace = \".*\", kind = \"fs\", root = \"/var/lib/kraken/backend\""
                .into(),
        ));
    }
    let mut built = Vec::with_capacity(routes.len());
    for route in routes {
        built.push((
            route.namespace.clone(),
            wrap(open(&route.backend).await?, route)?,
        ));
    }
    let router = NamespaceRouter::new(built)?;
    for what in pushed {
        router.require_writable(what)?;
    }
    Ok(Arc::new(router))
}

async fn open(kind: &BackendKind) -> Result<Arc<dyn Backend>, Error> {
    Ok(match kind {
        BackendKind::Fs(fs) => {
            let options = FsBackendOptions::new(fs.root.clone());
            let backend = FsBackend::open_with_layout(options, fs.layout)
                .await
                .map_err(|e| Error::Config(format!("fs backend at {}: {e}", fs.root.display())))?;
            Arc::new(backend)
        }
        BackendKind::Http(options) => Arc::new(HttpBackend::new(options.clone())?),
        BackendKind::S3(options) => {
            let backend = S3Backend::new(options.clone())?;
            backend
                .check()
                .await
                .map_err(|e| Error::Config(e.to_string()))?;
            Arc::new(backend)
        }
        BackendKind::Registry(options) => Arc::new(RegistryBackend::new(options.clone())?),
        #[cfg(feature = "gcs")]
        BackendKind::Gcs(options) => {
            let backend = crate::gcs::GcsBackend::new(options.clone())?;
            backend
                .check()
                .await
                .map_err(|e| Error::Config(e.to_string()))?;
            Arc::new(backend)
        }
        #[cfg(feature = "azure")]
        BackendKind::Azure(options) => {
            let backend = crate::azure::AzureBackend::new(options.clone())?;
            backend
                .check()
                .await
                .map_err(|e| Error::Config(e.to_string()))?;
            Arc::new(backend)
        }
        #[cfg(feature = "webhdfs")]
        BackendKind::Webhdfs(options) => {
            Arc::new(crate::webhdfs::WebHdfsBackend::new(options.clone())?)
        }
    })
}

fn wrap(backend: Arc<dyn Backend>, route: &BackendRoute) -> Result<Arc<dyn Backend>, Error> {
    let mut backend = backend;
    if let Some(throttle) = route.throttle {
        backend = Arc::new(Throttle::new(backend, throttle));
    }
    if let Some(timeout) = route.timeout {
        backend = Arc::new(Timeout::new(backend, timeout)?);
    }
    if let Some(retry) = route.retry {
        backend = Arc::new(Retry::new(backend, retry)?);
    }
    Ok(Arc::new(Observed::new(backend)))
}

#[cfg(test)]
mod tests {
    use kraken_core::Namespace;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        backends: Vec<BackendRoute>,
    }

    #[tokio::test]
    async fn routes_read_from_toml_and_route_by_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
[[backends]]
namespace = "library/.*"
kind = "fs"
root = "{a}"
layout = "docker_registry"
retry = {{ max_attempts = 3 }}

[[backends]]
namespace = ".*"
kind = "fs"
root = "{b}"
"#,
            a = dir.path().join("a").display(),
            b = dir.path().join("b").display(),
        );
        let file: File = toml::from_str(&text).unwrap();
        assert!(
            matches!(&file.backends[0].backend, BackendKind::Fs(fs) if fs.layout == Layout::DockerRegistry)
        );
        let backend = build_checked(&file.backends, &["team/app".into()])
            .await
            .unwrap();
        let ns = Namespace::new("team/app").unwrap();
        let body = futures::stream::iter([Ok(bytes::Bytes::from_static(b"x"))]);
        backend
            .upload(&ns, "name", 1, Box::pin(body))
            .await
            .unwrap();
        assert!(dir.path().join("b").read_dir().unwrap().count() > 0);
    }

    #[tokio::test]
    async fn bad_routes_are_start_up_errors() {
        let bad: Result<File, _> =
            toml::from_str("[[backends]]\nnamespace = \".*\"\nkind = \"tape\"\n");
        assert!(bad.unwrap_err().to_string().contains("tape"));
        let typo: Result<File, _> = toml::from_str(
            "[[backends]]\nnamespace = \".*\"\nkind = \"fs\"\nroot = \"/x\"\nlayuot = \"plain\"\n",
        );
        assert!(typo.unwrap_err().to_string().contains("layuot"));
        assert!(matches!(build(&[]).await, Err(Error::Config(_))));
        let dir = tempfile::tempdir().unwrap();
        let route = BackendRoute {
            namespace: "(".into(),
            backend: BackendKind::Fs(FsRoute {
                root: dir.path().to_owned(),
                layout: Layout::Plain,
            }),
            retry: None,
            timeout: None,
            throttle: None,
        };
        assert!(matches!(
            build(std::slice::from_ref(&route)).await,
            Err(Error::BadPattern { .. })
        ));
        let registry = BackendRoute {
            namespace: "mirror/.*".into(),
            backend: BackendKind::Registry(RegistryBackendOptions::new("http://127.0.0.1:1")),
            ..route.clone()
        };
        let fs = BackendRoute {
            namespace: ".*".into(),
            ..route
        };
        let e = build_checked(&[registry, fs], &["mirror/app".into()])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
    }
}
