//! Repository names, tags and references, validated with the OCI
//! distribution grammar at the edge, so a name that exists has been checked.
//!
//! A repository name is one or more `/`-separated components of lowercase
//! letters and digits, joined inside a component by `.`, `_`, `__` or runs
//! of `-`; at most 255 bytes. A tag is 1 to 128 characters of
//! `[A-Za-z0-9_.-]` that does not start with `.` or `-`. A reference is a
//! tag or a digest.

use std::fmt;
use std::str::FromStr;

use kraken_core::{Digest, Namespace};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest repository name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The longest tag accepted, in characters.
pub const MAX_TAG_LEN: usize = 128;

/// Why a repository name, tag or reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The repository name breaks the OCI grammar.
    #[error("invalid repository name {name:?}: {why}")]
    Name {
        /// The name as given, cut to 300 bytes.
        name: String,
        /// The rule it breaks.
        why: &'static str,
    },
    /// The tag breaks the OCI grammar.
    #[error(
        "invalid tag {tag:?}: tags are 1 to 128 of A-Z a-z 0-9 _ . - and do not start with . or -"
    )]
    Tag {
        /// The tag as given, cut to 300 bytes.
        tag: String,
    },
    /// A reference that is neither a tag nor a valid digest.
    #[error("invalid reference {reference:?}: not a tag and not a digest ({why})")]
    Reference {
        /// The reference as given, cut to 300 bytes.
        reference: String,
        /// Why it is not a digest.
        why: String,
    },
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A validated repository name, such as `library/ubuntu`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// Validates and wraps `name`.
    ///
    /// # Errors
    ///
    /// [`ReferenceError::Name`] naming the rule broken.
    pub fn new(name: impl Into<String>) -> Result<Self, ReferenceError> {
        let name = name.into();
        match check_name(&name) {
            Ok(()) => Ok(RepoName(name)),
            Err(why) => Err(ReferenceError::Name {
                name: cut(&name),
                why,
            }),
        }
    }

    /// Returns the name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the name as the namespace its blobs are routed by: every
    /// repository name is a valid namespace.
    pub fn namespace(&self) -> Namespace {
        Namespace::new(self.0.clone()).expect("an OCI repository name is a valid namespace")
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("it is longer than 255 bytes");
    }
    name.split('/').try_for_each(check_component)
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_component(component: &str) -> Result<(), &'static str> {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() {
        return Err("a path component is empty");
    }
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err("a path component must start and end with a lowercase letter or digit");
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let dashes = sep.bytes().all(|b| b == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return Err("only lowercase letters, digits and the separators . _ __ - are allowed");
        }
    }
    Ok(())
}

/// A validated tag, such as `v1.2` or `latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Validates and wraps `tag`.
    ///
    /// # Errors
    ///
    /// [`ReferenceError::Tag`].
    pub fn new(tag: impl Into<String>) -> Result<Self, ReferenceError> {
        let tag = tag.into();
        let ok = !tag.is_empty()
            && tag.len() <= MAX_TAG_LEN
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !tag.starts_with(['.', '-']);
        if ok {
            Ok(Tag(tag))
        } else {
            Err(ReferenceError::Tag { tag: cut(&tag) })
        }
    }

    /// Returns the tag as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A mutable name, resolved through build-index.
    Tag(Tag),
    /// An immutable content address.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: a digest when it holds `:`, a tag otherwise.
    ///
    /// # Errors
    ///
    /// [`ReferenceError::Reference`] for something with `:` that is not a
    /// digest; [`ReferenceError::Tag`] for a bad tag.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.contains(':') {
            return s
                .parse()
                .map(Reference::Digest)
                .map_err(|e: kraken_core::DigestError| ReferenceError::Reference {
                    reference: cut(s),
                    why: e.to_string(),
                });
        }
        Tag::new(s).map(Reference::Tag)
    }

    /// The digest, when the reference is one.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Reference::Digest(d) => Some(d),
            Reference::Tag(_) => None,
        }
    }
}

macro_rules! string_newtype {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $ty {
            type Err = ReferenceError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::new(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_newtype!(RepoName);
string_newtype!(Tag);

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn names_follow_the_oci_grammar() {
        for good in [
            "a",
            "library/ubuntu",
            "a0/b-c/d__e/f.g",
            "x---y",
            "registry.example.com/team/app",
            "0",
        ] {
            assert!(RepoName::new(good).is_ok(), "{good} refused");
        }
        for bad in [
            "", "Library", "a//b", "/a", "a/", "a..b", "a___b", "-a", "a-", "a_.b", "a b", "a:b",
            "../etc", "é",
        ] {
            assert!(RepoName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RepoName::new("a".repeat(255)).is_ok());
        assert!(RepoName::new("a".repeat(256)).is_err());
    }

    #[test]
    fn tags_follow_the_oci_grammar() {
        for good in ["latest", "v1.2.3", "_x", "A-b_c.d", &"t".repeat(128)] {
            assert!(Tag::new(good).is_ok(), "{good} refused");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a:b", "ä", &"t".repeat(129)] {
            assert!(Tag::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn references_are_tags_or_digests() {
        let hex = "a".repeat(64);
        assert_eq!(
            Reference::parse(&format!("sha256:{hex}")).unwrap().digest(),
            Some(&format!("sha256:{hex}").parse().unwrap())
        );
        assert!(matches!(Reference::parse("v1"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse("sha256:totallywrong"),
            Err(ReferenceError::Reference { .. })
        ));
        assert!(matches!(
            Reference::parse(".INVALID_MANIFEST_NAME"),
            Err(ReferenceError::Tag { .. })
        ));
    }

    #[test]
    fn long_bad_input_is_cut_in_messages() {
        let e = RepoName::new("A".repeat(10_000)).unwrap_err();
        assert!(e.to_string().len() < 400);
        let e = Tag::new("é".repeat(1000)).unwrap_err();
        assert!(e.to_string().len() < 500);
    }

    proptest! {
        #[test]
        fn every_valid_name_is_a_namespace(name in "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,3}(/[a-z0-9]{1,8}(__[a-z0-9]{1,4})?){0,4}") {
            let repo = RepoName::new(name.clone()).unwrap();
            let namespace = repo.namespace();
            prop_assert_eq!(namespace.as_str(), name.as_str());
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,80}") {
            let _ = RepoName::new(s.clone());
            let _ = Tag::new(s.clone());
            let _ = Reference::parse(&s);
        }
    }
}
