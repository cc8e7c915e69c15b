//! Content digests: the identity of every blob in the system.
//!
//! A [`Digest`] is an algorithm and the hash of a blob's bytes, written
//! `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>` as in the OCI
//! image spec. A value of this type has always been validated, so storage
//! paths and URLs may be derived from it without further checks.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A hash algorithm a [`Digest`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 32-byte hashes; the default for OCI content.
    Sha256,
    /// SHA-512, 64-byte hashes.
    Sha512,
}

impl Algorithm {
    /// Returns the name used before the colon in a digest string.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Returns the length of a hash in bytes.
    pub fn hash_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// Starts a streaming hasher for this algorithm.
    pub fn hasher(self) -> Hasher {
        Hasher::new(self)
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// Returns the one-byte code binary encodings (the metainfo, the peer
    /// handshake) use for the algorithm: 1 for SHA-256, 2 for SHA-512.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
            Algorithm::Sha512 => 2,
        }
    }

    /// Returns the algorithm of a binary code, `None` for unknown codes.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Algorithm::Sha256),
            2 => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a string is not a valid digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// There is no `algorithm:` prefix.
    #[error("digest has no algorithm prefix: expected `sha256:<hex>` or `sha512:<hex>`")]
    MissingAlgorithm,
    /// The algorithm is not one this system supports.
    #[error("unsupported digest algorithm `{0}`: expected sha256 or sha512")]
    UnsupportedAlgorithm(String),
    /// The hex part has the wrong number of characters for its algorithm.
    #[error("{algorithm} digest must have {expected} hex characters, found {found}")]
    WrongLength {
        /// The digest's algorithm.
        algorithm: Algorithm,
        /// How many hex characters the algorithm needs.
        expected: usize,
        /// How many were given.
        found: usize,
    },
    /// The hex part holds a character other than `0-9a-f`.
    #[error("digest hex must be lowercase 0-9a-f, found {0:?}")]
    InvalidHex(char),
}

/// A validated content digest: an algorithm and the hash it produced.
///
/// Ordering compares the algorithm, then the hash bytes, which for the same
/// algorithm equals ordering by the hex string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: [u8; 64],
}

impl Digest {
    /// Builds a digest from raw hash bytes.
    ///
    /// # Errors
    ///
    /// [`DigestError::WrongLength`] when `hash` is not as long as the
    /// algorithm's output.
    pub fn from_bytes(algorithm: Algorithm, hash: &[u8]) -> Result<Self, DigestError> {
        if hash.len() != algorithm.hash_len() {
            return Err(DigestError::WrongLength {
                algorithm,
                expected: algorithm.hash_len() * 2,
                found: hash.len() * 2,
            });
        }
        let mut bytes = [0; 64];
        bytes[..hash.len()].copy_from_slice(hash);
        Ok(Digest { algorithm, bytes })
    }

    /// Hashes `data` in one call with the given algorithm.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(data);
        hasher.finish()
    }

    /// Hashes `data` with SHA-256, the algorithm of nearly all OCI content.
    pub fn sha256_of(data: &[u8]) -> Self {
        Self::of(Algorithm::Sha256, data)
    }

    /// Returns the algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Returns the raw hash bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.hash_len()]
    }

    /// Returns the lowercase hex of the hash, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, hex_part) = s.split_once(':').ok_or(DigestError::MissingAlgorithm)?;
        let algorithm = Algorithm::from_name(name)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(truncated(name)))?;
        if let Some(bad) = hex_part
            .chars()
            .find(|c| !matches!(c, '0'..='9' | 'a'..='f'))
        {
            return Err(DigestError::InvalidHex(bad));
        }
        let expected = algorithm.hash_len() * 2;
        if hex_part.len() != expected {
            return Err(DigestError::WrongLength {
                algorithm,
                expected,
                found: hex_part.len(),
            });
        }
        let mut bytes = [0; 64];
        hex::decode_to_slice(hex_part, &mut bytes[..algorithm.hash_len()])
            .expect("hex was validated above");
        Ok(Digest { algorithm, bytes })
    }
}

/// Keeps error messages short when a client sends something huge.
fn truncated(s: &str) -> String {
    s.chars().take(32).collect()
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A streaming hasher that produces a [`Digest`].
///
/// `sha2` picks the CPU's SHA extensions at run time where present.
#[derive(Clone)]
pub struct Hasher {
    state: HasherState,
}

#[derive(Clone)]
enum HasherState {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    /// Starts hashing with `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => HasherState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => HasherState::Sha512(sha2::Sha512::new()),
        };
        Hasher { state }
    }

    /// Returns the algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            HasherState::Sha256(_) => Algorithm::Sha256,
            HasherState::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            HasherState::Sha256(h) => h.update(data),
            HasherState::Sha512(h) => h.update(data),
        }
    }

    /// Consumes the hasher and returns the digest of everything fed.
    pub fn finish(self) -> Digest {
        match self.state {
            HasherState::Sha256(h) => {
                Digest::from_bytes(Algorithm::Sha256, &h.finalize()).expect("sha256 length")
            }
            HasherState::Sha512(h) => {
                Digest::from_bytes(Algorithm::Sha512, &h.finalize()).expect("sha512 length")
            }
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl std::io::Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_sha256() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
        assert_eq!(d, Digest::sha256_of(b""));
    }

    #[test]
    fn parses_and_displays_sha512() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        let s = d.to_string();
        assert!(s.starts_with("sha512:ddaf35a193617aba"));
        assert_eq!(s.len(), 7 + 128);
        assert_eq!(s.parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed() {
        let cases = [
            ("", DigestError::MissingAlgorithm),
            ("e3b0c442", DigestError::MissingAlgorithm),
            ("md5:abcd", DigestError::UnsupportedAlgorithm("md5".into())),
            (
                "SHA256:00",
                DigestError::UnsupportedAlgorithm("SHA256".into()),
            ),
            ("sha256:E3B0", DigestError::InvalidHex('E')),
            ("sha256:../../etc", DigestError::InvalidHex('.')),
            (
                "sha256:abcd",
                DigestError::WrongLength {
                    algorithm: Algorithm::Sha256,
                    expected: 64,
                    found: 4,
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Digest>().unwrap_err(), want, "{input:?}");
        }
        let too_long = format!("{EMPTY_SHA256}0");
        assert!(matches!(
            too_long.parse::<Digest>(),
            Err(DigestError::WrongLength { .. })
        ));
        let sha512_short = EMPTY_SHA256.replace("sha256", "sha512");
        assert!(matches!(
            sha512_short.parse::<Digest>(),
            Err(DigestError::WrongLength { .. })
        ));
    }

    #[test]
    fn serde_round_trip_and_rejects_bad_strings() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY_SHA256}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }

    #[test]
    fn streaming_matches_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let mut h = algorithm.hasher();
            for chunk in data.chunks(333) {
                h.update(chunk);
            }
            assert_eq!(h.finish(), Digest::of(algorithm, &data));
        }
    }
}
