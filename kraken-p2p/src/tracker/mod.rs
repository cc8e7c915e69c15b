//! The tracker: where peers announce the blobs they download or seed, and
//! learn whom to connect to.

mod memory_store;

pub use memory_store::MemoryPeerStore;
