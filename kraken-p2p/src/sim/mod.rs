//! A discrete-event simulator of one blob's swarm, for sizes no test
//! machine can run: thousands of hosts, blobs of many gigabytes.
//!
//! It drives the real decision code with a simulated network: each host
//! has a [`Torrent`](crate::scheduler::Torrent) (which pieces to ask whom
//! for, timeouts, endgame) and a [`ServeQueue`](crate::scheduler::ServeQueue)
//! (which request to serve next), and agents find each other through a
//! real [`TrackerService`](crate::tracker::TrackerService) and its
//! [`handout`](crate::tracker::handout). What the engine's session, its
//! connections and its upload task do around those (dial, handshake,
//! acknowledge, announce every interval, tick every 250 ms) the simulator
//! does in virtual time, in the same order.
//!
//! The network is a fluid model. Control messages (handshakes, requests,
//! haves, cancels) take the one-way latency and no bandwidth. A piece
//! takes the latency plus its bytes over a rate: a sender serves one piece
//! at a time at its full rate, as the engine's egress-capped upload task
//! does, and a receiver's download link is shared max-min fairly among the
//! pieces coming in, each capped by its sender's rate, recomputed whenever
//! one starts or ends. [`SenderModel`] says when a sender may start its
//! next piece.
//!
//! A run is reproducible: everything random comes from one seed.
//!
//! # Limitations
//!
//! - No losses, no congestion inside the network, no TCP slow start: only
//!   the hosts' links limit a transfer. A bottleneck elsewhere (a rack's
//!   uplink) is not modelled.
//! - Buffers are unbounded within the acknowledgement window: a buffered
//!   sender never waits for socket space, only for window room.
//! - Disk reads, hashing and CPU cost nothing.
//! - Every peer is reachable: a dial fails only when the other side has no
//!   free connection slot. Hosts never crash or leave, and no piece fails
//!   verification.
//! - A dial costs a TCP round trip plus the handshake, three latencies to
//!   the dialled side; TLS is not modelled.
//! - Agents never give up (the engine's no-peer and idle download
//!   timeouts are not applied); a run stops at its time limit instead.

mod flow;
mod queue;
mod tracker;
mod world;

use std::time::Duration;

use serde::Serialize;

use crate::scheduler::SchedulerConfig;
use crate::tracker::TrackerConfig;

/// When a sender may start serving its next piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SenderModel {
    /// Once it has pushed the current piece out at its own full rate, as
    /// the engine's upload task does: it hands a piece to the connection
    /// when the egress cap allows and takes the next request, and bytes a
    /// busy receiver has not taken yet wait in socket buffers. The serve
    /// queue's acknowledgement window bounds how much waits per
    /// connection.
    #[default]
    Buffered,
    /// Only once the receiver has the whole piece: no buffering, so a
    /// sender whose receiver shares its link with others idles part of its
    /// upload. An origin faster than the agents gets
    /// `ceil(origin rate / host rate)` slots, each at that share of its
    /// rate. A pessimistic bound.
    Blocking,
}

/// The swarm to simulate and its network.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Agents that download the blob.
    pub hosts: u32,
    /// Origins that seed it from the start.
    pub origins: u32,
    /// Bytes of the blob.
    pub blob_size: u64,
    /// Bytes of each piece (the last may be shorter).
    pub piece_length: u64,
    /// Bytes per second each agent can send, and receive.
    pub host_rate: f64,
    /// Bytes per second each origin can send.
    pub origin_rate: f64,
    /// One-way delay of every message between two hosts or a host and the
    /// tracker.
    pub latency: Duration,
    /// Agents start at random times spread evenly over this span from zero;
    /// zero starts them all at once.
    pub arrival_spread: Duration,
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// The agents' scheduler settings.
    pub scheduler: SchedulerConfig,
    /// Connections each origin accepts for the blob.
    pub origin_connections: usize,
    /// The tracker's settings.
    pub tracker: TrackerConfig,
    /// Virtual time after which the run stops, finished or not.
    pub time_limit: Duration,
    /// When a sender may start its next piece.
    pub sender: SenderModel,
}

