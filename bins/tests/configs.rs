//! The example configs load, and bad config files stop a component at
//! start with the file, line and key named.

use std::path::PathBuf;
use std::process::Command;

use kraken_bins::components::{check_file, parse};

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/configs")
}

#[test]
fn every_example_config_loads() {
    for component in ["origin", "tracker", "build-index", "proxy", "agent"] {
        let path = examples().join(format!("{component}.toml"));
        check_file(component, &path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
    }
}

#[test]
fn the_binaries_check_their_files() {
    let origin = env!("CARGO_BIN_EXE_kraken-origin");
    let out = Command::new(origin)
        .args([
            "--config",
            examples().join("origin.toml").to_str().unwrap(),
            "--check",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let proxy = env!("CARGO_BIN_EXE_kraken-proxy");
    let out = Command::new(proxy)
        .args([
            "--config",
            examples().join("origin.toml").to_str().unwrap(),
            "--check",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an origin file is no proxy file"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("origin.toml") && stderr.contains("unknown field"),
        "{stderr}"
    );
    let out = Command::new(proxy)
        .args(["--config", "/no/such/file.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.toml"));
}

const TRACKER: &str = r#"
listen = "127.0.0.1:15003"
[tracker]
origins = ["127.0.0.1:15002"]
"#;

#[test]
fn typos_and_impossible_settings_are_named() {
    parse("tracker", TRACKER).unwrap();
    let typo = TRACKER.replace("origins", "orgins");
    let e = format!("{:#}", parse("tracker", &typo).unwrap_err());
    assert!(e.contains("orgins"), "{e}");
    assert!(e.contains("line"), "{e}");
    let bad_duration = format!("{TRACKER}[tracker.handout]\nannounce_interval = \"soon\"\n");
    let e = format!("{:#}", parse("tracker", &bad_duration).unwrap_err());
    assert!(e.contains("announce_interval"), "{e}");
    let no_origins = TRACKER.replace("[\"127.0.0.1:15002\"]", "[]");
    let e = format!("{:#}", parse("tracker", &no_origins).unwrap_err());
    assert!(e.contains("origins"), "{e}");
    let bad_addr = TRACKER.replace("127.0.0.1:15003", "localhost");
    assert!(parse("tracker", &bad_addr).is_err());
    let origin = std::fs::read_to_string(examples().join("origin.toml")).unwrap();
    let zero = origin.replace("replicas = 3", "replicas = 0");
    let e = format!("{:#}", parse("origin", &zero).unwrap_err());
    assert!(e.contains("replicas"), "{e}");
    let bad_size = origin.replace("\"500GiB\"", "\"lots\"");
    let e = format!("{:#}", parse("origin", &bad_size).unwrap_err());
    assert!(e.contains("capacity"), "{e}");
    assert!(parse("origin", "").is_err());
    assert!(parse("nonsense", TRACKER).is_err());
}

#[test]
fn secrets_are_redacted_when_logged() {
    let origin = std::fs::read_to_string(examples().join("origin.toml")).unwrap();
    let with_secret = origin.replace(
        "\nfrom_env = true\n",
        "\naccess_key_id = \"AKIAEXAMPLE\"\nsecret_access_key = \"very-secret-value\"\n",
    );
    let file: kraken_bins::components::OriginFile =
        kraken_bins::config::parse(&with_secret).unwrap();
    let logged = format!("{file:?}");
    assert!(!logged.contains("very-secret-value"), "{logged}");
}

#[test]
fn missing_tls_files_are_named_at_check() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("proxy.crt");
    let key = dir.path().join("proxy.key");
    let path = dir.path().join("tracker.toml");
    let with_tls = format!(
        "{TRACKER}[tls]\ncert = {:?}\nkey = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    // Parsing alone never touches the filesystem.
    parse("tracker", &with_tls).unwrap();
    std::fs::write(&path, &with_tls).unwrap();
    let e = format!("{:#}", check_file("tracker", &path).unwrap_err());
    assert!(e.contains("[tls]") && e.contains("proxy.crt"), "{e}");

    std::fs::write(&cert, "not a certificate\n").unwrap();
    let e = format!("{:#}", check_file("tracker", &path).unwrap_err());
    assert!(
        e.contains("holds no certificate") && e.contains("proxy.crt"),
        "{e}"
    );

    let client = format!(
        "{TRACKER}[tracker.origin_client.tls]\nca = {:?}\n",
        dir.path().join("no-ca.pem").display().to_string()
    );
    std::fs::write(&path, client).unwrap();
    let e = format!("{:#}", check_file("tracker", &path).unwrap_err());
    assert!(
        e.contains("[tracker.origin_client.tls]") && e.contains("no-ca.pem"),
        "{e}"
    );
}
