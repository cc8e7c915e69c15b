//! Listings: tags of a repository, the catalog of repositories, and the
//! referrers of a manifest.
//!
//! Tag lists and the catalog are sorted in byte order and paginated with
//! `n` (page size; 0 gives an empty page) and `last` (start strictly after
//! it), with a `Link: <...>; rel="next"` header while more remain.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kraken_core::Digest;
use serde::Serialize;

use super::{Query, Registry};
use crate::error::{Error, ErrorCode, Result};
use crate::manifest::{Descriptor, media_type};
use crate::reference::RepoName;

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<&'a str>,
}

#[derive(Serialize)]
struct Catalog<'a> {
    repositories: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerIndex {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

pub(super) async fn tags(registry: &Registry, repo: &RepoName, query: &Query) -> Result<Response> {
    let n = page_size(query, registry.config.default_page_size)?;
    let tags = registry.index.tags(repo).await?;
    let names: Vec<&str> = tags.iter().map(|t| t.as_str()).collect();
    let (page, more) = paginate(&names, query.last.as_deref(), n);
    let body = TagList {
        name: repo.as_str(),
        tags: page.to_vec(),
    };
    let path = format!("/v2/{repo}/tags/list");
    Ok(with_link(Json(body).into_response(), &path, page, more))
}

pub(super) async fn catalog(registry: &Registry, query: &Query) -> Result<Response> {
    let n = page_size(query, registry.config.default_page_size)?;
    let repos = registry.index.catalog().await?;
    let names: Vec<&str> = repos.iter().map(|r| r.as_str()).collect();
    let (page, more) = paginate(&names, query.last.as_deref(), n);
    let body = Catalog {
        repositories: page.to_vec(),
    };
    Ok(with_link(
        Json(body).into_response(),
        "/v2/_catalog",
        page,
        more,
    ))
}

/// The page size a request asks for (`n`), `default` without one.
fn page_size(query: &Query, default: usize) -> Result<usize> {
    match &query.n {
        None => Ok(default),
        Some(n) => n.parse::<usize>().map_err(|_| {
            Error::new(
                ErrorCode::PaginationNumberInvalid,
                format!("n={n:?} is not a page size"),
            )
        }),
    }
}

/// The entries after `last`, at most `n` of them, and whether more remain.
fn paginate<'a>(sorted: &'a [&'a str], last: Option<&str>, n: usize) -> (&'a [&'a str], bool) {
    let start = match last {
        Some(last) => sorted.partition_point(|t| *t <= last),
        None => 0,
    };
    let rest = &sorted[start..];
    let page = &rest[..n.min(rest.len())];
    (page, n > 0 && rest.len() > page.len())
}

fn with_link(mut response: Response, path: &str, page: &[&str], more: bool) -> Response {
    if let (true, Some(last)) = (more, page.last()) {
        let last = crate::http::segment(last);
        let link = format!("<{path}?n={}&last={last}>; rel=\"next\"", page.len());
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

pub(super) async fn referrers(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    query: &Query,
) -> Result<Response> {
    let filter = query.artifact_type.as_deref().filter(|t| !t.is_empty());
    let manifests = registry.index.referrers(repo, digest, filter).await?;
    let body = ReferrerIndex {
        schema_version: 2,
        media_type: media_type::OCI_INDEX,
        manifests,
    };
    let mut response = Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media_type::OCI_INDEX),
    );
    if filter.is_some() {
        headers.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_n_and_last() {
        let tags = ["a", "b", "c", "d"];
        let page = |n, last| paginate(&tags, last, n);
        assert_eq!(page(100, None), (&tags[..], false));
        assert_eq!(page(2, None), (&tags[..2], true));
        assert_eq!(page(2, Some("b")), (&tags[2..], false));
        assert_eq!(page(100, Some("bb")), (&tags[2..], false));
        assert_eq!(page(0, None), (&tags[..0], false));
        assert_eq!(page(9, Some("d")), (&tags[4..], false));
        let query = Query {
            n: Some("-1".into()),
            ..Query::default()
        };
        let e = page_size(&query, 100).unwrap_err();
        assert_eq!(e.code(), ErrorCode::PaginationNumberInvalid);
    }

    #[test]
    fn the_link_names_the_next_page() {
        let response = with_link(().into_response(), "/v2/a/tags/list", &["x", "y"], true);
        assert_eq!(
            response.headers()[header::LINK],
            "</v2/a/tags/list?n=2&last=y>; rel=\"next\""
        );
        let response = with_link(().into_response(), "/v2/a/tags/list", &["x"], false);
        assert!(!response.headers().contains_key(header::LINK));
    }
}
