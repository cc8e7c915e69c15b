//! `kraken`, the operator CLI of kraken-rs.
//!
//! Its first subcommand, `devcluster`, will run a whole cluster (origin,
//! tracker, build-index, proxy and agents) in one process for local use.
//! The cluster assembly does not exist yet, so every subcommand reports that
//! and exits with code 2.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kraken_bins::ComponentArgs;

/// Operator CLI of kraken-rs, a peer-to-peer distributor of container
/// images and other content-addressed blobs.
#[derive(Debug, Parser)]
#[command(name = "kraken", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a local cluster of every component in one process.
    Devcluster(ComponentArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Devcluster(_) => kraken_bins::not_implemented("local cluster (devcluster)"),
    }
}
