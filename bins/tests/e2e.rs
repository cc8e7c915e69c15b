//! The whole system as operators run it: every component a separate
//! process started from its own config file (three origins, a tracker on
//! Redis, build-index, the proxy, three agents), driven by real clients:
//! skopeo, podman, containerd and oras.
//!
//! Needs skopeo, podman, containerd and redis-server (Debian), oras (PyPI,
//! in `KRAKEN_ORAS_PYTHON` or `/tmp/lab-venv/bin/python`), and
//! `shared/tools` beside the repository; without them the test says what is
//! missing and passes, except under `CI=true`, where it fails.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kraken_core::Digest;

fn tools() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools")
}

fn oras_python() -> String {
    std::env::var("KRAKEN_ORAS_PYTHON").unwrap_or_else(|_| "/tmp/lab-venv/bin/python".into())
}

/// What is missing to run the test, if anything.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    for tool in ["skopeo", "podman", "containerd", "ctr", "redis-server"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(tool.to_owned());
        }
    }
    for script in ["make-test-image", "start-lab-containerd"] {
        if !tools().join(script).is_file() {
            missing.push(tools().join(script).display().to_string());
        }
    }
    let oras = Command::new(oras_python())
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !oras {
        missing.push(format!("oras (pip) for {}", oras_python()));
    }
    missing
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a command to completion within five minutes; its stdout, or the
/// test fails with its stderr.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg("300")
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn skopeo(args: &[&str]) -> String {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all)
}

/// Processes the test started, killed when it ends.
#[derive(Default)]
struct Processes {
    children: Vec<(String, Child)>,
}

impl Processes {
    fn spawn(&mut self, name: &str, program: &str, args: &[&str], log: &Path) -> usize {
        let out = std::fs::File::create(log.join(format!("{name}.log"))).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children.push((name.to_owned(), child));
        self.children.len() - 1
    }

