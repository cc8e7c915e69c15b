//! `kraken-build-index`: see `kraken_bins::components::build_index` for what it runs
//! and `examples/configs/build-index.toml` for its config file.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::cli::ComponentArgs;

/// Tag service of kraken-rs: tags to digests, dependency checks, write-through to the backend, replication to other clusters.
#[derive(Debug, Parser)]
#[command(name = "kraken-build-index", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    kraken_bins::run(kraken_bins::components::build_index(Cli::parse().args))
}
