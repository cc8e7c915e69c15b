//! The peer-to-peer engine of kraken-rs: everything that moves blobs between
//! hosts and is not specific to container images.
//!
//! This crate is being built up; today it holds the peer [`wire`] protocol
//! and the tracker's in-memory [`PeerStore`](kraken_core::PeerStore),
//! [`tracker::MemoryPeerStore`].

pub mod scheduler;
pub mod tracker;
pub mod wire;
