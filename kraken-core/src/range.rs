//! Byte ranges as HTTP `Range` headers state them, resolved against a blob's
//! length only once that length is known.

use std::ops::Range;

/// A single byte range requested by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ByteRange {
    /// The whole blob.
    #[default]
    Full,
    /// From an offset to the end (`bytes=500-`).
    From(u64),
    /// From `start` to `end`, both inclusive (`bytes=0-499`).
    Inclusive {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// The last n bytes (`bytes=-500`).
    Suffix(u64),
}

/// Why a `Range` header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The header is not `bytes=<start>-<end>` in one of its single-range forms.
    #[error("malformed range header: expected bytes=<start>-<end>, bytes=<start>- or bytes=-<n>")]
    Malformed,
    /// Several ranges were asked for; only one is supported.
    #[error("multiple ranges are not supported")]
    Multiple,
}

impl ByteRange {
    /// Parses an HTTP `Range` header value holding a single range.
    ///
    /// # Errors
    ///
    /// [`RangeError::Malformed`] for anything but `bytes=a-b`, `bytes=a-` or
    /// `bytes=-n` with decimal numbers and `a <= b`; [`RangeError::Multiple`]
    /// for a list.
    pub fn parse_header(value: &str) -> Result<Self, RangeError> {
        let spec = value
            .trim()
            .strip_prefix("bytes=")
            .ok_or(RangeError::Malformed)?;
        if spec.contains(',') {
            return Err(RangeError::Multiple);
        }
        let (start, end) = spec.trim().split_once('-').ok_or(RangeError::Malformed)?;
        match (number(start)?, number(end)?) {
            (Some(start), Some(end)) if start <= end => Ok(ByteRange::Inclusive { start, end }),
            (Some(start), None) => Ok(ByteRange::From(start)),
            (None, Some(n)) => Ok(ByteRange::Suffix(n)),
            _ => Err(RangeError::Malformed),
        }
    }

    /// Resolves the range against a blob of `length` bytes, clamping an end
    /// past the blob as HTTP does.
    ///
    /// Returns `None` when the range is unsatisfiable: it starts at or past
    /// the end, or is an empty suffix. A full range of an empty blob is
    /// satisfiable and empty.
    pub fn resolve(self, length: u64) -> Option<Range<u64>> {
        match self {
            ByteRange::Full => Some(0..length),
            ByteRange::From(start) if start < length => Some(start..length),
            ByteRange::Inclusive { start, end } if start < length => {
                Some(start..end.saturating_add(1).min(length))
            }
            ByteRange::Suffix(n) if n > 0 && length > 0 => Some(length.saturating_sub(n)..length),
            _ => None,
        }
    }

    /// Returns true for the whole blob.
    pub fn is_full(self) -> bool {
        self == ByteRange::Full
    }
}

/// Parses the `Content-Range` of an upload chunk: `<start>-<end>`, both
/// inclusive, as the OCI distribution spec writes it. The `bytes ` unit and
/// the `/<total>` suffix of the HTTP form are tolerated, as some clients
/// send them.
///
/// # Errors
///
/// [`RangeError::Malformed`] for anything else, or when `end < start`.
pub fn parse_upload_range(value: &str) -> Result<(u64, u64), RangeError> {
    let text = value.trim();
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let text = text.split_once('/').map_or(text, |(range, _)| range);
    let (start, end) = text.split_once('-').ok_or(RangeError::Malformed)?;
    match (number(start)?, number(end)?) {
        (Some(start), Some(end)) if start <= end => Ok((start, end)),
        _ => Err(RangeError::Malformed),
    }
}

fn number(s: &str) -> Result<Option<u64>, RangeError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RangeError::Malformed);
    }
    s.parse().map(Some).map_err(|_| RangeError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges_in_every_spelling_clients_send() {
        assert_eq!(parse_upload_range("0-99"), Ok((0, 99)));
        assert_eq!(parse_upload_range("bytes 100-199/1000"), Ok((100, 199)));
        assert_eq!(parse_upload_range("5-5/*"), Ok((5, 5)));
        for bad in ["", "abc", "9-3", "-5", "5-", "bytes=0-9", "1-2-3", "+1-2"] {
            assert_eq!(
                parse_upload_range(bad),
                Err(RangeError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn parses_single_ranges() {
        assert_eq!(
            ByteRange::parse_header("bytes=0-499"),
            Ok(ByteRange::Inclusive { start: 0, end: 499 })
        );
        assert_eq!(
            ByteRange::parse_header("bytes=500-"),
            Ok(ByteRange::From(500))
        );
        assert_eq!(
            ByteRange::parse_header("bytes=-20"),
            Ok(ByteRange::Suffix(20))
        );
        for bad in [
            "",
            "bytes=",
            "bytes=-",
            "bytes=5-1",
            "items=0-1",
            "bytes=+1-2",
            "bytes=a-b",
        ] {
            assert_eq!(
                ByteRange::parse_header(bad),
                Err(RangeError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            ByteRange::parse_header("bytes=0-1,5-6"),
            Err(RangeError::Multiple)
        );
        assert_eq!(
            ByteRange::parse_header("bytes=99999999999999999999-"),
            Err(RangeError::Malformed)
        );
    }

    #[test]
    fn resolves_against_length() {
        assert_eq!(ByteRange::Full.resolve(10), Some(0..10));
        assert_eq!(ByteRange::Full.resolve(0), Some(0..0));
        assert_eq!(ByteRange::From(9).resolve(10), Some(9..10));
        assert_eq!(ByteRange::From(10).resolve(10), None);
        assert_eq!(
            ByteRange::Inclusive { start: 2, end: 100 }.resolve(10),
            Some(2..10)
        );
        assert_eq!(
            ByteRange::Inclusive {
                start: 0,
                end: u64::MAX
            }
            .resolve(10),
            Some(0..10)
        );
        assert_eq!(ByteRange::Suffix(3).resolve(10), Some(7..10));
        assert_eq!(ByteRange::Suffix(30).resolve(10), Some(0..10));
        assert_eq!(ByteRange::Suffix(0).resolve(10), None);
        assert_eq!(ByteRange::Suffix(5).resolve(0), None);
    }
}
