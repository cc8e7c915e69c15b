//! The torrent scheduler: which peers to talk to and which pieces to ask
//! them for.
//!
//! The decisions live in [`Torrent`], a state machine with no I/O; the
//! engine that owns sockets and the disk drives it, and so does the
//! simulator.

mod config;
mod torrent;

pub use config::{ConfigError, SchedulerConfig};
pub use torrent::{Action, DisconnectReason, Torrent, Verdict};
