//! A single-node Garage on 127.0.0.1, one per test, set up by
//! `shared/tools/s3/garage_single.sh`: the S3-compatible server that checks
//! SigV4 signatures.
//!
//! The tests need `garage` 2.5 (`shared/tools/s3/install_garage.sh` builds
//! it into `~/.cargo/bin`). Without it they print why they skip, unless
//! `CI` is set, where they fail.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use kraken_backends::s3::{S3Backend, S3BackendOptions};

use super::free_port;

/// The fixed credentials and bucket `garage_single.sh` sets up.
pub const ACCESS_KEY: &str = "GK000000000000000000000001";
pub const SECRET_KEY: &str = "0000000000000000000000000000000000000000000000000000000000000001";
pub const BUCKET: &str = "test-bucket";

/// A Garage started by the script, stopped by it (by its pid file) on drop.
pub struct Garage {
    script: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .env("GARAGE_DIR", self.dir.path())
            .status();
    }
}

impl Garage {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn options(&self) -> S3BackendOptions {
        S3BackendOptions {
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
            allow_http: true,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            prefix: "kraken/test".into(),
            ..S3BackendOptions::new(BUCKET, "us-east-1")
        }
    }

    pub fn backend(&self) -> S3Backend {
        S3Backend::new(self.options()).unwrap()
    }
}

/// `shared/` sits beside the clone in CI and on the dev machine.
fn script() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/s3");
    let dir = if beside.is_dir() {
        beside
    } else {
        PathBuf::from("/work/shared/tools/s3")
    };
    dir.join("garage_single.sh")
}

fn garage_binary() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = cargo_home
        .map(|h| h.join("bin"))
        .into_iter()
        .chain(std::env::split_paths(&path));
    dirs.map(|d| d.join("garage")).find(|p| p.is_file())
}

/// Starts Garage, or returns `None` (after saying why) when it is missing
/// outside CI.
pub fn start_garage() -> Option<Garage> {
    let Some(binary) = garage_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "garage is not installed; .ci/run installs it with shared/tools/s3/install_garage.sh"
        );
        eprintln!("skipping: garage is not installed (shared/tools/s3/install_garage.sh)");
        return None;
    };
    let script = script();
    assert!(script.is_file(), "missing {}", script.display());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let output = Command::new("bash")
        .arg(&script)
        .arg("start")
        .env("GARAGE_BIN", binary)
        .env("GARAGE_DIR", dir.path())
        .env("S3_PORT", port.to_string())
        .env("RPC_PORT", free_port().to_string())
        .env("ADMIN_PORT", free_port().to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // Built before checking the status so a failed start is stopped too.
    let garage = Garage { script, dir, port };
    assert!(
        output.status.success(),
        "garage_single.sh failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(garage.dir.path().join("garage.log")).unwrap_or_default()
    );
    Some(garage)
}
