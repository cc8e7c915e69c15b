//! The container-image layer of kraken-rs: everything specific to OCI and
//! Docker images on top of the generic blob distribution of `kraken-p2p`.
//!
//! - [`reference`](mod@reference): repository names, tags and references, validated with
//!   the OCI grammar.
//! - [`manifest`]: Docker schema 2 and OCI manifests and indexes, read for
//!   what they refer to; their bytes are never rewritten.
//! - [`resolve`]: walking an image's tree (index, manifests, blobs).
//! - [`api`]: the OCI distribution API, read/write on the proxy and
//!   read-only on agents.
//! - [`agent`]: the agent's blob source, the swarm.
//! - [`cluster`]: a whole cluster in one process, the one place the
//!   components are assembled.
//! - [`node`]: the wiring of each component, from the options its
//!   binary's config file holds.
//! - [`proxy`]: the proxy's uploads and pushes to the origins.
//! - [`error`]: the OCI error codes, their statuses and JSON body.
//! - [`http`]: what every server here shares (API version header, failure
//!   logging, path escaping).
//! - [`buildindex`]: the tag service: tags, manifest records, dependency
//!   checks, write-back to the backend and cross-cluster replication.

pub mod agent;
pub mod api;
pub mod buildindex;
pub mod cluster;
pub mod error;
pub mod http;
pub mod manifest;
pub mod node;
pub mod proxy;
pub mod reference;
pub mod resolve;

pub use error::{Error, ErrorCode, Result};
