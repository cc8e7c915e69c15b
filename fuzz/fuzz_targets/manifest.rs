//! Manifest parsing: any bytes, with any pushed `Content-Type`, either parse
//! into a manifest whose media type fits its shape or fail with an error;
//! nothing panics, and what the registry reads from a manifest (blobs,
//! artifact type) is always available once it parsed.

#![no_main]

use kraken_registry::manifest::{Manifest, ManifestKind, media_type};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], Option<&str>)| {
    let (bytes, pushed_as) = input;
    let Ok(manifest) = Manifest::parse(bytes, pushed_as) else {
        return;
    };
    match manifest.kind {
        ManifestKind::Index => {
            assert!(manifest.config.is_none());
            assert_eq!(manifest.blobs().count(), 0);
        }
        ManifestKind::Image => assert!(manifest.config.is_some()),
    }
    if media_type::is_manifest(&manifest.media_type) {
        let index = [media_type::OCI_INDEX, media_type::DOCKER_LIST];
        assert_eq!(
            index.contains(&manifest.media_type.as_str()),
            manifest.kind == ManifestKind::Index,
            "{} for a {:?}",
            manifest.media_type,
            manifest.kind
        );
    }
    let _ = manifest.referrer_artifact_type();
});
