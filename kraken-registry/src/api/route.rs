//! Which endpoint of the distribution API a path names.
//!
//! Repository names hold any number of `/`, so the path after `/v2/` is
//! split by hand at the last endpoint keyword rather than by a router
//! pattern with a fixed number of segments. Each part is validated here,
//! so a handler only ever sees a checked name, reference, digest or upload
//! id.

use kraken_core::{Digest, UploadId};

use crate::error::{Error, ErrorCode, Result};
use crate::reference::{Reference, RepoName};

/// An endpoint of the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`
    Ping,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(RepoName),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepoName, ManifestRef),
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepoName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    Uploads(RepoName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepoName, UploadId),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepoName, Digest),
}

/// A manifest reference as the URL gave it: checked, or kept as the text
/// of a tag that breaks the grammar, which reads answer with 404 as the
/// conformance suite expects and writes refuse with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ManifestRef {
    Valid(Reference),
    Invalid(Error),
}

impl Route {
    /// The endpoint's name, for metrics.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Route::Ping => "/v2/",
            Route::Catalog => "/v2/_catalog",
            Route::Tags(_) => "/v2/{name}/tags/list",
            Route::Manifest(..) => "/v2/{name}/manifests/{reference}",
            Route::Blob(..) => "/v2/{name}/blobs/{digest}",
            Route::Uploads(_) => "/v2/{name}/blobs/uploads/",
            Route::Upload(..) => "/v2/{name}/blobs/uploads/{id}",
            Route::Referrers(..) => "/v2/{name}/referrers/{digest}",
        }
    }

    /// Parses the path of a request (starting with `/v2/`).
    ///
    /// # Errors
    ///
    /// `NAME_INVALID`, `DIGEST_INVALID` or `BLOB_UPLOAD_UNKNOWN` for a part
    /// that breaks its grammar; `None` for a path that names no endpoint.
    pub(crate) fn parse(path: &str) -> Option<Result<Route>> {
        let rest = path.strip_prefix("/v2")?;
        let rest = match rest {
            "" | "/" => return Some(Ok(Route::Ping)),
            _ => rest.strip_prefix('/')?,
        };
        if rest == "_catalog" {
            return Some(Ok(Route::Catalog));
        }
        parse_repo_route(rest)
    }
}

fn parse_repo_route(rest: &str) -> Option<Result<Route>> {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(name_of(name).map(Route::Tags));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(name_of(name).map(Route::Uploads));
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/")
        && !id.contains('/')
    {
        return Some(name_of(name).and_then(|n| {
            let id = id.parse().map_err(|_| {
                Error::new(ErrorCode::BlobUploadUnknown, format!("no upload {id:?}"))
            })?;
            Ok(Route::Upload(n, id))
        }));
    }
    let (name, kind, last) = split_last(rest)?;
    let name = match name_of(name) {
        Ok(name) => name,
        Err(e) => return Some(Err(e)),
    };
    Some(match kind {
        "manifests" => Ok(Route::Manifest(
            name,
            match Reference::parse(last) {
                Ok(r) => ManifestRef::Valid(r),
                Err(e) => ManifestRef::Invalid(e.into()),
            },
        )),
        "blobs" => digest_of(last).map(|d| Route::Blob(name, d)),
        "referrers" => digest_of(last).map(|d| Route::Referrers(name, d)),
        _ => return None,
    })
}

/// Splits `<name>/<kind>/<last>` at the last `/`-separated keyword.
fn split_last(rest: &str) -> Option<(&str, &str, &str)> {
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    (!last.is_empty()).then_some((name, kind, last))
}

fn name_of(name: &str) -> Result<RepoName> {
    Ok(RepoName::new(name)?)
}

fn digest_of(s: &str) -> Result<Digest> {
    s.parse()
        .map_err(|e| Error::new(ErrorCode::DigestInvalid, format!("digest {s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str) -> Route {
        Route::parse(path).unwrap().unwrap()
    }

    fn repo(s: &str) -> RepoName {
        RepoName::new(s).unwrap()
    }

    #[test]
    fn every_endpoint_is_recognised() {
        let hex = "ab".repeat(32);
        let digest: Digest = format!("sha256:{hex}").parse().unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(route("/v2/"), Route::Ping);
        assert_eq!(route("/v2"), Route::Ping);
        assert_eq!(route("/v2/_catalog"), Route::Catalog);
        assert_eq!(route("/v2/a/b/tags/list"), Route::Tags(repo("a/b")));
        assert_eq!(route("/v2/a/blobs/uploads/"), Route::Uploads(repo("a")));
        assert_eq!(route("/v2/a/blobs/uploads"), Route::Uploads(repo("a")));
        assert_eq!(
            route(&format!("/v2/a/blobs/uploads/{id}")),
            Route::Upload(repo("a"), id.parse().unwrap())
        );
        assert_eq!(
            route(&format!("/v2/x/blobs/y/blobs/sha256:{hex}")),
            Route::Blob(repo("x/blobs/y"), digest)
        );
        assert_eq!(
            route(&format!("/v2/a/referrers/sha256:{hex}")),
            Route::Referrers(repo("a"), digest)
        );
        assert!(matches!(
            route("/v2/deep/er/name/manifests/v1"),
            Route::Manifest(n, ManifestRef::Valid(Reference::Tag(_))) if n == repo("deep/er/name")
        ));
    }

    #[test]
    fn bad_parts_get_their_codes() {
        let code = |path: &str| Route::parse(path).unwrap().unwrap_err().code();
        assert_eq!(code("/v2/UPPER/tags/list"), ErrorCode::NameInvalid);
        assert_eq!(code("/v2/a/blobs/sha256:xyz"), ErrorCode::DigestInvalid);
        assert_eq!(
            code("/v2/a/blobs/uploads/not-an-id"),
            ErrorCode::BlobUploadUnknown
        );
        assert!(matches!(
            route("/v2/a/manifests/.INVALID"),
            Route::Manifest(_, ManifestRef::Invalid(_))
        ));
        for none in [
            "/v1/",
            "/v2/a/unknown/x",
            "/v2/a",
            "/other",
            "/v2/a/manifests/",
        ] {
            assert!(Route::parse(none).is_none(), "{none}");
        }
    }
}
