//! `kraken-agent`: see `kraken_bins::components::agent` for what it runs
//! and `examples/configs/agent.toml` for its config file.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::cli::ComponentArgs;

/// Per-host peer of kraken-rs: a read-only registry on localhost whose blobs come through the swarm, and a generic blob API.
#[derive(Debug, Parser)]
#[command(name = "kraken-agent", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    kraken_bins::run(kraken_bins::components::agent(Cli::parse().args))
}
