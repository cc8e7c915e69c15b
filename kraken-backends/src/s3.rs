//! A backend on Amazon S3 or an S3-compatible store (Garage, Ceph RGW,
//! MinIO), through the `object_store` crate, so a cluster can keep its
//! blobs where it already keeps everything else.
//!
//! Keys, uploads and the docker/distribution layout are those of every
//! object-store backend here (see `crate::object`). Requests are signed
//! (SigV4) on ring; `https://` endpoints and AWS itself go over TLS on
//! rustls and ring.
//!
//! # Credentials
//!
//! Static keys from the options; with `from_env`, the standard `AWS_*`
//! environment (keys, web identity, container credentials); with neither,
//! the instance metadata service (an EC2 instance role).
//! [`S3Backend::check`] tries them once at start-up.
//!
//! # Limitations
//!
//! - Only static keys are tested; the environment and instance-role chain
//!   is untested here, as no metadata service runs on a test machine.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ClientOptions, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::layout::Layout;
use crate::object::client::Connector;
use crate::object::{ObjectBackend, Placement, Setup, delegate_backend};
use crate::transport::TlsOptions;

/// S3's smallest part (but the last) of a multipart upload.
const MIN_PART: ByteSize = ByteSize::mib(5);
/// S3's largest part.
const MAX_PART: ByteSize = ByteSize::gib(5);

/// Options of the S3 backend, as they appear in config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3BackendOptions {
    /// The bucket holding every object.
    pub bucket: String,
    /// The region requests are signed for; S3-compatible servers usually
    /// want `us-east-1` unless configured otherwise.
    pub region: String,
    /// The URL of an S3-compatible server, addressed path-style
    /// (`<endpoint>/<bucket>/<key>`); AWS's own endpoint for `region` when
    /// absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The access key id; with `secret_access_key`, overrides any other
    /// source of credentials.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret matching `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// A session token for temporary credentials.
    #[serde(default)]
    pub session_token: Option<String>,
    /// Reads the standard `AWS_*` environment variables (credentials, web
    /// identity, container credentials) before applying these options.
    /// Off by default, so a library never reads the environment unasked;
    /// without it and without keys, credentials come from the instance's
    /// metadata service (an EC2 instance role).
    #[serde(default)]
    pub from_env: bool,
    /// A key prefix under which every object is kept, such as
    /// `kraken/prod`; the bucket's root when empty.
    #[serde(default)]
    pub prefix: String,
    /// How names map to keys: `plain` (the default) or `docker_registry`,
    /// to share the bucket with a registry whose `rootdirectory` is
    /// `prefix`.
    #[serde(default)]
    pub layout: Layout,
    /// Uploads larger than this are multipart uploads.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    /// The part size of multipart uploads, at least 5 MiB (S3's minimum).
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Allows a plain `http://` endpoint, for a server on loopback.
    #[serde(default)]
    pub allow_http: bool,
    /// How often a failed request is retried inside the client before the
    /// failure is returned; 0 leaves retries to the `Retry` wrapper.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// How long connecting may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Which servers to trust on `https://` endpoints.
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

impl S3BackendOptions {
    /// Creates options for `bucket` in `region` with every default, which
    /// address AWS itself.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> Self {
        S3BackendOptions {
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            from_env: false,
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

    /// Checks the options for values S3 or the client would refuse later.
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
        if self.region.is_empty() {
            return bad("region", "must not be empty");
        }
        match &self.endpoint {
            None => {}
            Some(e) if url::Url::parse(e).is_err() => {
                return bad("endpoint", "is not a URL");
            }
            Some(e) if e.starts_with("https://") => {}
            Some(e) if !e.starts_with("http://") => {
                return bad("endpoint", "must be an http:// or https:// URL");
            }
            Some(_) if !self.allow_http => {
                return bad("endpoint", "is plain http; set allow_http to use it");
            }
            Some(_) => {}
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return bad("access_key_id", "needs secret_access_key, and the reverse");
        }
        if self.session_token.is_some() && self.access_key_id.is_none() {
            return bad("session_token", "needs access_key_id");
        }
        if !self.prefix.is_empty() && Path::parse(self.prefix.trim_matches('/')).is_err() {
            return bad("prefix", "must be `/`-separated non-empty segments");
        }
        if self.part_size < MIN_PART || self.part_size > MAX_PART {
            return bad("part_size", "must be between 5 MiB and 5 GiB");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must not be zero");
        }
        self.tls.validate()
    }
}

impl fmt::Debug for S3BackendOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3BackendOptions")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &redact(&self.access_key_id))
            .field("secret_access_key", &redact(&self.secret_access_key))
            .field("session_token", &redact(&self.session_token))
            .field("from_env", &self.from_env)
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
/// A [`Backend`](kraken_core::Backend) keeping objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Backend(ObjectBackend, Setup);

