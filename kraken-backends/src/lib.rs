//! [`Backend`](kraken_core::Backend) implementations: where origins and
//! build-index keep the source of truth for blobs and tags.
//!
//! - [`fs::FsBackend`]: a directory tree on a local or mounted filesystem,
//!   the embedded default.
//!
//! Every backend here passes `kraken_core::testkit::backend_suite`.

pub mod fs;
