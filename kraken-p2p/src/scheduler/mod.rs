//! The torrent scheduler: which peers to talk to, which pieces to ask them
//! for, and the engine that does it over real sockets.
//!
//! The decisions live in [`Torrent`], a state machine with no I/O; the
//! [`Engine`] that owns sockets and the disk drives it, and so does the
//! simulator.

mod config;
mod conn;
mod engine;
mod pick;
mod serve;
mod session;
mod stream;
mod torrent;
mod upload;

pub use config::{ConfigError, SchedulerConfig};
pub use engine::{Engine, EngineOptions, MissingBlob};
pub use serve::ServeQueue;
pub(crate) use session::{MAX_ANNOUNCE, MIN_ANNOUNCE, TICK};
pub use torrent::{Action, DisconnectReason, Torrent, Verdict};
