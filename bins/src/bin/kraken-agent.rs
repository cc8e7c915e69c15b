//! `kraken-agent`, the peer that runs on every host.
//!
//! The agent will serve a read-only registry on localhost, fetch each blob's
//! pieces from other agents and origins at once, and keep seeding what it
//! has. The component is not built yet: this main parses its flags and then
//! exits with code 2.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::ComponentArgs;

/// Per-host peer of kraken-rs: a read-only registry on localhost that
/// downloads blobs through the swarm.
#[derive(Debug, Parser)]
#[command(name = "kraken-agent", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    kraken_bins::not_implemented("agent")
}
