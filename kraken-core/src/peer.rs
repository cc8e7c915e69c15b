//! Identities in the swarm: who a peer is, where it listens, which torrent it
//! talks about.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// Why a hex string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} lowercase hex characters")]
pub struct IdError {
    expected: usize,
}

/// Declares a fixed-size identifier shown and parsed as lowercase hex.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// The identifier's length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                $name(bytes)
            }

            /// Returns the raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0; $len];
                let lowercase = s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                if !lowercase || hex::decode_to_slice(s, &mut bytes).is_err() {
                    return Err(IdError { expected: $len * 2 });
                }
                Ok($name(bytes))
            }
        }

        impl $name {
            /// Calls `f` with the lowercase hex form, written on the stack:
            /// a tracker's answer holds dozens of these, so no allocation
            /// per identity.
            fn with_hex<R>(&self, f: impl FnOnce(&str) -> R) -> R {
                let mut buf = [0u8; $len * 2];
                hex::encode_to_slice(self.0, &mut buf).expect("the buffer fits the hex form");
                f(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.with_hex(|hex| f.write_str(hex))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.with_hex(|hex| serializer.serialize_str(hex))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A peer's 20-byte identity, stable for the life of its process or, when
    /// derived from its address, across restarts.
    PeerId,
    20
);

hex_id!(
    /// The identity of a torrent: the SHA-256 of its metainfo's canonical
    /// encoding (see [`MetaInfo::info_hash`](crate::MetaInfo::info_hash)).
    InfoHash,
    32
);

impl PeerId {
    /// Draws a random identity.
    pub fn random() -> Self {
        PeerId(rand::random())
    }

    /// Derives an identity from a listening address, so a peer that restarts
    /// on the same address keeps its identity.
    pub fn from_addr(addr: SocketAddr) -> Self {
        let hash = sha2::Sha256::digest(addr.to_string().as_bytes());
        let mut id = [0; 20];
        id.copy_from_slice(&hash[..20]);
        PeerId(id)
    }
}

/// What the swarm knows of one peer: who it is, where it accepts
/// connections, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer's identity.
    pub peer_id: PeerId,
    /// Where the peer accepts P2P connections; IPv4 or IPv6.
    #[serde(serialize_with = "serialize_addr")]
    pub addr: SocketAddr,
    /// True for origins, the dedicated seeders that hold every blob.
    #[serde(default)]
    pub origin: bool,
    /// True when the peer holds the whole blob and only seeds.
    #[serde(default)]
    pub complete: bool,
}

/// Serializes an address as serde does (`1.2.3.4:5`, `[::1]:5`), but
/// writes IPv4 text without `fmt`: a tracker's answer holds dozens of
/// addresses, and formatting them was a tenth of its time.
fn serialize_addr<S: Serializer>(addr: &SocketAddr, serializer: S) -> Result<S::Ok, S::Error> {
    let SocketAddr::V4(v4) = addr else {
        return addr.serialize(serializer);
    };
    if !serializer.is_human_readable() {
        return addr.serialize(serializer);
    }
    let mut text = [0u8; 21]; // 255.255.255.255:65535
    let mut len = 0;
    for (i, octet) in v4.ip().octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        len += write_decimal(&mut text[len..], u16::from(octet));
    }
    text[len] = b':';
    len += 1;
    len += write_decimal(&mut text[len..], v4.port());
    serializer.serialize_str(std::str::from_utf8(&text[..len]).expect("digits, dots and a colon"))
}

/// Writes `n` in decimal at the start of `out`; returns the digits written.
fn write_decimal(out: &mut [u8], mut n: u16) -> usize {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = digits.len() - start;
    out[..len].copy_from_slice(&digits[start..]);
    len
}

impl PeerInfo {
    /// Describes a peer that is neither an origin nor complete.
    pub fn new(peer_id: PeerId, addr: SocketAddr) -> Self {
        PeerInfo {
            peer_id,
            addr,
            origin: false,
            complete: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_hex() {
        let id = PeerId::random();
        assert_eq!(id.to_string().len(), 40);
        assert_eq!(id.to_string().parse::<PeerId>().unwrap(), id);
        assert!("ABCD".parse::<PeerId>().is_err());
        assert!("00".repeat(21).parse::<PeerId>().is_err());
        assert!("0G".repeat(20).parse::<PeerId>().is_err());
        assert!("AB".repeat(20).parse::<PeerId>().is_err());
    }

    #[test]
    fn addr_ids_are_stable_and_distinct() {
        let a: SocketAddr = "127.0.0.1:16001".parse().unwrap();
        let b: SocketAddr = "[::1]:16001".parse().unwrap();
        assert_eq!(PeerId::from_addr(a), PeerId::from_addr(a));
        assert_ne!(PeerId::from_addr(a), PeerId::from_addr(b));
    }

    #[test]
    fn ipv4_addresses_serialize_as_their_display_form() {
        for addr in [
            "0.0.0.0:0",
            "127.0.0.1:16001",
            "10.20.30.40:9",
            "255.255.255.255:65535",
        ] {
            let p = PeerInfo::new(PeerId::from_bytes([1; 20]), addr.parse().unwrap());
            let json = serde_json::to_value(&p).unwrap();
            assert_eq!(json["addr"], addr);
            assert_eq!(json["peer_id"], "01".repeat(20));
            assert_eq!(serde_json::from_value::<PeerInfo>(json).unwrap(), p);
        }
    }

    #[test]
    fn peer_info_serde_with_ipv6() {
        let p = PeerInfo {
            origin: true,
            ..PeerInfo::new(
                PeerId::from_bytes([7; 20]),
                "[2001:db8::1]:15001".parse().unwrap(),
            )
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("[2001:db8::1]:15001"), "{json}");
        assert_eq!(serde_json::from_str::<PeerInfo>(&json).unwrap(), p);
    }
}
