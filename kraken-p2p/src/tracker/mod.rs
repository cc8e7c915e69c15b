//! The tracker: where peers announce the blobs they download or seed, and
//! learn whom to connect to.
//!
//! [`TrackerService`] makes the decisions over a [`PeerStore`](kraken_core::PeerStore)
//! ([`MemoryPeerStore`] for one tracker, [`RedisPeerStore`] for several
//! sharing state); [`TrackerServer`] serves it over HTTP and [`HttpTracker`]
//! is the agents' client, with failover across trackers.

mod http_client;
mod memory_store;
mod redis_store;
mod server;
mod service;

pub use crate::http_error::{ErrorBody, status_for};
pub(crate) use http_client::SEGMENT;
pub use http_client::{HttpTracker, HttpTrackerConfig, TrackerClientError};
pub use memory_store::MemoryPeerStore;
pub use redis_store::{RedisPeerStore, RedisPeerStoreConfig};
pub use server::{MAX_BODY_BYTES, TrackerServer, router};
pub use service::{
    AnnounceRequest, AnnounceResponse, OriginDirectory, Tracker, TrackerConfig, TrackerService,
    handout,
};
