//! Namespaces: the routing key that groups blobs, usually an image repository.
//!
//! A namespace travels in URLs (percent-encoded as one path segment) and
//! selects a backend, so it is validated once, here: it is made of
//! `/`-separated components of ASCII letters, digits, `.`, `_` and `-`, no
//! component is empty, `.` or `..`, and the whole is at most 255 bytes. Every
//! OCI repository name is a valid namespace; the grammar is wider so generic
//! blob namespaces such as `__noop__` or `CI-cache` also fit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest namespace accepted, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 255;

/// Why a string is not a valid namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    /// The namespace is empty.
    #[error("namespace is empty")]
    Empty,
    /// The namespace is longer than [`MAX_NAMESPACE_LEN`].
    #[error("namespace is {0} bytes long, more than the limit of 255")]
    TooLong(usize),
    /// A `/`-separated component is empty, `.` or `..`.
    #[error("namespace has an empty, `.` or `..` path component")]
    BadComponent,
    /// A character outside the allowed set.
    #[error("namespace holds {0:?}; allowed are ASCII letters, digits, `.`, `_`, `-` and `/`")]
    InvalidChar(char),
}

/// A validated namespace, such as `library/ubuntu`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// Validates and wraps `s`.
    ///
    /// # Errors
    ///
    /// A [`NamespaceError`] saying which rule `s` breaks.
    pub fn new(s: impl Into<String>) -> Result<Self, NamespaceError> {
        let s = s.into();
        validate(&s)?;
        Ok(Namespace(s))
    }

    /// Returns the namespace as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Iterates over the `/`-separated components, each safe as a file name.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

fn validate(s: &str) -> Result<(), NamespaceError> {
    if s.is_empty() {
        return Err(NamespaceError::Empty);
    }
    if s.len() > MAX_NAMESPACE_LEN {
        return Err(NamespaceError::TooLong(s.len()));
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/".contains(*c)))
    {
        return Err(NamespaceError::InvalidChar(bad));
    }
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(NamespaceError::BadComponent);
    }
    Ok(())
}

impl FromStr for Namespace {
    type Err = NamespaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Namespace::new(s)
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.0)
    }
}

impl Serialize for Namespace {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Namespace::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_repositories_and_generic_names() {
        for ok in [
            "library/ubuntu",
            "a",
            "my-org/team_x/app.v2",
            "__noop__",
            "CI-cache",
        ] {
            assert_eq!(Namespace::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_unsafe_names() {
        let cases = [
            ("", NamespaceError::Empty),
            ("../etc", NamespaceError::BadComponent),
            ("a/./b", NamespaceError::BadComponent),
            ("a//b", NamespaceError::BadComponent),
            ("/abs", NamespaceError::BadComponent),
            ("trailing/", NamespaceError::BadComponent),
            ("a b", NamespaceError::InvalidChar(' ')),
            ("a%2Fb", NamespaceError::InvalidChar('%')),
            ("a\\b", NamespaceError::InvalidChar('\\')),
            ("ünï", NamespaceError::InvalidChar('ü')),
        ];
        for (input, want) in cases {
            assert_eq!(Namespace::new(input).unwrap_err(), want, "{input:?}");
        }
        let long = "a".repeat(256);
        assert_eq!(
            Namespace::new(long).unwrap_err(),
            NamespaceError::TooLong(256)
        );
    }

    #[test]
    fn serde_validates() {
        let ns: Namespace = serde_json::from_str("\"library/ubuntu\"").unwrap();
        assert_eq!(ns.components().collect::<Vec<_>>(), ["library", "ubuntu"]);
        assert!(serde_json::from_str::<Namespace>("\"../x\"").is_err());
    }
}
