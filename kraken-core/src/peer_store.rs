//! The `PeerStore` trait: the tracker's memory of who holds what.
//!
//! Peers announce each torrent they download or seed at an interval; the
//! store keeps each announce until its time to live runs out, and hands out
//! random samples so the swarm forms a sparse random graph rather than
//! everyone connecting to the first peers that arrived. Which peers a tracker
//! returns (origins first, completed peers favoured) is the tracker's
//! policy, built on top of `sample`.

use std::fmt;

use async_trait::async_trait;

use crate::{InfoHash, PeerInfo, Result};

/// Where trackers record announces and draw peers from.
///
/// Implementations: an in-memory store for a single tracker and Redis for
/// several trackers sharing one view. Entries expire after a time to live
/// set when the store is built; an expired entry is never returned.
#[async_trait]
pub trait PeerStore: Send + Sync + fmt::Debug {
    /// Records that `peer` takes part in the torrent `info_hash`, replacing
    /// any earlier entry with the same peer id (so its address and flags are
    /// the latest announced) and restarting its time to live.
    async fn announce(&self, info_hash: &InfoHash, peer: &PeerInfo) -> Result<()>;

    /// Returns up to `n` distinct, unexpired peers of `info_hash`, chosen at
    /// random and in random order (also when every peer is returned: agents
    /// dial a handout in order, so a fixed order would have every agent
    /// dial the same few peers and split the swarm into cliques); an
    /// unknown torrent yields an empty list, not an error.
    async fn sample(&self, info_hash: &InfoHash, n: usize) -> Result<Vec<PeerInfo>>;
}
