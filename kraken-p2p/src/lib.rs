//! The peer-to-peer engine of kraken-rs: everything that moves blobs between
//! hosts and is not specific to container images.
//!
//! It holds the peer [`wire`] protocol and its optional mutual [`tls`], the
//! torrent [`scheduler`] and its [`Engine`](scheduler::Engine), the
//! [`tracker`] (service, HTTP server and client, in-memory and Redis
//! [`PeerStore`](kraken_core::PeerStore)s), the [`agent`]'s blob HTTP API
//! and embedding API, the [`origin`] cluster (uploads, placement, write-back,
//! read-through, seeding, and the [`OriginClient`](origin::OriginClient)),
//! and the durable job [`queue`] behind the origin's write-back.
//!
//! # Getting a blob through the swarm
//!
//! A host application hands an [`Agent`](agent::Agent) a blob store and the
//! cluster's tracker, then asks for blobs by namespace and digest:
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use kraken_core::disk::{DiskStore, DiskStoreOptions};
//! use kraken_core::{Digest, Namespace};
//! use kraken_p2p::agent::Agent;
//! use kraken_p2p::tracker::Tracker;
//!
//! # async fn run(tracker: Arc<dyn Tracker>) -> kraken_core::Result<()> {
//! let store = Arc::new(DiskStore::open(DiskStoreOptions::new("/var/cache/kraken")).await?);
//! let agent = Agent::builder(store, tracker).build().await?;
//!
//! let namespace = Namespace::new("library/ubuntu")?;
//! let digest: Digest =
//!     "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
//! let blob = agent.get(&namespace, &digest).await?;
//! println!("{digest}: {} bytes", blob.len());
//! # Ok(())
//! # }
//! ```
//!
//! `examples/embed_p2p.rs` runs the same with an origin and a tracker in
//! one process.

pub mod agent;
pub mod auth;
mod blob_http;
pub mod http_error;
pub mod http_tls;
pub mod metrics;
pub mod origin;
pub mod queue;
pub mod scheduler;
pub mod sim;
pub mod tls;
pub mod tracker;
pub mod wire;
