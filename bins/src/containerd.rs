//! `kraken agent containerd-config`: the `hosts.toml` files that make
//! containerd pull through the node's agent.
//!
//! One file per mirrored registry, at `<dir>/<host>/hosts.toml`
//! (`<dir>/registry:5000/hosts.toml` for a registry with a port, a name
//! containerd looks up; `_default` for every registry without a file of
//! its own). The agent is the first host, with `pull` and `resolve`: it
//! resolves tags at build-index, so its answers are fresh. The upstream
//! stays as `server`, so a dead agent does not stop pulls, unless
//! `--mirror-only` makes the agent the server too.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::cli::{AgentCommand, ContainerdArgs};

/// Runs a `kraken agent` subcommand.
///
/// # Errors
///
/// Bad arguments, or a file that cannot be written.
pub async fn run(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::ContainerdConfig(args) => write_all(&args),
    }
}

fn write_all(args: &ContainerdArgs) -> anyhow::Result<()> {
    for registry in &args.registries {
        let (path, text) = hosts_file(args, registry)?;
        if args.dry_run {
            println!("# {}\n{text}", path.display());
            continue;
        }
        let dir = path.parent().expect("a hosts file has a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The upstream URL containerd falls back to for `registry`.
fn upstream(registry: &str) -> String {
    match registry {
        "docker.io" => "https://registry-1.docker.io".to_owned(),
        other => format!("https://{other}"),
    }
}

/// The path and text of the hosts file for `registry`.
fn hosts_file(args: &ContainerdArgs, registry: &str) -> anyhow::Result<(PathBuf, String)> {
    let valid = !registry.is_empty()
        && registry
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        && !registry.starts_with(['.', '-']);
    if !valid {
        bail!("--registry {registry:?} is not a registry host such as docker.io or registry:5000");
    }
    if args.agent.contains('/') || !args.agent.contains(':') {
        bail!("--agent {:?} is not a host:port", args.agent);
    }
    let agent = format!("http://{}", args.agent);
    let mut text = String::from("# Written by `kraken agent containerd-config`.\n");
    if args.mirror_only {
        writeln!(text, "server = {agent:?}")?;
    } else if registry != "_default" {
        writeln!(text, "server = {:?}", upstream(registry))?;
    }
    writeln!(text, "\n[host.{agent:?}]")?;
    writeln!(text, "  capabilities = [\"pull\", \"resolve\"]")?;
    if let Some(timeout) = &args.dial_timeout {
        writeln!(text, "  dial_timeout = {timeout:?}")?;
    }
    Ok((args.dir.join(registry).join("hosts.toml"), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ContainerdArgs {
        ContainerdArgs {
            agent: "127.0.0.1:16000".into(),
            registries: vec!["docker.io".into()],
            dir: PathBuf::from("/etc/containerd/certs.d"),
            mirror_only: false,
            dial_timeout: None,
            dry_run: true,
        }
    }

    #[test]
    fn the_agent_comes_first_and_the_upstream_stays_as_server() {
        let (path, text) = hosts_file(&args(), "docker.io").unwrap();
        assert_eq!(
            path,
            PathBuf::from("/etc/containerd/certs.d/docker.io/hosts.toml")
        );
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(
            parsed["server"].as_str(),
            Some("https://registry-1.docker.io")
        );
        let host = &parsed["host"]["http://127.0.0.1:16000"];
        assert_eq!(host["capabilities"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn mirror_only_and_default_files() {
        let mirror_only = ContainerdArgs {
            mirror_only: true,
            dial_timeout: Some("200ms".into()),
            ..args()
        };
        let (_, text) = hosts_file(&mirror_only, "ghcr.io").unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["server"].as_str(), Some("http://127.0.0.1:16000"));
        assert_eq!(
            parsed["host"]["http://127.0.0.1:16000"]["dial_timeout"].as_str(),
            Some("200ms")
        );
        let (path, text) = hosts_file(&args(), "_default").unwrap();
        assert!(path.ends_with("_default/hosts.toml"));
        assert!(
            !toml::from_str::<toml::Value>(&text)
                .unwrap()
                .as_table()
                .unwrap()
                .contains_key("server")
        );
    }

    #[test]
    fn bad_hosts_are_refused() {
        for bad in ["", "../etc", "a/b", "-x", "a b"] {
            assert!(hosts_file(&args(), bad).is_err(), "{bad:?}");
        }
        let bad_agent = ContainerdArgs {
            agent: "http://127.0.0.1:16000".into(),
            ..args()
        };
        assert!(hosts_file(&bad_agent, "docker.io").is_err());
    }
}
