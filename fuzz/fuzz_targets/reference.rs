//! Repository names, tags and references: parsing any string never panics,
//! what parses prints back as the same string, and every valid repository
//! name is a valid namespace (blobs are routed by it).

#![no_main]

use kraken_registry::reference::{Reference, RepoName, Tag};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(name) = RepoName::new(input) {
        assert_eq!(name.as_str(), input);
        assert_eq!(name.namespace().as_str(), input);
    }
    if let Ok(tag) = Tag::new(input) {
        assert_eq!(tag.as_str(), input);
    }
    if let Ok(reference) = Reference::parse(input) {
        assert_eq!(reference.to_string(), input);
    }
});
