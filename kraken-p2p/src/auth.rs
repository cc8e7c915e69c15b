//! Write access to a component: who may upload, commit, copy and delete.
//!
//! Reads are open (content is addressed by digest and verified), writes
//! are not once tokens are configured: a request other than `GET`, `HEAD`
//! or `OPTIONS` must carry one of them, as `Authorization: Bearer <token>`
//! or as the password of `Authorization: Basic` (what `docker login` and
//! `skopeo --dest-creds user:<token>` send). Without tokens a component is
//! open, as the local cluster on loopback runs.

use std::fmt;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// A shared secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Token {
        Token(secret.into())
    }

    /// The secret, to send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The tokens a component accepts for writes; none means open.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WriteAuth {
    /// Accepted tokens; several, so one can be rotated out while the next
    /// is rolled out.
    pub tokens: Vec<Token>,
}

impl WriteAuth {
    /// Whether writes need no token.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether `headers` carry an accepted token.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(offered) = offered_token(headers) else {
            return false;
        };
        // Every token is compared, each in time independent of where the
        // bytes differ, so timing tells nothing about a token.
        self.tokens.iter().fold(false, |ok, t| {
            ok | same(t.expose().as_bytes(), offered.as_bytes())
        })
    }

    /// Checks writes (see the module docs) to `router` against these tokens;
    /// refused requests get `rejection()`.
    pub fn require_for_writes(self, router: Router, rejection: fn() -> Response) -> Router {
        if self.is_open() {
            return router;
        }
        router.layer(axum::middleware::from_fn_with_state(
            (self, rejection),
            check_writes,
        ))
    }
}

/// The token of an `Authorization` header: a bearer token, or the
/// password of basic credentials.
pub fn offered_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            text.split_once(':')
                .map(|(_, password)| password.to_owned())
        }
        _ => None,
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

async fn check_writes(
    State((auth, rejection)): State<(WriteAuth, fn() -> Response)>,
    request: Request,
    next: Next,
) -> Response {
    if is_read(request.method()) || auth.allows(request.headers()) {
        return next.run(request).await;
    }
    rejection()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn bearer_and_basic_carry_the_token() {
        let auth = WriteAuth {
            tokens: vec![Token::new("s3cret"), Token::new("next")],
        };
        assert!(auth.allows(&with("Bearer s3cret")));
        assert!(auth.allows(&with("bearer next")));
        let basic = base64::engine::general_purpose::STANDARD.encode("anyone:s3cret");
        assert!(auth.allows(&with(&format!("Basic {basic}"))));
        for bad in [
            "Bearer wrong",
            "Bearer s3cre",
            "Basic !!!",
            "Digest s3cret",
            "s3cret",
        ] {
            assert!(!auth.allows(&with(bad)), "{bad}");
        }
        assert!(!auth.allows(&HeaderMap::new()));
        assert!(WriteAuth::default().allows(&HeaderMap::new()));
        assert_eq!(format!("{:?}", Token::new("s3cret")), "Token(<redacted>)");
    }

    #[tokio::test]
    async fn only_writes_need_a_token() {
        let auth = WriteAuth {
            tokens: vec![Token::new("t")],
        };
        let app = auth.require_for_writes(
            Router::new().route("/x", get(|| async { "read" }).put(|| async { "written" })),
            || StatusCode::UNAUTHORIZED.into_response(),
        );
        let call = |method: &str, token: Option<&str>| {
            let mut request = Request::builder().method(method).uri("/x");
            if let Some(t) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        assert_eq!(call("GET", None).await.unwrap().status(), StatusCode::OK);
        assert_eq!(
            call("PUT", None).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call("PUT", Some("x")).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call("PUT", Some("t")).await.unwrap().status(),
            StatusCode::OK
        );
    }
}
