//! `kraken-origin`, the dedicated seeder.
//!
//! An origin will accept blob uploads, seed every blob it owns, and write
//! blobs back to (and read them through from) the storage backend. The
//! component is not built yet: this main parses its flags and then exits
//! with code 2.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::ComponentArgs;

/// Dedicated seeder of kraken-rs: takes uploads, seeds the blobs it owns
/// and writes them back to the backend.
#[derive(Debug, Parser)]
#[command(name = "kraken-origin", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    kraken_bins::not_implemented("origin")
}