    fn kill(&mut self, index: usize) {
        let (_, child) = &mut self.children[index];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn terminate(&mut self, index: usize) -> std::process::ExitStatus {
        let (name, child) = &mut self.children[index];
        let pid = child.id().to_string();
        run("kill", &["-TERM", &pid]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{name} did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `addr` answers `GET path` with 200.
fn wait_ready(addr: SocketAddr, path: &str, name: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_status(addr, path) == Some(200) {
            return;
        }
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(log.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} never became ready at {addr}{path}; its log:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 GET, to poll readiness without an async runtime.
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

struct Layout {
    dir: PathBuf,
    origins: Vec<(u16, u16)>,
    tracker: u16,
    build_index: u16,
    proxy: u16,
    agents: Vec<(u16, u16, u16)>,
    redis: u16,
}

impl Layout {
    fn new(dir: &Path) -> Layout {
        Layout {
            dir: dir.to_owned(),
            origins: (0..3).map(|_| (free_port(), free_port())).collect(),
            tracker: free_port(),
            build_index: free_port(),
            proxy: free_port(),
            agents: (0..3)
                .map(|_| (free_port(), free_port(), free_port()))
                .collect(),
            redis: free_port(),
        }
    }

    fn origin_addrs(&self) -> String {
        let addrs: Vec<String> = self
            .origins
            .iter()
            .map(|(http, _)| format!("\"127.0.0.1:{http}\""))
            .collect();
        format!("[{}]", addrs.join(", "))
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn origin_config(&self, i: usize) -> String {
        let (http, p2p) = self.origins[i];
        self.write(
            &format!("origin-{i}"),
            &format!(
                r#"listen = "127.0.0.1:{http}"
[log]
level = "info"
[origin]
addr = "127.0.0.1:{http}"
queue_path = "{queue}"
[origin.cluster]
members = {members}
replicas = 3
[origin.cluster.health]
interval = "500ms"
timeout = "1s"
fails = 2
passes = 1
[origin.p2p]
listen = "127.0.0.1:{p2p}"
[store]
root = "{store}"
capacity = "4GiB"
[[backends]]
namespace = ".*"
kind = "fs"
root = "{backend}"
"#,
                queue = self.path(&format!("origin-{i}/queue.redb")),
                members = self.origin_addrs(),
                store = self.path(&format!("origin-{i}/store")),
                backend = self.path("backend"),
            ),
        )
    }

    fn tracker_config(&self) -> String {
        self.write(
            "tracker",
            &format!(
                r#"listen = "127.0.0.1:{port}"
[tracker]
origins = {origins}
[tracker.peer_store]
kind = "redis"
url = "redis://127.0.0.1:{redis}"
key_prefix = "e2e:"
[tracker.handout]
announce_interval = "1s"
"#,
                port = self.tracker,
                origins = self.origin_addrs(),
                redis = self.redis,
            ),
        )
    }

    fn build_index_config(&self) -> String {
        self.write(
            "build-index",
            &format!(
                r#"listen = "127.0.0.1:{port}"
[build_index]
database_path = "{db}"
origins = {origins}
[[backends]]
namespace = ".*"
kind = "fs"
root = "{backend}"
"#,
                port = self.build_index,
                db = self.path("build-index/index.redb"),
                origins = self.origin_addrs(),
                backend = self.path("tags"),
            ),
        )
    }

    fn proxy_config(&self) -> String {
        self.write(
            "proxy",
            &format!(
                r#"listen = "127.0.0.1:{port}"
[proxy]
origins = {origins}
build_index = ["127.0.0.1:{bi}"]
[proxy.store]
root = "{store}"
capacity = "4GiB"
"#,
                port = self.proxy,
                origins = self.origin_addrs(),
                bi = self.build_index,
                store = self.path("proxy/store"),
            ),
        )
    }

    fn agent_config(&self, i: usize) -> String {
        let (registry, p2p, api) = self.agents[i];
        self.write(
            &format!("agent-{i}"),
            &format!(
                r#"[agent]
registry_listen = "127.0.0.1:{registry}"
api_listen = "127.0.0.1:{api}"
trackers = ["http://127.0.0.1:{tracker}"]
build_index = ["127.0.0.1:{bi}"]
[agent.registry]
push_to = "127.0.0.1:{proxy}"
[agent.p2p]
listen = "127.0.0.1:{p2p}"
[agent.p2p.scheduler]
announce_interval = "1s"
[agent.store]
root = "{store}"
capacity = "4GiB"
"#,
                tracker = self.tracker,
                bi = self.build_index,
                proxy = self.proxy,
                store = self.path(&format!("agent-{i}/store")),
            ),
        )
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn bin(name: &str) -> &'static str {
    match name {
        "origin" => env!("CARGO_BIN_EXE_kraken-origin"),
        "tracker" => env!("CARGO_BIN_EXE_kraken-tracker"),
        "build-index" => env!("CARGO_BIN_EXE_kraken-build-index"),
        "proxy" => env!("CARGO_BIN_EXE_kraken-proxy"),
        "agent" => env!("CARGO_BIN_EXE_kraken-agent"),
        _ => env!("CARGO_BIN_EXE_kraken"),
    }
}

/// Builds an image with make-test-image; returns (skopeo source, digest).
fn image(dir: &Path, name: &str, args: &[&str]) -> (String, Digest) {
    let out = dir.join(name);
    let out_str = out.display().to_string();
    let mut all = vec!["-o", &out_str];
    all.extend_from_slice(args);
    let maker = tools().join("make-test-image");
    let digest = run(maker.to_str().unwrap(), &all).trim().parse().unwrap();
    let source = if args.contains(&"v2s2") {
        format!("dir:{out_str}")
    } else {
        let tag = args[args.iter().position(|a| *a == "-t").unwrap() + 1];
        format!("oci:{out_str}:{tag}")
    };
    (source, digest)
}

fn push(source: &str, proxy: u16, target: &str) {
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        source,
        &format!("docker://127.0.0.1:{proxy}/{target}"),
    ]);
}

/// The digest of the top-level manifest an agent serves for `target`.
fn served_digest(agent: u16, target: &str) -> Digest {
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://127.0.0.1:{agent}/{target}"),
    ]);
    Digest::sha256_of(raw.as_bytes())
}

/// Pulls `target` from an agent into a skopeo `dir:` and checks every
/// file against the digest it is named by.
fn pull_and_verify(agent: u16, target: &str, out: &Path) -> Digest {
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("docker://127.0.0.1:{agent}/{target}"),
        &format!("dir:{}", out.display()),
    ]);
    for entry in std::fs::read_dir(out).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let hex = name.strip_suffix(".manifest.json").unwrap_or(&name);
        if let Ok(digest) = format!("sha256:{hex}").parse::<Digest>() {
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(Digest::sha256_of(&bytes), digest, "{}", path.display());
        }
    }
    Digest::sha256_of(&std::fs::read(out.join("manifest.json")).unwrap())
}

