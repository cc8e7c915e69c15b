//! Log output: human-readable text or one JSON object per line, filtered by
//! a level or an `EnvFilter` directive (`RUST_LOG` wins when set).

use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Log settings, from flags or the `[log]` table of a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
#[serde(default, deny_unknown_fields)]
pub struct LogOptions {
    /// Log format.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,
    /// Level or filter directive, such as `info` or `kraken_p2p=debug,info`;
    /// `RUST_LOG` overrides it.
    #[arg(long = "log-level", default_value = "info")]
    pub level: String,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Installs the process's log subscriber.
///
/// # Errors
///
/// When the level does not parse as a filter directive.
pub fn init(options: &LogOptions) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => EnvFilter::try_new(directive)?,
        _ => EnvFilter::try_new(&options.level)
            .map_err(|e| anyhow::anyhow!("log level {:?}: {e}", options.level))?,
    };
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours)
        .with_writer(std::io::stderr);
    let installed = match options.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
