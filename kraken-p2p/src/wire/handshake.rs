//! The handshake that opens every peer connection, in both directions.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kraken_core::{Algorithm, Bitfield, Digest, InfoHash, MAX_PIECES, Namespace, PeerId};

use super::WireError;

/// The first bytes of every connection: "KRKN".
pub const MAGIC: [u8; 4] = *b"KRKN";

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// Bytes before the handshake body: magic, version and body length.
pub(crate) const PREFIX_LEN: usize = 4 + 1 + 4;

/// The largest handshake body: fixed fields, the longest namespace and a
/// bitfield for the most pieces a blob may have.
pub(crate) const MAX_BODY_LEN: u32 = 32 + 20 + 1 + 64 + 1 + 255 + 4 + MAX_PIECES / 8;

/// What each side says first: which torrent, who it is, what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The torrent; both sides must agree on it.
    pub info_hash: InfoHash,
    /// The blob's digest, so a peer that lacks the torrent (an origin) can
    /// find the blob.
    pub digest: Digest,
    /// The sender's identity.
    pub peer_id: PeerId,
    /// The namespace, which selects the backend for an origin's fetch.
    pub namespace: Namespace,
    /// The pieces the sender holds; its length is the blob's piece count.
    pub bitfield: Bitfield,
}

impl Handshake {
    /// Encodes the handshake with its prefix.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        out.put_slice(&MAGIC);
        out.put_u8(PROTOCOL_VERSION);
        out.put_u32(0); // patched below once the body length is known
        out.put_slice(self.info_hash.as_bytes());
        out.put_slice(self.peer_id.as_bytes());
        out.put_u8(self.digest.algorithm().code());
        out.put_slice(self.digest.as_bytes());
        out.put_u8(self.namespace.as_str().len() as u8);
        out.put_slice(self.namespace.as_str().as_bytes());
        out.put_u32(self.bitfield.len());
        out.put_slice(self.bitfield.as_bytes());
        let body_len = (out.len() - PREFIX_LEN) as u32;
        out[5..9].copy_from_slice(&body_len.to_be_bytes());
        out.freeze()
    }

    /// Checks the prefix and returns the body length that follows it.
    ///
    /// # Errors
    ///
    /// `BadMagic`, `UnsupportedVersion`, or `TooLong` past the limit.
    pub(crate) fn parse_prefix(prefix: &[u8; PREFIX_LEN]) -> Result<u32, WireError> {
        if prefix[..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if prefix[4] != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion(prefix[4]));
        }
        let len = u32::from_be_bytes(prefix[5..9].try_into().expect("4 bytes"));
        if len > MAX_BODY_LEN {
            let (len, limit) = (u64::from(len), u64::from(MAX_BODY_LEN));
            return Err(WireError::TooLong {
                what: "handshake",
                len,
                limit,
            });
        }
        Ok(len)
    }

    /// Decodes a handshake body (everything after the prefix).
    ///
    /// # Errors
    ///
    /// `Malformed` for any field that does not parse or fit.
    pub fn decode_body(mut body: Bytes) -> Result<Self, WireError> {
        let info_hash = InfoHash::from_bytes(array(&mut body, "info hash")?);
        let peer_id = PeerId::from_bytes(array(&mut body, "peer id")?);
        let code = byte(&mut body, "digest algorithm")?;
        let algorithm =
            Algorithm::from_code(code).ok_or(WireError::Malformed("digest algorithm"))?;
        let hash = take(&mut body, algorithm.hash_len(), "digest")?;
        let digest = Digest::from_bytes(algorithm, &hash).expect("took the hash length");
        let ns_len = byte(&mut body, "namespace length")? as usize;
        let ns = take(&mut body, ns_len, "namespace")?;
        let namespace = std::str::from_utf8(&ns)
            .ok()
            .and_then(|s| Namespace::new(s).ok())
            .ok_or(WireError::Malformed("namespace"))?;
        let pieces = body
            .try_get_u32()
            .map_err(|_| WireError::Malformed("piece count"))?;
        if pieces > MAX_PIECES {
            return Err(WireError::Malformed("piece count"));
        }
        let bits = take(&mut body, (pieces as usize).div_ceil(8), "bitfield")?;
        let bitfield =
            Bitfield::from_bytes(pieces, &bits).ok_or(WireError::Malformed("bitfield"))?;
        if !body.is_empty() {
            return Err(WireError::Malformed("trailing bytes in handshake"));
        }
        Ok(Handshake {
            info_hash,
            digest,
            peer_id,
            namespace,
            bitfield,
        })
    }
}

fn take(body: &mut Bytes, n: usize, what: &'static str) -> Result<Bytes, WireError> {
    if body.len() < n {
        return Err(WireError::Malformed(what));
    }
    Ok(body.split_to(n))
}

fn array<const N: usize>(body: &mut Bytes, what: &'static str) -> Result<[u8; N], WireError> {
    Ok(take(body, N, what)?[..].try_into().expect("took N bytes"))
}

fn byte(body: &mut Bytes, what: &'static str) -> Result<u8, WireError> {
    body.try_get_u8().map_err(|_| WireError::Malformed(what))
}
