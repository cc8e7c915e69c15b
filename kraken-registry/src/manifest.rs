//! Image manifests and indexes, Docker and OCI, read for what they refer
//! to and never rewritten.
//!
//! A manifest's bytes are stored and served as pushed; this module only
//! reads them to find the media type to serve, the blobs and child
//! manifests they depend on, and the `subject` and `artifactType` the
//! referrers API lists. Parsing is tolerant: unknown fields are ignored and
//! a missing `mediaType` is inferred from the shape (a `manifests` list is
//! an index, a `config` an image manifest), as manifests from some
//! registries lack it. Docker schema 1 is refused with a message that says
//! so.

use std::collections::BTreeMap;

use kraken_core::Digest;
use serde::{Deserialize, Serialize};

/// Media types this registry knows by name.
pub mod media_type {
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list (multi-platform).
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// OCI image manifest, also used by artifacts.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker schema 1, unsigned; refused.
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
    /// Docker schema 1, signed; refused.
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";
    /// Docker foreign layer: lives at its `urls`, never in a registry.
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    /// Prefix of the OCI non-distributable layer types.
    pub const OCI_NONDISTRIBUTABLE_PREFIX: &str =
        "application/vnd.oci.image.layer.nondistributable";

    /// Every manifest type a pull asks for, for `Accept` headers.
    pub const ACCEPT_ALL: [&str; 4] = [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

    /// Whether `media_type` names a manifest or index (not a blob).
    pub fn is_manifest(media_type: &str) -> bool {
        ACCEPT_ALL.contains(&media_type)
    }
}

/// Why bytes are not a manifest this registry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("manifest is not valid: {0}")]
    Invalid(String),
    /// Docker schema 1, which current clients no longer produce.
    #[error("docker schema 1 manifests are not supported; push the image as schema 2 or OCI")]
    Schema1,
}

/// A reference from a manifest to a blob or another manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the target is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// For artifacts: what kind of artifact the target is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The target's annotations, as the manifest lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Places outside the registry the blob can be fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// For index entries: the platform of the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

impl Descriptor {
    /// Whether the target lives outside registries (a foreign or
    /// non-distributable layer), so pushes need not carry it.
    pub fn is_external(&self) -> bool {
        !self.urls.is_empty()
            || self.media_type == media_type::DOCKER_FOREIGN_LAYER
            || self
                .media_type
                .starts_with(media_type::OCI_NONDISTRIBUTABLE_PREFIX)
    }
}

/// Whether a manifest lists blobs (an image or artifact) or other
/// manifests (an index or manifest list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// Config and layers.
    Image,
    /// Child manifests.
    Index,
}

/// What a manifest says, read from its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The media type to serve it with: its own `mediaType`, else the one
    /// it was pushed with, else the one its shape implies.
    pub media_type: String,
    /// Image or index.
    pub kind: ManifestKind,
    /// The config blob of an image.
    pub config: Option<Descriptor>,
    /// The layers of an image.
    pub layers: Vec<Descriptor>,
    /// The children of an index.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs, ...).
    pub subject: Option<Descriptor>,
    /// The artifact type it declares.
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: BTreeMap<String, String>,
}

/// The fields read from any manifest or index; everything else is ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<u32>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    /// Schema 1 has these instead of descriptors.
    fs_layers: Option<serde_json::Value>,
}

impl Manifest {
    /// Reads a manifest; `pushed_as` is the `Content-Type` it arrived with,
    /// used only when the bytes name no media type.
    ///
    /// # Errors
    ///
    /// [`ManifestError::Invalid`] for bytes that are not a manifest or
    /// index (with what is wrong); [`ManifestError::Schema1`].
    pub fn parse(bytes: &[u8], pushed_as: Option<&str>) -> Result<Manifest, ManifestError> {
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| ManifestError::Invalid(format!("not a manifest ({e})")))?;
        let declared = raw.media_type.as_deref();
        let schema1 = [
            media_type::DOCKER_SCHEMA1,
            media_type::DOCKER_SCHEMA1_SIGNED,
        ];
        if raw.schema_version == Some(1)
            || raw.fs_layers.is_some()
            || declared.is_some_and(|t| schema1.contains(&t))
        {
            return Err(ManifestError::Schema1);
        }
        if let Some(version) = raw.schema_version
            && version != 2
        {
            return Err(ManifestError::Invalid(format!(
                "schemaVersion {version}, expected 2"
            )));
        }
        let kind = match (&raw.manifests, &raw.config) {
            (Some(_), None) => ManifestKind::Index,
            (None, Some(_)) => ManifestKind::Image,
            (Some(_), Some(_)) => {
                return Err(ManifestError::Invalid(
                    "it has both `manifests` and `config`".into(),
                ));
            }
            (None, None) => {
                return Err(ManifestError::Invalid(
                    "it has neither `config` (an image) nor `manifests` (an index)".into(),
                ));
            }
        };
        let media_type = media_type_of(kind, declared, pushed_as)?;
        Ok(Manifest {
            media_type,
            kind,
            config: raw.config,
            layers: raw.layers,
            manifests: raw.manifests.unwrap_or_default(),
            subject: raw.subject,
            artifact_type: raw.artifact_type,
            annotations: raw.annotations,
        })
    }

    /// The blobs an image needs in the registry: config and layers, less
    /// external layers. Empty for an index.
    pub fn blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(&self.layers)
            .filter(|d| !d.is_external())
    }

    /// The artifact type the referrers API lists for this manifest: its
    /// `artifactType`, else an image's config media type; `None` for an
    /// index that declares none.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

