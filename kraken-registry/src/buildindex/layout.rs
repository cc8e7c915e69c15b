//! How build-index's state is spelled as backend objects and database
//! rows: one place for the names and encodings, so the write-back, the
//! fallback reads, the recovery after a wipe and the local tables agree.
//!
//! | what | namespace | object name | content |
//! |---|---|---|---|
//! | tag | the repo | `<repo>:<tag>` | the digest text, `sha256:...` |
//! | manifest record | the repo | `<repo>@<digest>` | [`ManifestRecord`] as JSON |
//! | catalog marker | the catalog namespace | `<repo>` | the repo name |
//!
//! A deleted tag or record is written as an empty object: the backend has
//! no delete, and no digest or JSON document is empty, so an empty body
//! can only mean "deleted". A tag object is exactly what a `registry`
//! pull-through backend answers for `<repo>:<tag>`, so an upstream
//! registry reads the same way as our own backend.

use bytes::Bytes;
use kraken_core::{BackendError, BackendErrorKind, Digest};

use super::ManifestRecord;
use crate::reference::{RepoName, Tag};

/// The object (and row) name of a tag.
pub(crate) fn tag_name(repo: &RepoName, tag: &Tag) -> String {
    format!("{repo}:{tag}")
}

/// The prefix every tag object of `repo` starts with.
pub(crate) fn tag_prefix(repo: &RepoName) -> String {
    format!("{repo}:")
}

/// The object (and row) name of a manifest record.
pub(crate) fn record_name(repo: &RepoName, digest: &Digest) -> String {
    format!("{repo}@{digest}")
}

/// The prefix every record object of `repo` starts with.
pub(crate) fn record_prefix(repo: &RepoName) -> String {
    format!("{repo}@")
}

/// Splits a tag row name; `None` for one that is not `<repo>:<tag>`.
/// Neither part may hold `:`, so the split is unambiguous.
pub(crate) fn parse_tag_name(name: &str) -> Option<(RepoName, Tag)> {
    let (repo, tag) = name.split_once(':')?;
    Some((RepoName::new(repo).ok()?, Tag::new(tag).ok()?))
}

/// Splits a record row name; `None` for one that is not `<repo>@<digest>`.
pub(crate) fn parse_record_name(name: &str) -> Option<(RepoName, Digest)> {
    let (repo, digest) = name.split_once('@')?;
    Some((RepoName::new(repo).ok()?, digest.parse().ok()?))
}

/// A tag's content: the digest text, or empty when deleted.
pub(crate) fn encode_tag(digest: Option<&Digest>) -> Bytes {
    digest.map_or_else(Bytes::new, |d| Bytes::from(d.to_string()))
}

/// Reads a tag's content; surrounding whitespace is forgiven, as files
/// written by hand end in a newline.
///
/// # Errors
///
/// `Corrupt` when the content is neither empty nor a digest.
pub(crate) fn decode_tag(bytes: &[u8]) -> Result<Option<Digest>, BackendError> {
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("tag is not text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|e| corrupt(&format!("tag content is not a digest: {e}")))
}

/// A record's content: its JSON, or empty when deleted.
pub(crate) fn encode_record(record: Option<&ManifestRecord>) -> Bytes {
    record.map_or_else(Bytes::new, |r| {
        Bytes::from(serde_json::to_vec(r).expect("a record always serializes"))
    })
}

/// Reads a record's content.
///
/// # Errors
///
/// `Corrupt` when the content is neither empty nor a record.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<Option<ManifestRecord>, BackendError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| corrupt(&format!("manifest record is not valid: {e}")))
}

fn corrupt(message: &str) -> BackendError {
    BackendError::new(BackendErrorKind::Corrupt, message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn names_split_back_into_their_parts() {
        let repo = RepoName::new("library/ubuntu").unwrap();
        let tag = Tag::new("22.04").unwrap();
        let digest = Digest::sha256_of(b"m");
        let name = tag_name(&repo, &tag);
        assert_eq!(name, "library/ubuntu:22.04");
        assert!(name.starts_with(&tag_prefix(&repo)));
        assert_eq!(parse_tag_name(&name), Some((repo.clone(), tag)));
        let name = record_name(&repo, &digest);
        assert!(name.starts_with(&record_prefix(&repo)));
        assert_eq!(parse_record_name(&name), Some((repo, digest)));
        assert_eq!(parse_tag_name("Bad:tag"), None);
        assert_eq!(parse_record_name("repo@sha256:short"), None);
    }

    #[test]
    fn empty_content_is_a_tombstone() {
        let digest = Digest::sha256_of(b"m");
        assert_eq!(
            decode_tag(&encode_tag(Some(&digest))).unwrap(),
            Some(digest)
        );
        assert_eq!(decode_tag(&encode_tag(None)).unwrap(), None);
        let by_hand = format!("{digest}\n");
        assert_eq!(decode_tag(by_hand.as_bytes()).unwrap(), Some(digest));
        assert!(decode_tag(b"latest").is_err());
        let record = ManifestRecord {
            digest,
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 3,
            subject: None,
            artifact_type: Some("x/y".into()),
            annotations: BTreeMap::from([("a".into(), "b".into())]),
        };
        let bytes = encode_record(Some(&record));
        assert_eq!(decode_record(&bytes).unwrap(), Some(record));
        assert_eq!(decode_record(&encode_record(None)).unwrap(), None);
        assert!(decode_record(b"{").is_err());
    }
}
