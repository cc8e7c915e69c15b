//! The registry backend's options, as they appear in config.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use url::Url;

use super::reference::check_repository;
use crate::Error;
use crate::transport::TlsOptions;

/// Options of the registry backend, as they appear in config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryBackendOptions {
    /// The registry's base URL, such as `https://registry-1.docker.io`;
    /// requests go to `<url>/v2/…`.
    pub url: String,
    /// Credentials for basic auth or for the token endpoint; anonymous
    /// when absent.
    #[serde(default)]
    pub credentials: Option<RegistryCredentials>,
    /// Prepended, with a `/`, to every repository: with `mirror`, the
    /// namespace `library/ubuntu` is read from `mirror/library/ubuntu`.
    #[serde(default)]
    pub repository_prefix: String,
    /// Removed, with a `/`, from the start of every namespace before it
    /// names a repository: with `docker.io`, the namespace
    /// `docker.io/library/ubuntu` is read from `library/ubuntu`. The
    /// pull-through namespaces of containerd mirror requests (`?ns=`) have
    /// this shape, so a route `namespace = "docker\\.io/.*"` to a registry
    /// backend with `strip_namespace_prefix = "docker.io"` pulls Docker Hub
    /// images through.
    #[serde(default)]
    pub strip_namespace_prefix: String,
    /// How long each step may take.
    #[serde(default)]
    pub timeouts: RegistryTimeouts,
    /// The largest manifest accepted. Default `4MiB`, distribution's own
    /// limit.
    #[serde(default = "default_max_manifest_size")]
    pub max_manifest_size: ByteSize,
    /// Which servers to trust on `https://`.
    #[serde(default)]
    pub tls: TlsOptions,
}

fn default_max_manifest_size() -> ByteSize {
    ByteSize::mib(4)
}

impl RegistryBackendOptions {
    /// Creates options for the registry at `url`, anonymous, with every
    /// default.
    pub fn new(url: impl Into<String>) -> Self {
        RegistryBackendOptions {
            url: url.into(),
            credentials: None,
            repository_prefix: String::new(),
            strip_namespace_prefix: String::new(),
            timeouts: RegistryTimeouts::default(),
            max_manifest_size: default_max_manifest_size(),
            tls: TlsOptions::default(),
        }
    }

    /// Checks the URL, prefix, timeouts and TLS options.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the first bad option.
    pub fn validate(&self) -> Result<(), Error> {
        self.base_url()?;
        let prefix = self.repository_prefix.trim_matches('/');
        if !prefix.is_empty() && check_repository(prefix).is_err() {
            return Err(invalid(
                "repository_prefix",
                "must be a repository path: lowercase components joined by `/`",
            ));
        }
        if self.max_manifest_size.as_u64() == 0 {
            return Err(invalid("max_manifest_size", "must be above zero"));
        }
        self.timeouts.validate()?;
        self.tls.validate()
    }

    pub(super) fn base_url(&self) -> Result<Url, Error> {
        let url = Url::parse(&self.url).map_err(|e| invalid("url", &format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid(
                "url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("url", "must not have a query or fragment"));
        }
        Ok(url)
    }
}

fn invalid(option: &'static str, reason: &str) -> Error {
    Error::InvalidOption {
        option,
        reason: reason.to_owned(),
    }
}

/// Credentials of a registry; `Debug` shows the user, never the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Timeouts of the registry backend; every one must be above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryTimeouts {
    /// Opening a connection, TLS included. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub connect: Duration,
    /// Waiting for a response's headers, token requests included. Default
    /// `30s`.
    #[serde(with = "humantime_serde")]
    pub request: Duration,
    /// The longest silence while reading a body. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub read_idle: Duration,
}

impl Default for RegistryTimeouts {
    fn default() -> Self {
        RegistryTimeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            read_idle: Duration::from_secs(60),
        }
    }
}

impl RegistryTimeouts {
    /// Checks every timeout is above zero.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOption`] naming the first zero timeout.
    pub fn validate(&self) -> Result<(), Error> {
        let all = [
            ("timeouts.connect", self.connect),
            ("timeouts.request", self.request),
            ("timeouts.read_idle", self.read_idle),
        ];
        match all.into_iter().find(|(_, d)| d.is_zero()) {
            Some((option, _)) => Err(invalid(option, "must be above zero")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_validate_and_hide_the_password() {
        RegistryBackendOptions::new("https://registry.example")
            .validate()
            .unwrap();
        RegistryBackendOptions::new("http://127.0.0.1:5000/")
            .validate()
            .unwrap();
        let bad = |o: RegistryBackendOptions| match o.validate() {
            Err(Error::InvalidOption { option, .. }) => option,
            other => panic!("expected InvalidOption, got {other:?}"),
        };
        assert_eq!(bad(RegistryBackendOptions::new("registry.example")), "url");
        assert_eq!(bad(RegistryBackendOptions::new("ftp://r.example")), "url");
        assert_eq!(bad(RegistryBackendOptions::new("https://r/?x=1")), "url");
        let mut o = RegistryBackendOptions::new("https://r");
        o.repository_prefix = "Mirror".into();
        assert_eq!(bad(o), "repository_prefix");
        let mut o = RegistryBackendOptions::new("https://r");
        o.timeouts.request = Duration::ZERO;
        assert_eq!(bad(o), "timeouts.request");

        let parsed: RegistryBackendOptions = serde_json::from_value(serde_json::json!({
            "url": "https://r",
            "credentials": {"username": "me", "password": "s3cr3t"},
            "timeouts": {"request": "5s"},
            "max_manifest_size": "1MiB",
        }))
        .unwrap();
        assert_eq!(parsed.timeouts.request, Duration::from_secs(5));
        assert_eq!(parsed.timeouts.connect, Duration::from_secs(5));
        assert_eq!(parsed.max_manifest_size, ByteSize::mib(1));
        let shown = format!("{parsed:?}");
        assert!(shown.contains("me") && !shown.contains("s3cr3t"), "{shown}");
        let unknown = serde_json::json!({"url": "https://r", "usernmae": "x"});
        assert!(serde_json::from_value::<RegistryBackendOptions>(unknown).is_err());
    }
}
