//! Manifests as the registry backend hands them on: the bytes verbatim,
//! the media type they were served as, and the digest they hash to.
//!
//! Parsing manifests belongs to `kraken-registry`; this module only
//! reads enough JSON to name a media type the upstream left out, since
//! some registries serve manifests without `Content-Type` or `mediaType`.

use bytes::Bytes;
use kraken_core::{BackendError, BackendErrorKind, Digest};
use serde::Deserialize;

/// The OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The Docker schema 2 manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// The Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Every manifest media type the backend asks for.
pub const MEDIA_TYPES: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// The `Accept` header of manifest requests: every media type above, so a
/// registry never falls back to converting to schema 1.
pub(crate) fn accept() -> String {
    MEDIA_TYPES.join(", ")
}

/// A manifest fetched from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The manifest's bytes, exactly as served.
    pub bytes: Bytes,
    /// Its media type: the `Content-Type` it was served with when that is
    /// a manifest type, else the one its JSON declares or implies.
    pub media_type: String,
    /// The digest of `bytes`, checked.
    pub digest: Digest,
}

/// The fields of a manifest that tell its type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    schema_version: Option<u64>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

/// Returns the media type of manifest `bytes` served with `content_type`.
///
/// # Errors
///
/// `Unsupported` for a schema 1 manifest (which carries no digestable
/// content identity and was deprecated years ago); `Other` for bytes that
/// are not a manifest of a known shape.
pub(crate) fn media_type(
    content_type: Option<&str>,
    bytes: &[u8],
    what: &str,
) -> Result<String, BackendError> {
    let served = content_type
        .map(|value| value.split(';').next().unwrap_or("").trim())
        .filter(|value| MEDIA_TYPES.contains(value));
    if let Some(served) = served {
        return Ok(served.to_owned());
    }
    let shape: Shape = serde_json::from_slice(bytes).map_err(|e| {
        let message = format!("{what}: the manifest is not JSON");
        BackendError::new(BackendErrorKind::Other, message).with_source(e)
    })?;
    if shape.schema_version == Some(1) {
        let message = format!(
            "{what}: the registry served a schema 1 manifest ({}), which is not supported",
            content_type.unwrap_or("no content type")
        );
        return Err(BackendError::new(BackendErrorKind::Unsupported, message));
    }
    if let Some(declared) = shape.media_type {
        return Ok(declared);
    }
    // OCI lets `mediaType` be absent; the fields tell an index from an
    // image manifest.
    match (shape.manifests, shape.layers.or(shape.config)) {
        (Some(_), None) => Ok(OCI_INDEX.to_owned()),
        (None, Some(_)) => Ok(OCI_MANIFEST.to_owned()),
        _ => Err(BackendError::new(
            BackendErrorKind::Other,
            format!("{what}: the manifest has no media type and no telling shape"),
        )),
    }
}

/// Returns whether `bytes` are a schema 2 manifest or index, as a
/// registry would accept them: how a store shared with a registry tells
/// the manifests among its blobs.
pub(crate) fn is_manifest(bytes: &[u8]) -> bool {
    if !bytes.trim_ascii_start().starts_with(b"{") {
        return false;
    }
    let Ok(shape) = serde_json::from_slice::<Shape>(bytes) else {
        return false;
    };
    shape.schema_version == Some(2) && media_type(None, bytes, "").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_told_from_other_blobs() {
        assert!(is_manifest(
            br#"{"schemaVersion":2,"config":{},"layers":[]}"#
        ));
        assert!(is_manifest(br#" {"schemaVersion":2,"manifests":[]}"#));
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{}}"#;
        assert!(!is_manifest(config));
        assert!(!is_manifest(b"\x1f\x8b gzip bytes"));
        assert!(!is_manifest(br#"{"schemaVersion":1,"fsLayers":[]}"#));
    }

    #[test]
    fn served_types_win_and_parameters_are_dropped() {
        let json = br#"{"schemaVersion":2,"mediaType":"x"}"#;
        let got = media_type(
            Some("application/vnd.oci.image.index.v1+json; x=y"),
            json,
            "w",
        );
        assert_eq!(got.unwrap(), OCI_INDEX);
    }

    #[test]
    fn missing_types_are_read_or_inferred() {
        let declared = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#;
        let got = media_type(Some("application/json"), declared, "w").unwrap();
        assert_eq!(got, DOCKER_MANIFEST);
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(media_type(None, index, "w").unwrap(), OCI_INDEX);
        let image = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(media_type(None, image, "w").unwrap(), OCI_MANIFEST);
    }

    #[test]
    fn schema_one_and_junk_are_refused() {
        let v1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let error = media_type(None, v1, "w").unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::Unsupported);
        assert!(error.message().contains("schema 1"), "{error}");
        assert_eq!(
            media_type(None, b"<html>", "w").unwrap_err().kind(),
            BackendErrorKind::Other
        );
        let both = br#"{"schemaVersion":2,"manifests":[],"layers":[]}"#;
        assert!(media_type(None, both, "w").is_err());
    }

    #[test]
    fn accept_names_every_type() {
        let accept = accept();
        for media_type in MEDIA_TYPES {
            assert!(accept.contains(media_type));
        }
    }
}
