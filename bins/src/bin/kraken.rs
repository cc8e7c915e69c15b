//! `kraken`, the operator CLI of kraken-rs: a local cluster in one process
//! (`devcluster`), generic blobs in and out of a cluster (`blob`), and the
//! containerd mirror config of an agent (`agent containerd-config`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kraken_bins::cli::{AgentCommand, BlobCommand, DevclusterArgs};

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
    /// Runs a whole cluster on 127.0.0.1 in this process: an origin, a
    /// tracker, build-index, the proxy and two agents, over a filesystem
    /// backend, until interrupted.
    Devcluster(DevclusterArgs),
    /// Pushes generic blobs to a cluster's origins and pulls them from an
    /// agent.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// Helps hosts use their agent.
    #[command(subcommand)]
    Agent(AgentCommand),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Devcluster(args) => kraken_bins::run(kraken_bins::devcluster::run(args)),
        Command::Blob(command) => kraken_bins::run(kraken_bins::blob::run(command)),
        Command::Agent(command) => kraken_bins::run(kraken_bins::containerd::run(command)),
    }
}
