//! A backend on a Google Cloud Storage bucket, through `object_store`
//! (feature `gcs`).
//!
//! Keys, uploads and the docker/distribution layout are those of every
//! object-store backend here (see `crate::object`); requests go over TLS
//! on rustls and ring, and service-account tokens are signed on ring.
//!
//! # Credentials
//!
//! A service account key (JSON text or a file); with `from_env`, the
//! standard `GOOGLE_*` variables and application default credentials,
//! then the metadata server of a GCE or GKE instance; `anonymous` fetches
//! nothing, for emulators.
//!
//! # Limitations
//!
//! - Compiled, not tested against a server: object_store speaks GCS's XML
//!   API, and the one emulator the package registries offer
//!   (`gcp-storage-emulator` on PyPI) lacks `HEAD`, XML listing, and the
//!   `ETag` and `Last-Modified` headers object_store requires. The keys,
//!   layouts and uploads are the shared object-store code that the S3 and
//!   Azure backends are tested with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::{ClientOptions, RetryConfig, StaticCredentialProvider};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::layout::Layout;
use crate::object::client::Connector;
use crate::object::{ObjectBackend, Placement, Setup, delegate_backend};
use crate::transport::TlsOptions;

/// Options of the GCS backend, as they appear in config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsBackendOptions {
    /// The bucket holding every object.
    pub bucket: String,
    /// Another endpoint than Google's, such as an emulator's
    /// `http://127.0.0.1:9023`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// A service account key, as its JSON text.
    #[serde(default)]
    pub service_account_key: Option<String>,
    /// A service account key file, read when the backend is built.
    #[serde(default)]
    pub service_account_path: Option<String>,
    /// Reads the standard `GOOGLE_*` environment and application default
    /// credentials before applying these options; off by default, so a
    /// library never reads the environment unasked.
    #[serde(default)]
    pub from_env: bool,
    /// Fetches no credentials and sends an empty token, for emulators,
    /// which check none.
    #[serde(default)]
    pub anonymous: bool,
    /// A key prefix under which every object is kept; the bucket's root
    /// when empty.
    #[serde(default)]
    pub prefix: String,
    /// How names map to keys: `plain` or `docker_registry`.
    #[serde(default)]
    pub layout: Layout,
    /// Uploads larger than this are multipart uploads. Default `16MiB`.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    /// The part size of multipart uploads, at least 5 MiB. Default `8MiB`.
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Allows a plain `http://` base URL, for an emulator on loopback.
    #[serde(default)]
    pub allow_http: bool,
    /// Retries inside the client before a failure is returned. Default 3.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// How long connecting may take. Default `5s`.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Which servers to trust on `https://`.
    #[serde(default)]
    pub tls: TlsOptions,
}

fn default_multipart_threshold() -> ByteSize {
    ByteSize::mib(16)
}

fn default_part_size() -> ByteSize {
    ByteSize::mib(8)
}

