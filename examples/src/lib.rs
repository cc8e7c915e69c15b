//! Examples of embedding and extending kraken-rs. Each example is a file
//! beside this crate's manifest; run one with
//! `cargo run -p kraken-examples --example <name>`.
