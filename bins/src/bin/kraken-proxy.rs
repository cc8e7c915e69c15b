//! `kraken-proxy`: see `kraken_bins::components::proxy` for what it runs
//! and `examples/configs/proxy.toml` for its config file.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::cli::ComponentArgs;

/// Read/write registry of kraken-rs that pushes go to: blobs to their owning origin, tags to build-index.
#[derive(Debug, Parser)]
#[command(name = "kraken-proxy", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    kraken_bins::run(kraken_bins::components::proxy(Cli::parse().args))
}
