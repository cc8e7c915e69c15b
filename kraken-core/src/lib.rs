//! Core types and extension points of kraken-rs, a peer-to-peer
//! distribution system for container images and other content-addressed
//! blobs.
//!
//! Nothing in this crate talks to the network. It defines:
//!
//! - the identities everything is keyed by: [`Digest`], [`Namespace`],
//!   [`PeerId`], [`InfoHash`] and [`PeerInfo`];
//! - [`MetaInfo`], the piece layout and SHA-256 piece hashes of a blob, and
//!   the [`PieceLengths`] table that picks its piece length;
//! - the four traits a host application or plugin implements or consumes:
//!   [`BlobStore`] (local storage), [`Backend`] (the remote source of
//!   truth), [`PeerStore`] (the tracker's announce memory) and
//!   [`Scheduler`] (the P2P engine);
//! - [`disk::DiskStore`], the default `BlobStore`;
//! - [`Rendezvous`], the weighted hashing that places blobs on origins.
//!
//! With the `testkit` feature, [`testkit`] provides a behaviour suite per
//! trait, an in-memory backend and a fault-injecting backend wrapper.
//!
//! # Implementing a trait
//!
//! Each trait's methods document their contract, including the errors they
//! return. Implement the trait, wrap the value in an `Arc`, and run the
//! matching suite from [`testkit`] in your tests to check it.

mod backend;
mod bandwidth;
mod digest;
pub mod disk;
mod error;
mod metainfo;
mod namespace;
mod peer;
mod peer_store;
mod piece;
mod range;
mod rendezvous;
mod scheduler;
mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use backend::{
    Backend, BackendError, BackendErrorKind, BackendStream, Capabilities, ListPage,
    MAX_OBJECT_NAME_LEN, ObjectInfo, UploadBody, validate_object_name,
};
pub use bandwidth::Bandwidth;
pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::{Error, Result};
pub use metainfo::{
    MAX_PIECE_LENGTH, MAX_PIECES, MetaInfo, MetaInfoError, PieceLengths, PieceLengthsError,
};
pub use namespace::{MAX_NAMESPACE_LEN, Namespace, NamespaceError};
pub use peer::{IdError, InfoHash, PeerId, PeerInfo};
pub use peer_store::PeerStore;
pub use piece::{Bitfield, PieceIndex};
pub use range::{ByteRange, RangeError, parse_upload_range};
pub use rendezvous::{Node, Rendezvous};
pub use scheduler::{BlobStream, Scheduler, SchedulerStats};
pub use store::{BlobReader, BlobStat, BlobState, BlobStore, UploadId, UploadIdError, read_range};
