//! What an operator sees from each binary: help and version work, unknown
//! flags are refused, a component without a config file says so.

use std::process::{Command, Output};

const COMPONENTS: [&str; 5] = [
    env!("CARGO_BIN_EXE_kraken-agent"),
    env!("CARGO_BIN_EXE_kraken-origin"),
    env!("CARGO_BIN_EXE_kraken-tracker"),
    env!("CARGO_BIN_EXE_kraken-build-index"),
    env!("CARGO_BIN_EXE_kraken-proxy"),
];
const CLI: &str = env!("CARGO_BIN_EXE_kraken");

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).output().expect("binary runs")
}

#[test]
fn help_and_version_succeed() {
    for bin in COMPONENTS.into_iter().chain([CLI]) {
        let help = run(bin, &["--help"]);
        assert!(help.status.success(), "{bin} --help");
        assert!(String::from_utf8_lossy(&help.stdout).contains("Usage:"));
        let version = run(bin, &["--version"]);
        assert!(version.status.success(), "{bin} --version");
        let stdout = String::from_utf8_lossy(&version.stdout);
        assert!(
            stdout.contains(env!("CARGO_PKG_VERSION")),
            "{bin}: {stdout}"
        );
    }
    for sub in [
        &["devcluster", "--help"][..],
        &["blob", "push", "--help"],
        &["agent", "containerd-config", "--help"],
    ] {
        assert!(run(CLI, sub).status.success(), "kraken {sub:?}");
    }
}

#[test]
fn a_component_needs_its_config_file() {
    for bin in COMPONENTS {
        let out = run(bin, &[]);
        assert_eq!(out.status.code(), Some(2), "{bin}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    }
}

#[test]
fn unknown_flags_and_bad_arguments_are_refused() {
    assert!(!run(COMPONENTS[0], &["--no-such-flag"]).status.success());
    let out = run(CLI, &["devcluster", "--agents", "12"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(CLI, &["blob", "pull", "not-a-digest", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a digest"));
    let out = run(CLI, &["blob", "push", "/no/such/file", "-q"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file"));
}

#[test]
fn containerd_config_is_written_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        CLI,
        &[
            "agent",
            "containerd-config",
            "--dir",
            dir.path().to_str().unwrap(),
            "--registry",
            "docker.io",
            "--registry",
            "registry.example:5000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docker = std::fs::read_to_string(dir.path().join("docker.io/hosts.toml")).unwrap();
    assert!(
        docker.contains("server = \"https://registry-1.docker.io\""),
        "{docker}"
    );
    assert!(
        docker.contains("[host.\"http://127.0.0.1:16000\"]"),
        "{docker}"
    );
    assert!(
        dir.path()
            .join("registry.example:5000/hosts.toml")
            .is_file()
    );
}
