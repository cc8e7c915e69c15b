//! The container-image layer of kraken-rs: everything specific to OCI and
//! Docker images on top of the generic blob distribution of `kraken-p2p`.
//!
//! - [`reference`]: repository names, tags and references, validated with
//!   the OCI grammar.
//! - [`manifest`]: Docker schema 2 and OCI manifests and indexes, read for
//!   what they refer to; their bytes are never rewritten.
//! - [`resolve`]: walking an image's tree (index, manifests, blobs).
//! - [`error`]: the OCI error codes, their statuses and JSON body.
//! - [`http`]: what every server here shares (API version header, failure
//!   logging, path escaping).
//! - [`buildindex`]: the tag service: tags, manifest records, dependency
//!   checks, write-back to the backend and cross-cluster replication.

pub mod buildindex;
pub mod error;
pub mod http;
pub mod manifest;
pub mod reference;
pub mod resolve;

pub use error::{Error, ErrorCode, Result};
