//! `kraken-tracker`: see `kraken_bins::components::tracker` for what it runs
//! and `examples/configs/tracker.toml` for its config file.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::cli::ComponentArgs;

/// Tracker of kraken-rs: hands each peer the others that hold a blob.
#[derive(Debug, Parser)]
#[command(name = "kraken-tracker", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    kraken_bins::run(kraken_bins::components::tracker(Cli::parse().args))
}
