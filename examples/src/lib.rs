//! Examples of embedding and extending kraken-rs.