#[test]
fn the_binaries_serve_real_clients_end_to_end() {
    let missing = missing();
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs every tool of the end-to-end test; missing: {missing:?}"
        );
        eprintln!("skipping the end-to-end test; missing: {missing:?}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let layout = Layout::new(work.path());
    let mut procs = Processes::default();

    let redis_port = layout.redis.to_string();
    procs.spawn(
        "redis",
        "redis-server",
        &[
            "--port",
            &redis_port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        &logs,
    );
    let mut origins = Vec::new();
    for i in 0..3 {
        let config = layout.origin_config(i);
        origins.push(procs.spawn(
            &format!("origin-{i}"),
            bin("origin"),
            &["--config", &config],
            &logs,
        ));
    }
    for (i, (http, _)) in layout.origins.iter().enumerate() {
        wait_ready(addr(*http), "/readiness", &format!("origin-{i}"), &logs);
    }
    let tracker = layout.tracker_config();
    procs.spawn("tracker", bin("tracker"), &["--config", &tracker], &logs);
    let build_index = layout.build_index_config();
    procs.spawn(
        "build-index",
        bin("build-index"),
        &["--config", &build_index],
        &logs,
    );
    let proxy_config = layout.proxy_config();
    let proxy_process = procs.spawn("proxy", bin("proxy"), &["--config", &proxy_config], &logs);
    wait_ready(addr(layout.tracker), "/readiness", "tracker", &logs);
    wait_ready(addr(layout.build_index), "/readiness", "build-index", &logs);
    wait_ready(addr(layout.proxy), "/v2/", "proxy", &logs);
    for i in 0..3 {
        let config = layout.agent_config(i);
        procs.spawn(
            &format!("agent-{i}"),
            bin("agent"),
            &["--config", &config],
            &logs,
        );
    }
    for (i, (registry, _, api)) in layout.agents.iter().enumerate() {
        wait_ready(addr(*api), "/health", &format!("agent-{i}"), &logs);
        wait_ready(addr(*registry), "/v2/", &format!("agent-{i}"), &logs);
    }
    let proxy = layout.proxy;
    let agents: Vec<u16> = layout.agents.iter().map(|a| a.0).collect();

    // Three images pushed with skopeo; each pulled from every agent.
    let images = work.path().join("images");
    let layers = image(
        &images,
        "layers",
        &["-t", "v1", "-l", "3", "-s", "1", "--seed", "11"],
    );
    let multi = image(
        &images,
        "multi",
        &[
            "-t",
            "v1",
            "-l",
            "2",
            "-s",
            "0.5",
            "--seed",
            "12",
            "--multi-arch",
        ],
    );
    let docker = image(
        &images,
        "docker",
        &["-l", "2", "-s", "0.5", "--seed", "13", "-f", "v2s2"],
    );
    let pushed = [
        ("e2e/layers:v1", &layers),
        ("e2e/multi:v1", &multi),
        ("e2e/docker:v1", &docker),
    ];
    for (target, (source, _)) in pushed {
        push(source, proxy, target);
    }
    for (i, agent) in agents.iter().enumerate() {
        for (target, (_, digest)) in pushed {
            assert_eq!(
                served_digest(*agent, target),
                *digest,
                "{target} via agent {i}"
            );
            let out = work
                .path()
                .join(format!("pulled/{i}/{}", target.replace(['/', ':'], "-")));
            assert_eq!(
                pull_and_verify(*agent, target, &out),
                *digest,
                "{target} via agent {i}"
            );
        }
    }

    // podman pulls from an agent.
    let podman_root = work.path().join("podman");
    let root = podman_root.join("root").display().to_string();
    let runroot = podman_root.join("run").display().to_string();
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root",
            &root,
            "--runroot",
            &runroot,
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        run("podman", &all)
    };
    podman(&[
        "pull",
        "--tls-verify=false",
        &format!("127.0.0.1:{}/e2e/layers:v1", agents[1]),
    ]);
    let listed = podman(&["images", "--digests", "--format", "{{.Digest}}"]);
    assert!(
        listed.contains(&layers.1.to_string()),
        "podman has {listed}"
    );

    // containerd pulls docker.io/library/e2e:v1 through an agent as mirror.
    push(&layers.0, proxy, "library/e2e:v1");
    let ctrd = work.path().join("ctrd");
    let certs = ctrd.join("certs.d");
    run(
        bin("kraken"),
        &[
            "agent",
            "containerd-config",
            "--agent",
            &format!("127.0.0.1:{}", agents[2]),
            "--registry",
            "docker.io",
            "--dir",
            certs.to_str().unwrap(),
        ],
    );
    let starter = tools().join("start-lab-containerd");
    let socket = run(
        starter.to_str().unwrap(),
        &["--dir", ctrd.to_str().unwrap()],
    );
    let socket = socket.trim().to_owned();
    let pulled = Command::new("timeout")
        .args(["300", "ctr", "-a", &socket, "images", "pull", "--hosts-dir"])
        .arg(&certs)
        .arg("docker.io/library/e2e:v1")
        .output()
        .unwrap();
    let listed = Command::new("ctr")
        .args(["-a", &socket, "images", "ls"])
        .output()
        .unwrap();
    run(
        starter.to_str().unwrap(),
        &["--dir", ctrd.to_str().unwrap(), "--stop"],
    );
    assert!(
        pulled.status.success(),
        "ctr pull: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&layers.1.to_string()),
        "containerd has {listed}"
    );

    // A re-pushed tag: the next pull from an agent gets the new digest.
    let newer = image(
        &images,
        "newer",
        &["-t", "v1", "-l", "2", "-s", "0.5", "--seed", "21"],
    );
    push(&newer.0, proxy, "e2e/layers:v1");
    assert_eq!(served_digest(agents[0], "e2e/layers:v1"), newer.1);

    // oras pushes an artifact of two files to the proxy; it comes back
    // from an agent.
    let artifact = work.path().join("artifact");
    std::fs::create_dir_all(&artifact).unwrap();
    std::fs::write(artifact.join("a.txt"), "first file\n").unwrap();
    std::fs::write(artifact.join("b.bin"), vec![7u8; 300_000]).unwrap();
    let script = format!(
        r#"
import os, sys, oras.client
os.chdir({dir:?})
push = oras.client.OrasClient(hostname="127.0.0.1:{proxy}", insecure=True)
push.push(files=["a.txt", "b.bin"], target="127.0.0.1:{proxy}/e2e/artifact:v1")
pull = oras.client.OrasClient(hostname="127.0.0.1:{agent}", insecure=True)
got = pull.pull(target="127.0.0.1:{agent}/e2e/artifact:v1", outdir="out")
print("\n".join(sorted(os.path.basename(p) for p in got)))
"#,
        dir = artifact.display().to_string(),
        agent = agents[1],
    );
    let names = run(&oras_python(), &["-c", &script]);
    assert_eq!(
        names.split_whitespace().collect::<Vec<_>>(),
        ["a.txt", "b.bin"]
    );
    for file in ["a.txt", "b.bin"] {
        let sent = std::fs::read(artifact.join(file)).unwrap();
        let got = std::fs::read(artifact.join("out").join(file)).unwrap();
        assert_eq!(sent, got, "{file}");
    }

    // One origin killed: pushes and pulls still complete.
    procs.kill(origins[0]);
    let after = image(
        &images,
        "after",
        &["-t", "v1", "-l", "2", "-s", "0.5", "--seed", "31"],
    );
    push(&after.0, proxy, "e2e/after:v1");
    for (i, agent) in agents.iter().enumerate() {
        let out = work.path().join(format!("after/{i}"));
        assert_eq!(
            pull_and_verify(*agent, "e2e/after:v1", &out),
            after.1,
            "agent {i}"
        );
    }

    // SIGTERM stops a component cleanly.
    let status = procs.terminate(proxy_process);
    assert!(status.success(), "proxy exited with {status}");
}

#[test]
fn devcluster_pushes_and_pulls_then_stops() {
    let missing = missing();
    if missing
        .iter()
        .any(|m| m == "skopeo" || m.contains("make-test-image"))
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs {missing:?}"
        );
        eprintln!("skipping the devcluster test; missing: {missing:?}");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let logs = work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut procs = Processes::default();
    let data = work.path().join("data").display().to_string();
    let cluster = procs.spawn(
        "devcluster",
        bin("kraken"),
        &["devcluster", "--data-dir", &data],
        &logs,
    );
    wait_ready(addr(15000), "/v2/", "devcluster", &logs);
    wait_ready(addr(16000), "/v2/", "devcluster", &logs);
    let (source, digest) = image(
        work.path(),
        "img",
        &["-t", "v1", "-l", "1", "-s", "0.5", "--seed", "41"],
    );
    push(&source, 15000, "demo/app:v1");
    assert_eq!(
        pull_and_verify(17000, "demo/app:v1", &work.path().join("pulled")),
        digest
    );
    let status = procs.terminate(cluster);
    assert!(status.success(), "devcluster exited with {status}");
    let log = std::fs::read_to_string(logs.join("devcluster.log")).unwrap();
    assert!(log.contains("stopped; state kept in"), "{log}");
}
