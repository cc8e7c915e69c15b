//! The origin: the dedicated seeder that holds every blob and stands in
//! front of the backend.
//!
//! An origin accepts uploads, verifies and stores them, copies them to the
//! other owners of the digest ([`cluster`]), queues the write-back to the
//! backend ([`writeback`]), fetches what it lacks from the backend once
//! however many callers ask (read-through), and seeds everything it holds
//! to the swarm. [`OriginClient`](client::OriginClient) is how the tracker,
//! the proxy and build-index talk to a cluster of origins.

pub mod cluster;
pub mod writeback;

pub use cluster::{Cluster, ClusterConfig, HealthConfig, MemberHealth, Members};
pub use writeback::{WriteBack, WriteBackConfig, WriteBackTask};
