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

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
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
    pub addr: SocketAddr,
    /// True for origins, the dedicated seeders that hold every blob.
    #[serde(default)]
    pub origin: bool,
    /// True when the peer holds the whole blob and only seeds.
    #[serde(default)]
    pub complete: bool,
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
