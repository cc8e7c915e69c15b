//! Registry authentication: the challenge a `401` carries, and the tokens
//! and credentials answering it.
//!
//! The first request goes out bare. A `401` names the scheme: `Basic`
//! (send the configured credentials) or `Bearer realm=…,service=…`, the
//! token flow of the distribution spec: ask the realm for a token of
//! scope `repository:<repo>:pull`, with the credentials as basic auth when
//! there are any and anonymously when there are none, then repeat the
//! request with it. The scheme is remembered, so later requests (for any
//! repository) fetch their token first instead of collecting a `401`, and
//! nothing pings `/v2/`.
//!
//! Tokens are cached per scope until shortly before they expire
//! (`expires_in`, 60 s when absent) and shared by every request and clone
//! of the backend. A scope's fetch holds that scope's lock, so a burst of
//! requests for one repository costs one token request. A token the
//! registry refuses is dropped and fetched again once.
//!
//! Credentials go to a realm only over `https://` or on the registry's own
//! host: a registry cannot make the backend send a password in the clear
//! to a server of its choosing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};
use kraken_core::{BackendError, BackendErrorKind};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::RegistryCredentials;
use crate::status::{basic_auth, bearer_auth, status_error};
use crate::transport::{self, Transport};

/// The lifetime of a token whose answer gives none, from the spec.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The largest token answer read.
const MAX_TOKEN_ANSWER: u64 = 1024 * 1024;

/// Returns the scope of pulls from `repository`, the only scope asked for.
pub(crate) fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// How a registry wants requests authenticated, as far as it has said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    /// No `401` yet: requests go out bare.
    Unknown,
    /// `Basic`: every request carries the credentials.
    Basic,
    /// `Bearer`: every request carries a token from `realm`.
    Bearer { realm: Url, service: Option<String> },
}

/// A cached token and when to stop using it.
#[derive(Debug, Clone)]
struct Token {
    header: HeaderValue,
    refresh_at: Instant,
}

/// What to do after a `401`.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Send the request again; the next header will differ.
    Retry,
    /// Give up, for this reason.
    Refused(String),
}

/// The authentication state of one registry, shared by every request.
#[derive(Debug)]
pub(crate) struct Auth {
    registry: Url,
    credentials: Option<RegistryCredentials>,
    transport: Transport,
    request_timeout: Duration,
    scheme: Mutex<Scheme>,
    tokens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Token>>>>>,
}