impl SimOptions {
    /// Describes a swarm of `hosts` agents and one origin, all at
    /// `rate` bytes per second, fetching `blob_size` bytes in pieces of
    /// `piece_length`, with the engine's default settings.
    pub fn new(hosts: u32, blob_size: u64, piece_length: u64, rate: f64) -> Self {
        let scheduler = SchedulerConfig::default();
        let tracker = TrackerConfig {
            announce_interval: scheduler.announce_interval,
            ..TrackerConfig::default()
        };
        SimOptions {
            hosts,
            origins: 1,
            blob_size,
            piece_length,
            host_rate: rate,
            origin_rate: rate,
            latency: Duration::from_millis(1),
            arrival_spread: Duration::ZERO,
            seed: 1,
            origin_connections: scheduler.max_connections,
            scheduler,
            tracker,
            time_limit: Duration::from_secs(24 * 3600),
            sender: SenderModel::default(),
        }
    }

    /// Checks that the options describe a swarm that can run.
    ///
    /// # Errors
    ///
    /// A [`SimOptionsError`] naming the first bad option.
    pub fn validate(&self) -> Result<(), SimOptionsError> {
        let checks = [
            (self.hosts == 0, "hosts must be at least 1"),
            (self.origins == 0, "origins must be at least 1"),
            (self.blob_size == 0, "blob size must be positive"),
            (self.piece_length == 0, "piece length must be positive"),
            (
                self.blob_size.div_ceil(self.piece_length.max(1)) > u64::from(u32::MAX),
                "too many pieces",
            ),
            (
                self.hosts.saturating_add(self.origins) == u32::MAX,
                "too many hosts",
            ),
            (
                !finite_positive(self.host_rate),
                "host rate must be positive",
            ),
            (
                !finite_positive(self.origin_rate),
                "origin rate must be positive",
            ),
            (
                self.origin_connections == 0,
                "origin connections must be at least 1",
            ),
            (self.time_limit.is_zero(), "time limit must be positive"),
        ];
        if let Some((_, why)) = checks.into_iter().find(|(bad, _)| *bad) {
            return Err(SimOptionsError(why));
        }
        self.scheduler
            .validate()
            .map_err(|_| SimOptionsError("invalid scheduler config"))
    }

    /// Returns the time one host would need at its full rate.
    pub fn ideal(&self) -> f64 {
        self.blob_size as f64 / self.host_rate
    }
}

fn finite_positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

/// Why simulation options are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid simulation options: {0}")]
pub struct SimOptionsError(&'static str);

/// What a run measured. Times are seconds of virtual time; an agent's
/// download time counts from its own start.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Agents.
    pub hosts: u32,
    /// Origins.
    pub origins: u32,
    /// Bytes of the blob.
    pub blob_bytes: u64,
    /// Bytes per piece.
    pub piece_length: u64,
    /// Pieces of the blob.
    pub pieces: u32,
    /// Each agent's rate, in Mbit/s.
    pub rate_mbit: f64,
    /// Each origin's upload rate, in Mbit/s.
    pub origin_rate_mbit: f64,
    /// `"buffered"` or `"blocking"`: when a sender starts its next piece.
    pub sender: &'static str,
    /// One-way latency, in milliseconds.
    pub latency_ms: f64,
    /// The seed of the run.
    pub seed: u64,
    /// Blob size over the agents' rate: the time of a perfect swarm.
    pub ideal_s: f64,
    /// Download time of the fastest agent.
    pub first_s: Option<f64>,
    /// Download time of the median agent.
    pub median_s: Option<f64>,
    /// Download time of the slowest agent; none when some did not finish.
    pub last_s: Option<f64>,
    /// `ideal_s / last_s`: 1.0 is a swarm where every host downloads at
    /// its full rate.
    pub line_rate_fraction: Option<f64>,
    /// `ideal_s / median_s`.
    pub median_fraction: Option<f64>,
    /// Bytes the origins sent, in copies of the blob.
    pub seed_upload_copies: f64,
    /// Agents that had not finished when the run stopped.
    pub unfinished: u32,
    /// Announces the tracker answered.
    pub announces: u64,
    /// Events the simulator processed.
    pub events: u64,
    /// Virtual time when the run stopped.
    pub virtual_s: f64,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Each agent's start and download time, by agent.
    #[serde(skip)]
    pub agents: Vec<AgentTimes>,
}

/// When one agent started and how long its download took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AgentTimes {
    /// Virtual seconds at which the agent asked for the blob.
    pub start_s: f64,
    /// Seconds from its start until it held the blob; none if it never did.
    pub download_s: Option<f64>,
}

/// Runs the swarm `options` describe until every agent holds the blob or
/// the time limit passes.
///
/// # Errors
///
/// When the options are invalid.
pub fn simulate(options: &SimOptions) -> Result<SimReport, SimOptionsError> {
    options.validate()?;
    Ok(world::World::new(options).run())
}

#[cfg(test)]
mod tests;
