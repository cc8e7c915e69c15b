//! Container-image layer of kraken-rs. Work in progress: see the issues.