impl Auth {
    /// Creates the state of `registry`, which nothing has challenged yet.
    pub(crate) fn new(
        registry: Url,
        credentials: Option<RegistryCredentials>,
        transport: Transport,
        request_timeout: Duration,
    ) -> Self {
        Auth {
            registry,
            credentials,
            transport,
            request_timeout,
            scheme: Mutex::new(Scheme::Unknown),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn scheme(&self) -> Scheme {
        self.scheme.lock().expect("auth lock").clone()
    }

    fn basic(&self) -> Option<HeaderValue> {
        let credentials = self.credentials.as_ref()?;
        Some(basic_auth(&credentials.username, &credentials.password))
    }

    /// Returns the `Authorization` value for a request in `scope`: none
    /// until challenged, then the credentials or a (cached) token.
    ///
    /// # Errors
    ///
    /// When a token is needed and the realm does not give one.
    pub(crate) async fn header(&self, scope: &str) -> Result<Option<HeaderValue>, BackendError> {
        match self.scheme() {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.basic()),
            Scheme::Bearer { realm, service } => {
                let token = self.token(&realm, service.as_deref(), scope).await?;
                Ok(Some(token))
            }
        }
    }

    /// Returns the cached token of `scope`, fetching one when there is
    /// none or it is about to expire; concurrent callers share one fetch.
    async fn token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scope: &str,
    ) -> Result<HeaderValue, BackendError> {
        let slot = self.slot(scope);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.header.clone());
        }
        let token = self.fetch_token(realm, service, scope).await?;
        let header = token.header.clone();
        *cached = Some(token);
        Ok(header)
    }

    fn slot(&self, scope: &str) -> Arc<tokio::sync::Mutex<Option<Token>>> {
        let mut tokens = self.tokens.lock().expect("token cache lock");
        tokens.entry(scope.to_owned()).or_default().clone()
    }

    /// Asks the realm for a pull token of `scope`.
    async fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scope: &str,
    ) -> Result<Token, BackendError> {
        let mut url = realm.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let what = format!("token for {scope} from {}", host_of(realm));
        let mut request = http::Request::builder().uri(url.as_str());
        let credentials = self.basic().filter(|_| self.may_send_credentials(realm));
        if let Some(basic) = &credentials {
            request = request.header(AUTHORIZATION, basic.clone());
        }
        let request = request.body(transport::empty()).map_err(|e| {
            BackendError::new(BackendErrorKind::Other, format!("{what}: bad request"))
                .with_source(e)
        })?;
        let sent = tokio::time::timeout(self.request_timeout, self.transport.send(request));
        let response = match sent.await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => return Err(e.into_backend(&what)),
            Err(_) => return Err(BackendError::unavailable(format!("{what}: no answer"))),
        };
        let status = response.status();
        if status != StatusCode::OK {
            return Err(self.token_refused(status, response.headers(), &what, credentials));
        }
        let body = self
            .transport
            .read_body(response, MAX_TOKEN_ANSWER)
            .await
            .map_err(|e| e.into_backend(&what))?;
        let token = parse_token(&body, &what)?;
        tracing::debug!(backend = "registry", scope, expires_in = ?token.1, "token fetched");
        Ok(Token {
            header: bearer_auth(&token.0),
            refresh_at: Instant::now() + refresh_after(token.1),
        })
    }

    fn token_refused(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        what: &str,
        sent: Option<HeaderValue>,
    ) -> BackendError {
        let error = status_error(status, headers, what);
        let hint = match (status.as_u16(), sent, &self.credentials) {
            (401, Some(_), Some(c)) => format!(": it refused the credentials of {}", c.username),
            (401, None, Some(_)) => {
                ": credentials are configured but not sent to a plain-http realm on another host"
                    .to_owned()
            }
            (401, None, None) => ": it gives no anonymous tokens; configure credentials".to_owned(),
            _ => return error,
        };
        let message = format!("{}{hint}", error.message());
        BackendError::new(error.kind(), message)
    }

    /// Credentials go over TLS, or in the clear to the registry's own host.
    fn may_send_credentials(&self, realm: &Url) -> bool {
        realm.scheme() == "https" || realm.host_str() == self.registry.host_str()
    }

    /// Learns from a `401` to a request in `scope` that carried `sent`, and
    /// says whether to send it again: once, when `may_retry` and the next
    /// attempt would carry something new.
    pub(crate) fn challenged(
        &self,
        headers: &HeaderMap,
        scope: &str,
        sent: Option<&HeaderValue>,
        may_retry: bool,
    ) -> Verdict {
        let challenges = challenges(headers);
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            return self.bearer_challenge(bearer, scope, sent, may_retry);
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            *self.scheme.lock().expect("auth lock") = Scheme::Basic;
            return match (&self.credentials, sent) {
                (None, _) => Verdict::Refused(
                    "the registry asks for basic credentials and none are configured".into(),
                ),
                (Some(c), Some(_)) => Verdict::Refused(format!(
                    "the registry refused the credentials of {}",
                    c.username
                )),
                (Some(_), None) if may_retry => Verdict::Retry,
                (Some(_), None) => Verdict::Refused("the registry kept asking".into()),
            };
        }
        Verdict::Refused("the registry answered 401 without a Basic or Bearer challenge".into())
    }

    fn bearer_challenge(
        &self,
        challenge: &Challenge,
        scope: &str,
        sent: Option<&HeaderValue>,
        may_retry: bool,
    ) -> Verdict {
        let realm = challenge.param("realm").and_then(|r| Url::parse(r).ok());
        let Some(realm) = realm.filter(|r| matches!(r.scheme(), "http" | "https")) else {
            return Verdict::Refused("the registry's Bearer challenge has no usable realm".into());
        };
        *self.scheme.lock().expect("auth lock") = Scheme::Bearer {
            realm,
            service: challenge.param("service").map(str::to_owned),
        };
        // A refused token may have been revoked early (a registry restarted
        // with a new key): drop it, so the retry fetches a fresh one.
        if let Some(sent) = sent {
            self.forget(scope, sent);
        }
        if may_retry {
            return Verdict::Retry;
        }
        let reason = challenge.param("error").unwrap_or("no reason given");
        let hint = if self.credentials.is_some() {
            ""
        } else {
            "; no credentials are configured"
        };
        Verdict::Refused(format!(
            "the registry refused the token for {scope} ({reason}){hint}"
        ))
    }

    /// Drops the cached token of `scope` if it is still `sent`; one that a
    /// racing request has already replaced stays.
    fn forget(&self, scope: &str, sent: &HeaderValue) {
        let slot = self.slot(scope);
        // A fetch in progress will replace the token anyway.
        if let Ok(mut cached) = slot.try_lock()
            && cached.as_ref().is_some_and(|t| t.header == sent)
        {
            *cached = None;
        }
    }
}

