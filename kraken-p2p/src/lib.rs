//! Peer-to-peer engine of kraken-rs. Work in progress: see the issues.
