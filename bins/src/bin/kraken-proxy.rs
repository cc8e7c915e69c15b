//! `kraken-proxy`, the registry that takes pushes.
//!
//! The proxy will serve the full read/write container registry API, hand
//! pushed blobs to their owning origins and record tags in the build-index.
//! The component is not built yet: this main parses its flags and then
//! exits with code 2.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::ComponentArgs;

/// Read/write container registry of kraken-rs: takes pushes and forwards
/// them to origins and the build-index.
#[derive(Debug, Parser)]
#[command(name = "kraken-proxy", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    kraken_bins::not_implemented("proxy")
}