fn default_max_retries() -> usize {
    3
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

impl GcsBackendOptions {
    /// Creates options for `bucket` with every default.
    pub fn new(bucket: impl Into<String>) -> Self {
        GcsBackendOptions {
            bucket: bucket.into(),
            base_url: None,
            service_account_key: None,
            service_account_path: None,
            from_env: false,
            anonymous: false,
            prefix: String::new(),
            layout: Layout::Plain,
            multipart_threshold: default_multipart_threshold(),
            part_size: default_part_size(),
            allow_http: false,
            max_retries: default_max_retries(),
            connect_timeout: default_connect_timeout(),
            tls: TlsOptions::default(),
        }
    }

    /// Checks the options for values GCS or the client would refuse later.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the first bad option.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |option, reason: &str| {
            Err(Error::InvalidOption {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.bucket.is_empty() {
            return bad("bucket", "must not be empty");
        }
        match self.base_url.as_deref().map(url::Url::parse) {
            Some(Err(_)) => return bad("base_url", "is not a URL"),
            Some(Ok(url)) if url.scheme() == "http" && !self.allow_http => {
                return bad("base_url", "is plain http; set allow_http to use it");
            }
            Some(Ok(url)) if !matches!(url.scheme(), "http" | "https") => {
                return bad("base_url", "must be an http:// or https:// URL");
            }
            _ => {}
        }
        let keys = [&self.service_account_key, &self.service_account_path];
        if keys.iter().all(|k| k.is_some()) {
            return bad("service_account_key", "conflicts with service_account_path");
        }
        if self.anonymous && keys.iter().any(|k| k.is_some()) {
            return bad("anonymous", "conflicts with a service account");
        }
        if self.part_size < ByteSize::mib(5) {
            return bad("part_size", "must be at least 5 MiB");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must not be zero");
        }
        self.tls.validate()
    }

    fn builder(&self) -> GoogleCloudStorageBuilder {
        let mut builder = if self.from_env {
            GoogleCloudStorageBuilder::from_env()
        } else {
            GoogleCloudStorageBuilder::new()
        };
        builder = builder
            .with_client_options(ClientOptions::new().with_allow_http(self.allow_http))
            .with_bucket_name(&self.bucket)
            .with_retry(RetryConfig {
                max_retries: self.max_retries,
                ..RetryConfig::default()
            });
        if let Some(url) = &self.base_url {
            builder = builder.with_base_url(url);
        }
        if self.anonymous {
            // object_store's `skip_signature` still fetches a token, so
            // a fixed empty one stands in.
            let empty = GcpCredential {
                bearer: String::new(),
            };
            builder = builder.with_credentials(Arc::new(StaticCredentialProvider::new(empty)));
        }
        if let Some(key) = &self.service_account_key {
            builder = builder.with_service_account_key(key);
        }
        if let Some(path) = &self.service_account_path {
            builder = builder.with_service_account_path(path);
        }
        builder
    }
}

impl fmt::Debug for GcsBackendOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.service_account_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("GcsBackendOptions")
            .field("bucket", &self.bucket)
            .field("base_url", &self.base_url)
            .field("service_account_key", &key)
            .field("service_account_path", &self.service_account_path)
            .field("from_env", &self.from_env)
            .field("anonymous", &self.anonymous)
            .field("prefix", &self.prefix)
            .field("layout", &self.layout)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("part_size", &self.part_size)
            .field("allow_http", &self.allow_http)
            .field("max_retries", &self.max_retries)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A [`Backend`](kraken_core::Backend) keeping objects in one GCS bucket.
#[derive(Debug, Clone)]
pub struct GcsBackend(ObjectBackend, Setup);

impl GcsBackend {
    /// Builds the backend; no request is made until the first operation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the options do not validate or the
    /// client refuses them (a malformed service account key, for one).
    pub fn new(options: GcsBackendOptions) -> Result<Self, Error> {
        options.validate()?;
        let connector = Connector::new(options.connect_timeout, &options.tls)?;
        let store = options
            .builder()
            .with_http_connector(connector)
            .build()
            .map_err(|e| Error::InvalidOption {
                option: "gcs",
                reason: e.to_string(),
            })?;
        tracing::info!(backend = "gcs", bucket = %options.bucket, "backend configured");
        let setup = setup(&options);
        let placement = Placement {
            prefix: options.prefix,
            layout: options.layout,
            multipart_threshold: options.multipart_threshold,
            part_size: options.part_size,
        };
        let backend = ObjectBackend::new("gcs", Arc::new(store), placement);
        Ok(GcsBackend(backend, setup))
    }

    /// Lists the bucket once, so a missing one or refused credentials show
    /// at start-up.
    ///
    /// # Errors
    ///
    /// `NotFound` when it does not exist, `Unauthorized` when the
    /// credentials are refused, each with a message saying what to set;
    /// any other failure of the listing.
    pub async fn check(&self) -> Result<(), kraken_core::BackendError> {
        self.0.check(&self.1).await
    }
}

/// Describes the store and the source of credentials for `check`.
fn setup(options: &GcsBackendOptions) -> Setup {
    let credentials = match (
        &options.service_account_key,
        &options.service_account_path,
        options.anonymous,
        options.from_env,
    ) {
        (Some(_), _, _, _) => "service account key".to_owned(),
        (_, Some(path), _, _) => format!("service account key in {path}"),
        (_, _, true, _) => "empty token (anonymous)".to_owned(),
        (_, _, _, true) => {
            "credentials from the GOOGLE_* environment or the metadata server".to_owned()
        }
        _ => "metadata-server credentials (no key is configured)".to_owned(),
    };
    Setup {
        store: format!(
            "bucket `{}` at {}",
            options.bucket,
            options.base_url.as_deref().unwrap_or("Google")
        ),
        credentials,
        fix: "set service_account_key or service_account_path, or from_env to read \
              GOOGLE_APPLICATION_CREDENTIALS, or run with a service account attached",
    }
}

delegate_backend!(GcsBackend);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate_and_hide_the_key() {
        GcsBackendOptions::new("b").validate().unwrap();
        type Break = fn(&mut GcsBackendOptions);
        let cases: [(&str, Break); 5] = [
            ("bucket", |o| o.bucket.clear()),
            ("base_url", |o| {
                o.base_url = Some("http://127.0.0.1:1".into())
            }),
            ("base_url", |o| o.base_url = Some("not a url".into())),
            ("anonymous", |o| {
                o.anonymous = true;
                o.service_account_key = Some("{}".into());
            }),
            ("part_size", |o| o.part_size = ByteSize::mib(1)),
        ];
        for (option, break_it) in cases {
            let mut o = GcsBackendOptions::new("b");
            break_it(&mut o);
            match o.validate() {
                Err(Error::InvalidOption { option: got, .. }) => assert_eq!(got, option),
                other => panic!("{option}: expected InvalidOption, got {other:?}"),
            }
        }
        let parsed: GcsBackendOptions = serde_json::from_str(
            r#"{"bucket": "b", "service_account_key": "{\"private_key\": \"s3cr3t\"}"}"#,
        )
        .unwrap();
        assert!(!format!("{parsed:?}").contains("s3cr3t"));
        assert!(serde_json::from_str::<GcsBackendOptions>(r#"{"bucket":"b","x":1}"#).is_err());
    }
}
