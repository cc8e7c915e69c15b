//! Process plumbing shared by the reference binaries of kraken-rs.
//!
//! Each binary under `src/bin/` is a thin main: it parses flags, reads its
//! config file and hands a typed options struct to a library crate. Only
//! what every one of those mains repeats lives here; anything a host
//! application embedding kraken-rs would also need belongs in the library
//! crates instead.

use std::path::PathBuf;
use std::process::ExitCode;

/// The exit code of a binary whose component is not built yet.
///
/// It matches the code clap uses for usage errors, so scripts treat both as
/// "this invocation cannot work" rather than as a runtime failure.
pub const EXIT_NOT_IMPLEMENTED: u8 = 2;

/// Flags every long-running component takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ComponentArgs {
    /// TOML configuration file of this component.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Reports on stderr that `component` does not exist yet and returns the
/// matching exit code.
///
/// The binaries call this instead of starting a server, so nobody mistakes
/// a placeholder for a working process.
pub fn not_implemented(component: &str) -> ExitCode {
    eprintln!(
        "error: the {component} is not implemented yet; \
         this build of kraken-rs can only parse its flags"
    );
    ExitCode::from(EXIT_NOT_IMPLEMENTED)
}
