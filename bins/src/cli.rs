//! The flags of the binaries.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::logging::LogOptions;

/// Flags every long-running component takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ComponentArgs {
    /// TOML configuration file of this component.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Checks the config file and exits: 0 when it would start.
    #[arg(long)]
    pub check: bool,
    /// Log settings; they override the config file's `[log]` table.
    #[command(flatten)]
    pub log: LogFlags,
}

/// Log flags that override a config file's `[log]` table when given.
#[derive(Debug, Clone, clap::Args)]
pub struct LogFlags {
    /// Log format: text or json.
    #[arg(long = "log-format", value_enum)]
    pub format: Option<crate::logging::LogFormat>,
    /// Level or filter directive, such as `info` or `kraken_p2p=debug,info`.
    #[arg(long = "log-level")]
    pub level: Option<String>,
}

impl LogFlags {
    /// `options` with the flags given applied over it.
    pub fn apply(&self, mut options: LogOptions) -> LogOptions {
        if let Some(format) = self.format {
            options.format = format;
        }
        if let Some(level) = &self.level {
            options.level = level.clone();
        }
        options
    }
}

/// `kraken devcluster`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevclusterArgs {
    /// Where every component keeps its state (stores, queues, the
    /// filesystem backend); kept across runs.
    #[arg(long, value_name = "DIR", default_value = "kraken-devcluster")]
    pub data_dir: PathBuf,
    /// Origins to run (origin i listens on 15002 + 100 i, P2P 15001 + 100 i).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=9))]
    pub origins: u8,
    /// Agents to run (agent i: registry 16000 + 1000 i, P2P and blob API
    /// on the next two ports).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=9))]
    pub agents: u8,
    /// Log settings.
    #[command(flatten)]
    pub log: LogOptions,
}

/// `kraken blob ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BlobCommand {
    /// Uploads a file to the origins of a cluster under its SHA-256 digest,
    /// and prints the digest.
    Push {
        /// The file.
        file: PathBuf,
        /// An origin's HTTP address; repeat for several (the owners are
        /// found from any of them).
        #[arg(
            long = "origin",
            value_name = "HOST:PORT",
            default_value = "127.0.0.1:15002"
        )]
        origins: Vec<String>,
        /// The namespace, which selects the backend.
        #[arg(long, default_value = "blobs")]
        namespace: String,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Downloads a blob through an agent (the swarm) and checks its digest.
    Pull {
        /// The digest, `sha256:<hex>`.
        digest: String,
        /// The agent's blob API address.
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:16002")]
        agent: SocketAddr,
        /// The namespace it was pushed under.
        #[arg(long, default_value = "blobs")]
        namespace: String,
        /// Where to write it; standard output when absent.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
}

/// `kraken agent ...`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AgentCommand {
    /// Writes the `hosts.toml` files that make containerd pull through the
    /// local agent, one per upstream registry.
    ContainerdConfig(ContainerdArgs),
}

/// `kraken agent containerd-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerdArgs {
    /// The agent's registry address.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:16000")]
    pub agent: String,
    /// Registries to mirror (`docker.io`, `ghcr.io`, `registry:5000`), or
    /// `_default` for every registry without its own file.
    #[arg(long = "registry", value_name = "HOST", default_value = "docker.io")]
    pub registries: Vec<String>,
    /// containerd's `config_path` directory.
    #[arg(long, value_name = "DIR", default_value = "/etc/containerd/certs.d")]
    pub dir: PathBuf,
    /// Never fall back to the upstream registry when the agent fails.
    #[arg(long)]
    pub mirror_only: bool,
    /// How long containerd waits to connect to the agent before it falls
    /// back to the upstream (containerd 1.7 and later read it).
    #[arg(long, value_name = "DURATION")]
    pub dial_timeout: Option<String>,
    /// Print the files instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
}
