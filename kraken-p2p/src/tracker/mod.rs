//! The tracker: where peers announce the blobs they download or seed, and
//! learn whom to connect to.

mod memory_store;
mod service;

pub use memory_store::MemoryPeerStore;
pub use service::{
    AnnounceRequest, AnnounceResponse, OriginDirectory, Tracker, TrackerConfig, TrackerService,
    handout,
};
