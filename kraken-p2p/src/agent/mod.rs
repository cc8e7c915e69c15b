//! The agent: the per-host peer that fetches blobs through the swarm for
//! local clients and seeds what it holds.
//!
//! Two faces share one [`Scheduler`](kraken_core::Scheduler). A host
//! application embeds an [`Agent`] and calls [`Agent::get`] or
//! [`Agent::stream`]; other processes on the host use the generic blob API
//! over HTTP that [`router`] serves, which streams a blob to its client while
//! later pieces still download.

mod builder;
mod error;
mod http;

pub use builder::{Agent, AgentBuilder};
pub use http::router;
