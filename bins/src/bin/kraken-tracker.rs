//! `kraken-tracker`, the announce endpoint.
//!
//! A tracker will hand each announcing peer a small random sample of others
//! that hold the same blob, and serve piece metadata it learns from the
//! origins. The component is not built yet: this main parses its flags and
//! then exits with code 2.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::ComponentArgs;

/// Announce endpoint of kraken-rs: hands out peers and serves piece
/// metadata.
#[derive(Debug, Parser)]
#[command(name = "kraken-tracker", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    kraken_bins::not_implemented("tracker")
}
