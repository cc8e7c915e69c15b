//! A backend on an Azure Blob Storage container, through `object_store`
//! (feature `azure`).
//!
//! Keys, uploads and the docker/distribution layout are those of every
//! object-store backend here (see `crate::object`); requests go over TLS
//! on rustls and ring, and shared-key signatures are computed on ring.
//!
//! # Credentials
//!
//! The account's access key or a SAS token from the options; with
//! `from_env`, the standard `AZURE_*` variables (client secret, workload
//! identity, managed identity).
//!
//! # Limitations
//!
//! - Tested against Azurite (npm) with an access key; the Entra ID
//!   credential kinds are compiled but untested here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::{ClientOptions, RetryConfig};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::layout::Layout;
use crate::object::client::Connector;
use crate::object::{ObjectBackend, Placement, Setup, delegate_backend};
use crate::transport::TlsOptions;

/// Options of the Azure backend, as they appear in config.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureBackendOptions {
    /// The storage account.
    pub account: String,
    /// The container holding every object.
    pub container: String,
    /// The account's blob endpoint, when not
    /// `https://<account>.blob.core.windows.net`; for Azurite,
    /// `http://127.0.0.1:10000/<account>`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The account's access key (base64).
    #[serde(default)]
    pub access_key: Option<String>,
    /// A SAS token (`sv=…&sig=…`).
    #[serde(default)]
    pub sas_token: Option<String>,
    /// Reads the standard `AZURE_*` environment before applying these
    /// options; off by default, so a library never reads the environment
    /// unasked.
    #[serde(default)]
    pub from_env: bool,
    /// A key prefix under which every object is kept; the container's
    /// root when empty.
    #[serde(default)]
    pub prefix: String,
    /// How names map to keys: `plain` or `docker_registry`.
    #[serde(default)]
    pub layout: Layout,
    /// Uploads larger than this are block-list uploads. Default `16MiB`.
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold: ByteSize,
    /// The block size of large uploads. Default `8MiB`.
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Allows a plain `http://` endpoint, for Azurite on loopback.
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

impl AzureBackendOptions {
    /// Creates options for `container` in `account` with every default.
    pub fn new(account: impl Into<String>, container: impl Into<String>) -> Self {
        AzureBackendOptions {
            account: account.into(),
            container: container.into(),
            endpoint: None,
            access_key: None,
            sas_token: None,
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

    /// Checks the options for values Azure or the client would refuse.
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
        if self.account.is_empty() {
            return bad("account", "must not be empty");
        }
        if self.container.is_empty() {
            return bad("container", "must not be empty");
        }
        match self.endpoint.as_deref().map(url::Url::parse) {
            Some(Err(_)) => return bad("endpoint", "is not a URL"),
            Some(Ok(url)) if url.scheme() == "http" && !self.allow_http => {
                return bad("endpoint", "is plain http; set allow_http to use it");
            }
            Some(Ok(url)) if !matches!(url.scheme(), "http" | "https") => {
                return bad("endpoint", "must be an http:// or https:// URL");
            }
            _ => {}
        }
        if self.access_key.is_some() && self.sas_token.is_some() {
            return bad("access_key", "conflicts with sas_token");
        }
        if self.connect_timeout.is_zero() {
            return bad("connect_timeout", "must not be zero");
        }
        self.tls.validate()
    }

    fn builder(&self) -> MicrosoftAzureBuilder {
        let mut builder = if self.from_env {
            MicrosoftAzureBuilder::from_env()
        } else {
            MicrosoftAzureBuilder::new()
        };
        builder = builder
            .with_client_options(ClientOptions::new().with_allow_http(self.allow_http))
            .with_account(&self.account)
            .with_container_name(&self.container)
            .with_retry(RetryConfig {
                max_retries: self.max_retries,
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(key) = &self.access_key {
            builder = builder.with_access_key(key);
        }
        if let Some(sas) = &self.sas_token {
            let pairs = url::form_urlencoded::parse(sas.trim_start_matches('?').as_bytes());
            builder = builder.with_sas_authorization(pairs.into_owned().collect::<Vec<_>>());
        }
        builder
    }
}

impl fmt::Debug for AzureBackendOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("AzureBackendOptions")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("endpoint", &self.endpoint)
            .field("access_key", &redact(&self.access_key))
            .field("sas_token", &redact(&self.sas_token))
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

/// A [`Backend`](kraken_core::Backend) keeping objects in one Azure Blob
/// Storage container.
#[derive(Debug, Clone)]
pub struct AzureBackend(ObjectBackend, Setup);

impl AzureBackend {
    /// Builds the backend; no request is made until the first operation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] when the options do not validate or the
    /// client refuses them (an access key that is not base64, for one).
    pub fn new(options: AzureBackendOptions) -> Result<Self, Error> {
        options.validate()?;
        let connector = Connector::new(options.connect_timeout, &options.tls)?;
        let store = options
            .builder()
            .with_http_connector(connector)
            .build()
            .map_err(|e| Error::InvalidOption {
                option: "azure",
                reason: e.to_string(),
            })?;
        tracing::info!(
            backend = "azure",
            account = %options.account,
            container = %options.container,
            "backend configured"
        );
        let setup = setup(&options);
        let placement = Placement {
            prefix: options.prefix,
            layout: options.layout,
            multipart_threshold: options.multipart_threshold,
            part_size: options.part_size,
        };
        let backend = ObjectBackend::new("azure", Arc::new(store), placement);
        Ok(AzureBackend(backend, setup))
    }

    /// Lists the container once, so a missing one or refused credentials show
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
fn setup(options: &AzureBackendOptions) -> Setup {
    let credentials = match (&options.access_key, &options.sas_token, options.from_env) {
        (Some(_), _, _) => "account access key".to_owned(),
        (_, Some(_), _) => "SAS token".to_owned(),
        (_, _, true) => "credentials from the AZURE_* environment".to_owned(),
        _ => "default credentials (no key is configured)".to_owned(),
    };
    Setup {
        store: format!(
            "container `{}` of account `{}`",
            options.container, options.account
        ),
        credentials,
        fix: "set access_key or sas_token, or from_env to read AZURE_STORAGE_ACCESS_KEY, or \
              AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET",
    }
}

delegate_backend!(AzureBackend);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate_and_hide_secrets() {
        AzureBackendOptions::new("a", "c").validate().unwrap();
        type Break = fn(&mut AzureBackendOptions);
        let cases: [(&str, Break); 5] = [
            ("account", |o| o.account.clear()),
            ("container", |o| o.container.clear()),
            ("endpoint", |o| {
                o.endpoint = Some("http://127.0.0.1:1/a".into())
            }),
            ("endpoint", |o| o.endpoint = Some("ftp://x".into())),
            ("access_key", |o| {
                o.access_key = Some("k".into());
                o.sas_token = Some("sv=1".into());
            }),
        ];
        for (option, break_it) in cases {
            let mut o = AzureBackendOptions::new("a", "c");
            break_it(&mut o);
            match o.validate() {
                Err(Error::InvalidOption { option: got, .. }) => assert_eq!(got, option),
                other => panic!("{option}: expected InvalidOption, got {other:?}"),
            }
        }
        let parsed: AzureBackendOptions = serde_json::from_str(
            r#"{"account": "a", "container": "c", "access_key": "s3cr3t", "sas_token": null}"#,
        )
        .unwrap();
        assert!(!format!("{parsed:?}").contains("s3cr3t"));
    }
}
