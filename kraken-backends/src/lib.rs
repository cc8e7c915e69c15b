//! Backends of kraken-rs.