/// Picks the media type to serve: the declared one must fit the shape; a
/// type pushed as `Content-Type` is used when it fits; else the OCI type
/// of the shape.
fn media_type_of(
    kind: ManifestKind,
    declared: Option<&str>,
    pushed_as: Option<&str>,
) -> Result<String, ManifestError> {
    let fits = |t: &str| match kind {
        ManifestKind::Index => t == media_type::OCI_INDEX || t == media_type::DOCKER_LIST,
        ManifestKind::Image => t == media_type::OCI_MANIFEST || t == media_type::DOCKER_MANIFEST,
    };
    if let Some(declared) = declared {
        if media_type::is_manifest(declared) && !fits(declared) {
            return Err(ManifestError::Invalid(format!(
                "mediaType {declared} does not match its content"
            )));
        }
        return Ok(declared.to_owned());
    }
    let pushed = pushed_as.map(|t| t.split(';').next().unwrap_or(t).trim());
    if let Some(pushed) = pushed.filter(|t| fits(t)) {
        return Ok(pushed.to_owned());
    }
    Ok(match kind {
        ManifestKind::Index => media_type::OCI_INDEX,
        ManifestKind::Image => media_type::OCI_MANIFEST,
    }
    .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    fn descriptor(media_type: &str, of: &str) -> serde_json::Value {
        serde_json::json!({"mediaType": media_type, "digest": digest(of).to_string(), "size": 3})
    }

    #[test]
    fn a_docker_image_lists_config_and_layers() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::DOCKER_MANIFEST,
            "config": descriptor("application/vnd.docker.container.image.v1+json", "c"),
            "layers": [
                descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", "l1"),
                descriptor(media_type::DOCKER_FOREIGN_LAYER, "foreign"),
            ],
        });
        let m = Manifest::parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(m.media_type, media_type::DOCKER_MANIFEST);
        assert_eq!(m.kind, ManifestKind::Image);
        let blobs: Vec<Digest> = m.blobs().map(|d| d.digest).collect();
        assert_eq!(
            blobs,
            vec![digest("c"), digest("l1")],
            "foreign layers are external"
        );
        assert_eq!(
            m.referrer_artifact_type(),
            Some("application/vnd.docker.container.image.v1+json")
        );
    }

    #[test]
    fn a_missing_media_type_is_inferred_or_taken_from_the_push() {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [descriptor(media_type::OCI_MANIFEST, "m")],
        });
        let m = Manifest::parse(index.to_string().as_bytes(), None).unwrap();
        assert_eq!(
            (m.kind, m.media_type.as_str()),
            (ManifestKind::Index, media_type::OCI_INDEX)
        );
        let m = Manifest::parse(
            index.to_string().as_bytes(),
            Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type, media_type::DOCKER_LIST);
        let image = serde_json::json!({"config": descriptor("x/y", "c")});
        let m = Manifest::parse(image.to_string().as_bytes(), Some(media_type::OCI_INDEX)).unwrap();
        assert_eq!(
            m.media_type,
            media_type::OCI_MANIFEST,
            "a type that does not fit is ignored"
        );
    }

    #[test]
    fn artifacts_keep_subject_annotations_and_type() {
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": "application/vnd.example.sbom",
            "config": descriptor("application/vnd.oci.empty.v1+json", "{}"),
            "layers": [],
            "subject": descriptor(media_type::OCI_MANIFEST, "subject"),
            "annotations": {"org.example": "yes"},
            "unknownField": [1, 2, 3],
        });
        let m = Manifest::parse(body.to_string().as_bytes(), None).unwrap();
        assert_eq!(m.subject.as_ref().unwrap().digest, digest("subject"));
        assert_eq!(
            m.referrer_artifact_type(),
            Some("application/vnd.example.sbom")
        );
        assert_eq!(m.annotations["org.example"], "yes");
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases: [(&str, &str); 6] = [
            ("not json", "not a manifest"),
            ("{}", "neither"),
            (r#"{"schemaVersion": 3, "config": null}"#, "schemaVersion 3"),
            (
                r#"{"mediaType": "application/vnd.oci.image.index.v1+json", "config": {"mediaType": "a", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": 1}}"#,
                "does not match",
            ),
            (
                r#"{"config": {"mediaType": "a", "digest": "sha256:short", "size": 1}}"#,
                "not a manifest",
            ),
            (
                r#"{"manifests": [], "config": {"mediaType": "a", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": 1}}"#,
                "both",
            ),
        ];
        for (body, expected) in cases {
            let e = Manifest::parse(body.as_bytes(), None).unwrap_err();
            assert!(e.to_string().contains(expected), "{body}: {e}");
        }
        let schema1 = r#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#;
        assert_eq!(
            Manifest::parse(schema1.as_bytes(), None),
            Err(ManifestError::Schema1)
        );
    }
}