impl S3Backend {
    /// Builds the backend; no request is made until the first operation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the options do not validate or the
    /// client refuses them.
    pub fn new(options: S3BackendOptions) -> Result<Self, Error> {
        options.validate()?;
        let connector = Connector::new(options.connect_timeout, &options.tls)?;
        let store = builder(&options)
            .with_http_connector(connector)
            .build()
            .map_err(|e| Error::InvalidOption {
                option: "s3",
                reason: e.to_string(),
            })?;
        tracing::info!(
            backend = "s3",
            bucket = %options.bucket,
            endpoint = options.endpoint.as_deref().unwrap_or("aws"),
            "backend configured"
        );
        let setup = setup(&options);
        let placement = Placement {
            prefix: options.prefix,
            layout: options.layout,
            multipart_threshold: options.multipart_threshold,
            part_size: options.part_size,
        };
        let backend = ObjectBackend::new("s3", Arc::new(store), placement);
        Ok(S3Backend(backend, setup))
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
fn setup(options: &S3BackendOptions) -> Setup {
    let credentials = match (&options.access_key_id, options.from_env) {
        (Some(id), _) => format!("static keys of access key {id}"),
        (None, true) => "credentials from the AWS_* environment or the instance role".to_owned(),
        (None, false) => "instance-role credentials (no keys are configured)".to_owned(),
    };
    Setup {
        store: format!(
            "bucket `{}` at {} (region {})",
            options.bucket,
            options.endpoint.as_deref().unwrap_or("AWS"),
            options.region
        ),
        credentials,
        fix: "set access_key_id and secret_access_key, or from_env to read AWS_ACCESS_KEY_ID \
              and AWS_SECRET_ACCESS_KEY (or a web identity), or run with an instance role",
    }
}

delegate_backend!(S3Backend);

/// Turns the options into a client builder; reads the environment only
/// when `from_env` asks for it.
fn builder(options: &S3BackendOptions) -> AmazonS3Builder {
    let mut builder = if options.from_env {
        AmazonS3Builder::from_env()
    } else {
        AmazonS3Builder::new()
    };
    // Client options first: `with_client_options` replaces them whole,
    // `allow_http` included. The connect timeout is the connector's.
    builder = builder
        .with_client_options(ClientOptions::new().with_allow_http(options.allow_http))
        .with_bucket_name(&options.bucket)
        .with_region(&options.region)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig {
            max_retries: options.max_retries,
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let (Some(id), Some(secret)) = (&options.access_key_id, &options.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
    }
    if let Some(token) = &options.session_token {
        builder = builder.with_token(token);
    }
    builder
}

#[cfg(test)]
mod tests {
    use kraken_core::Namespace;

    use super::*;

    fn options() -> S3BackendOptions {
        S3BackendOptions {
            endpoint: Some("http://127.0.0.1:3900".into()),
            allow_http: true,
            access_key_id: Some("AK".into()),
            secret_access_key: Some("very secret".into()),
            ..S3BackendOptions::new("bucket", "us-east-1")
        }
    }

    #[test]
    fn options_validate() {
        options().validate().unwrap();
        type Break = fn(&mut S3BackendOptions);
        let cases: [(&str, Break); 8] = [
            ("endpoint", |o| o.endpoint = Some("http//s3.example".into())),
            ("tls", |o| o.tls.builtin_roots = false),
            ("bucket", |o| o.bucket.clear()),
            ("endpoint", |o| o.allow_http = false),
            ("endpoint", |o| o.endpoint = Some("ftp://x".into())),
            ("access_key_id", |o| o.secret_access_key = None),
            ("part_size", |o| o.part_size = ByteSize::mib(1)),
            ("prefix", |o| o.prefix = "a//b".into()),
        ];
        for (option, break_it) in cases {
            let mut o = options();
            break_it(&mut o);
            match o.validate() {
                Err(Error::InvalidOption { option: got, .. }) => assert_eq!(got, option),
                other => panic!("{option}: expected InvalidOption, got {other:?}"),
            }
        }
    }

    #[test]
    fn options_parse_with_defaults_and_hide_secrets() {
        let o: S3BackendOptions = serde_json::from_str(
            r#"{"bucket": "b", "region": "r", "secret_access_key": "s3cr3t",
                "access_key_id": "AK", "part_size": "5 MiB"}"#,
        )
        .unwrap();
        assert_eq!(o.part_size, ByteSize::mib(5));
        assert_eq!(o.multipart_threshold, default_multipart_threshold());
        assert!(!o.from_env);
        assert!(!format!("{o:?}").contains("s3cr3t"));
        let unknown =
            serde_json::from_str::<S3BackendOptions>(r#"{"bucket":"b","region":"r","x":1}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn keys_keep_namespaces_apart() {
        let backend = S3Backend::new(S3BackendOptions {
            prefix: "/kraken/prod/".into(),
            ..options()
        })
        .unwrap();
        let ns = Namespace::new("library/ubuntu").unwrap();
        let path = backend.0.object_path(&ns, "a/../b:latest").unwrap();
        assert_eq!(
            path.as_ref(),
            "kraken/prod/library%2Fubuntu/a%2F..%2Fb:latest"
        );
        assert!(backend.0.object_path(&ns, "").is_err());
    }
}
