//! `kraken-origin`: see `kraken_bins::components::origin` for what it runs
//! and `examples/configs/origin.toml` for its config file.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::cli::ComponentArgs;

/// Dedicated seeder of kraken-rs: takes uploads, owns blobs by rendezvous hashing, writes them back to the backend and seeds them.
#[derive(Debug, Parser)]
#[command(name = "kraken-origin", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    kraken_bins::run(kraken_bins::components::origin(Cli::parse().args))
}
