//! What an object name means to a registry: a blob by digest, a tag as
//! `repo:tag`, or nothing a registry can hold; and the OCI grammar of
//! repository names and tags, checked before either reaches a URL.

use std::sync::LazyLock;

use kraken_core::{BackendError, BackendErrorKind, Digest};
use regex::Regex;

/// A repository path: components of lowercase letters and digits joined by
/// `.`, `_`, `__` or runs of `-`, separated by `/` (OCI distribution spec).
static REPOSITORY: LazyLock<Regex> = LazyLock::new(|| {
    let component = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
    Regex::new(&format!("^{component}(?:/{component})*$")).expect("valid regex")
});

/// A tag: up to 128 word characters, dots and dashes, not starting with
/// either of the last two.
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$").expect("valid regex"));

/// The longest repository name accepted, as registries limit the whole
/// name (host included) to 255 bytes.
const MAX_REPOSITORY_LEN: usize = 255;

/// An object name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ObjectName<'a> {
    /// A blob or a manifest by digest.
    Digest(Digest),
    /// A tag, whose object is the digest it points at.
    Tag {
        /// The repository the tag belongs to, as the name spells it.
        repository: &'a str,
        /// The tag itself.
        tag: &'a str,
    },
}

/// Parses an object name.
///
/// A name starting `sha256:` or `sha512:` is a digest; another name with
/// a `:` is `repo:tag`. `Ok(None)` means a name of neither shape, which
/// no registry can hold.
///
/// # Errors
///
/// `Other` for a digest that does not parse and for a `repo:tag` whose
/// repository or tag breaks the OCI grammar.
pub(crate) fn parse(name: &str) -> Result<Option<ObjectName<'_>>, BackendError> {
    let Some((before, after)) = name.split_once(':') else {
        return Ok(None);
    };
    if matches!(before, "sha256" | "sha512") {
        let digest = name
            .parse::<Digest>()
            .map_err(|e| bad(format!("{name:.80} is not a valid digest: {e}")))?;
        return Ok(Some(ObjectName::Digest(digest)));
    }
    check_repository(before)?;
    check_tag(after)?;
    Ok(Some(ObjectName::Tag {
        repository: before,
        tag: after,
    }))
}

/// Checks a repository name against the OCI grammar.
///
/// # Errors
///
/// `Other` naming the repository.
pub(crate) fn check_repository(repository: &str) -> Result<(), BackendError> {
    if repository.len() <= MAX_REPOSITORY_LEN && REPOSITORY.is_match(repository) {
        return Ok(());
    }
    Err(bad(format!(
        "{repository:.80} is not a valid repository name (lowercase letters, digits, \
         separators `.`, `_`, `-` and `/`)"
    )))
}

/// Checks a tag against the OCI grammar.
///
/// # Errors
///
/// `Other` naming the tag.
pub(crate) fn check_tag(tag: &str) -> Result<(), BackendError> {
    if TAG.is_match(tag) {
        return Ok(());
    }
    Err(bad(format!("{tag:.80} is not a valid tag")))
}

fn bad(message: String) -> BackendError {
    BackendError::new(BackendErrorKind::Other, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn names_parse_into_digests_and_tags() {
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            parse(&digest).unwrap(),
            Some(ObjectName::Digest(digest.parse().unwrap()))
        );
        assert_eq!(
            parse("library/ubuntu:22.04").unwrap(),
            Some(ObjectName::Tag {
                repository: "library/ubuntu",
                tag: "22.04"
            })
        );
        assert_eq!(parse("missing-object").unwrap(), None);
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for name in [
            "sha256:abc",
            "sha256:ZZ",
            "sha512:00",
            "Library/ubuntu:latest",
            "repo:",
            "repo:.hidden",
            "repo:a:b",
            "a//b:tag",
            "repo-x@sha256:abc",
            "-repo:tag",
            "repo/:tag",
        ] {
            let error = parse(name).unwrap_err();
            assert_eq!(error.kind(), BackendErrorKind::Other, "{name}");
            assert!(error.message().contains("not a valid"), "{name}: {error}");
        }
        let long_tag = format!("repo:{}", "t".repeat(129));
        assert!(parse(&long_tag).is_err());
        assert!(parse(&format!("repo:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn repository_grammar() {
        for good in ["a", "library/ubuntu", "a.b_c__d--e/f0", "x/y/z"] {
            check_repository(good).unwrap();
        }
        for bad in ["", "A", "a_", "a/", "/a", "a..b", "a___b", "a b"] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }
}
