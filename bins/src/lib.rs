//! Process plumbing shared by the reference binaries of kraken-rs.
//!
//! Each binary under `src/bin/` is a thin main: it parses flags, reads its
//! config file and hands typed option structs to the library crates. Only
//! what every one of those mains repeats lives here (flags, config files,
//! logging, signals); anything a host application embedding kraken-rs
//! would also need belongs in the library crates instead.

pub mod blob;
pub mod cli;
pub mod components;
pub mod config;
pub mod containerd;
pub mod devcluster;
pub mod logging;

use std::future::Future;

/// Resolves when the process is asked to stop: SIGTERM (how Kubernetes and
/// service managers stop a process) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("interrupted; shutting down"),
        () = terminate => tracing::info!("terminated; shutting down"),
    }
}

/// Runs `main` on a multi-threaded runtime and turns its error into exit
/// code 1 with the error chain on stderr.
pub fn run<F>(main: F) -> std::process::ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
