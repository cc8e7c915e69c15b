//! Reference binaries of kraken-rs.
