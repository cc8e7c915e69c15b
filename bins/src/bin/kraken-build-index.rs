//! `kraken-build-index`, the tag service.
//!
//! The build-index will map `repo:tag` to a digest, refuse tags whose
//! dependencies are missing, and replicate tags to remote clusters. The
//! component is not built yet: this main parses its flags and then exits
//! with code 2.

use std::process::ExitCode;

use clap::Parser;
use kraken_bins::ComponentArgs;

/// Tag service of kraken-rs: maps tags to digests and replicates them
/// across clusters.
#[derive(Debug, Parser)]
#[command(name = "kraken-build-index", version)]
struct Cli {
    #[command(flatten)]
    args: ComponentArgs,
}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    kraken_bins::not_implemented("build-index")
}