/// Returns how long to use a token of `lifetime`: until a tenth of it (at
/// most 10 s) is left, so no request goes out with a token about to lapse.
fn refresh_after(lifetime: Duration) -> Duration {
    lifetime - (lifetime / 10).min(Duration::from_secs(10))
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => url.to_string(),
    }
}

/// The answer of a token endpoint.
#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Returns the token of an answer and its lifetime.
fn parse_token(body: &[u8], what: &str) -> Result<(String, Duration), BackendError> {
    let answer: TokenAnswer = serde_json::from_slice(body).map_err(|e| {
        let message = format!("{what}: the answer is not a token JSON object");
        BackendError::new(BackendErrorKind::Other, message).with_source(e)
    })?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            let message = format!("{what}: the answer holds no token");
            BackendError::new(BackendErrorKind::Other, message)
        })?;
    let lifetime = answer
        .expires_in
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    /// The scheme, lowercased.
    scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    fn param(&self, name: &str) -> Option<&str> {
        let found = self
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }
}

/// Parses every challenge of every `WWW-Authenticate` header.
fn challenges(headers: &HeaderMap) -> Vec<Challenge> {
    let values = headers.get_all(WWW_AUTHENTICATE).iter();
    let values = values.filter_map(|v| v.to_str().ok());
    values.flat_map(parse_challenges).collect()
}

/// Parses one header value: `scheme k=v, k="v", other-scheme k=v`.
fn parse_challenges(value: &str) -> Vec<Challenge> {
    let mut found: Vec<Challenge> = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        let (word, after) = split_token(rest);
        let after = after.trim_start();
        if let Some(value_part) = after.strip_prefix('=').filter(|_| !found.is_empty()) {
            let (value, tail) = parse_value(value_part.trim_start());
            let params = &mut found.last_mut().expect("checked non-empty").params;
            params.push((word.to_owned(), value));
            rest = tail;
        } else if !word.is_empty() {
            found.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: Vec::new(),
            });
            rest = after;
        } else {
            // A stray separator or quote: skip one character.
            rest = &after[after.chars().next().map_or(0, char::len_utf8)..];
        }
        rest = rest.trim_start_matches([',', ' ', '\t']);
    }
    found
}

/// Splits off a token (RFC 9110 `tchar`s); empty when `s` starts with
/// anything else.
fn split_token(s: &str) -> (&str, &str) {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/:".contains(c);
    let end = s.find(|c: char| !is_tchar(c)).unwrap_or(s.len());
    s.split_at(end)
}

/// Parses a parameter value, quoted (with `\` escapes) or bare.
fn parse_value(s: &str) -> (String, &str) {
    let Some(quoted) = s.strip_prefix('"') else {
        let (value, rest) = split_token(s);
        return (value.to_owned(), rest);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => value.extend(chars.next().map(|(_, c)| c)),
            '"' => return (value, &quoted[at + 1..]),
            c => value.push(c),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let parsed = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull",error="insufficient_scope""#,
        );
        assert_eq!(parsed.len(), 1);
        let bearer = &parsed[0];
        assert_eq!(bearer.scheme, "bearer");
        assert_eq!(bearer.param("realm"), Some("https://auth.example/token"));
        assert_eq!(bearer.param("SERVICE"), Some("registry.example"));
        assert_eq!(bearer.param("scope"), Some("repository:a/b:pull"));
        assert_eq!(bearer.param("error"), Some("insufficient_scope"));

        let two = parse_challenges(r#"Basic realm="a \"b\"", Bearer realm=https://x/t, service=s"#);
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].scheme, "basic");
        assert_eq!(two[0].param("realm"), Some(r#"a "b""#));
        assert_eq!(two[1].param("realm"), Some("https://x/t"));
        assert_eq!(two[1].param("service"), Some("s"));

        assert_eq!(parse_challenges(r#"Basic realm="unterminated"#).len(), 1);
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges(r#"=",,"#).is_empty());
    }

    #[test]
    fn token_answers_parse() {
        let (token, lifetime) = parse_token(br#"{"token":"t","expires_in":300}"#, "w").unwrap();
        assert_eq!((token.as_str(), lifetime), ("t", Duration::from_secs(300)));
        let (token, lifetime) = parse_token(br#"{"access_token":"a"}"#, "w").unwrap();
        assert_eq!((token.as_str(), lifetime), ("a", DEFAULT_TOKEN_LIFETIME));
        assert!(parse_token(br#"{"token":""}"#, "w").is_err());
        assert!(parse_token(b"not json", "w").is_err());
    }

    #[test]
    fn tokens_are_refreshed_before_they_lapse() {
        assert_eq!(
            refresh_after(Duration::from_secs(60)),
            Duration::from_secs(54)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(300)),
            Duration::from_secs(290)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(1)),
            Duration::from_millis(900)
        );
    }
}
