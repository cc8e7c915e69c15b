//! The one escaping of object names shared by backends that store a name as
//! a single path segment (a file name, an S3 key's last segment).
//!
//! Everything but ASCII letters, digits and `. _ - : @ + = ,` is
//! percent-encoded, so `/`, `%` and `#` never appear raw, and a leading `.`
//! becomes `%2E`, so the result is never `.`, `..` or a hidden file. The
//! escaping works character by character, so a name starts with a prefix
//! exactly when its escaped form starts with the escaped prefix.
//!
//! A name whose escaped form passes [`MAX_PLAIN_NAME`] bytes is stored as
//! `#<sha256 of the name>` instead ([`stored_name`]); `#` is escaped in
//! ordinary names, so the two forms never meet, and the backend keeps the
//! full name somewhere it can list.

use kraken_core::{BackendError, Digest, validate_object_name};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Bytes left as they are; everything else is escaped.
pub(crate) const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'_')
    .remove(b'-')
    .remove(b':')
    .remove(b'@')
    .remove(b'+')
    .remove(b'=')
    .remove(b',');

/// Escaped names longer than this are stored under their hash: file names
/// end at 255 bytes, and some S3-compatible stores refuse keys past about
/// 500 (Garage's LMDB metadata).
pub(crate) const MAX_PLAIN_NAME: usize = 200;

/// Checks an object name and returns the segment it is stored under: its
/// escaped form, or `#<sha256>` when that is too long.
///
/// # Errors
///
/// When the name breaks [`validate_object_name`].
pub(crate) fn stored_name(name: &str) -> Result<String, BackendError> {
    let escaped = escape_name(name)?;
    if escaped.len() > MAX_PLAIN_NAME {
        return Ok(hashed_name(name));
    }
    Ok(escaped)
}

/// The suffix of the companion object that holds a hashed name's full
/// name, for backends that keep it beside the object.
pub(crate) const NAME_SUFFIX: &str = ".name";

/// Returns the name of the companion object of a hashed name's object.
pub(crate) fn companion(stored: &str) -> String {
    format!("{stored}{NAME_SUFFIX}")
}

/// Returns the `#<sha256>` form of a name.
pub(crate) fn hashed_name(name: &str) -> String {
    format!("#{}", Digest::sha256_of(name.as_bytes()).hex())
}

/// Checks an object name and escapes it into one path segment.
///
/// # Errors
///
/// When the name breaks [`validate_object_name`].
pub(crate) fn escape_name(name: &str) -> Result<String, BackendError> {
    validate_object_name(name)?;
    Ok(escape(name))
}

/// Escapes any string, such as a listing prefix, without checking it.
pub(crate) fn escape(value: &str) -> String {
    let mut encoded = utf8_percent_encode(value, KEEP).to_string();
    if encoded.starts_with('.') {
        encoded.replace_range(..1, "%2E");
    }
    encoded
}

/// Returns the name an escaped segment stands for, or `None` when the
/// segment is not valid escaped UTF-8.
pub(crate) fn unescape(segment: &str) -> Option<String> {
    percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}
