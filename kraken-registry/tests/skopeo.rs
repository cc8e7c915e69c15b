//! A real client against the in-process cluster: skopeo pushes images
//! built by `make-test-image` to the proxy (three layers; an OCI index of
//! two platforms; a Docker schema 2 manifest list) and pulls each back
//! through two agents, and every digest is compared.
//!
//! Needs `skopeo` (Debian) and `shared/tools/make-test-image` beside the
//! repository; without them the test says why and passes, except under
//! `CI=true`, where it fails.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestCluster;
use kraken_core::Digest;

fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools")
}

/// Whether the tools are here; under CI their absence is a failure.
fn tools_present() -> bool {
    let skopeo = Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let maker = tools_dir().join("make-test-image").is_file();
    if skopeo && maker {
        return true;
    }
    let why = format!(
        "skopeo installed: {skopeo}; {} present: {maker}",
        tools_dir().join("make-test-image").display()
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI needs skopeo: {why}"
    );
    eprintln!("skipping the skopeo test: {why}");
    false
}

/// Runs a command to completion (at most five minutes) and returns its
/// standard output; fails the test with its standard error otherwise.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg("300")
        .arg(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn run_async(program: &'static str, args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(program, &args)
    })
    .await
    .unwrap()
}

/// The digests of the files in a skopeo `dir:` or an OCI layout's blob
/// directory, each checked against its content.
fn verified_digests(dir: &Path) -> BTreeSet<Digest> {
    let mut digests = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let hex = name.strip_suffix(".manifest.json").unwrap_or(&name);
        let Ok(digest) = format!("sha256:{hex}").parse::<Digest>() else {
            continue;
        };
        let actual = Digest::sha256_of(&std::fs::read(&path).unwrap());
        assert_eq!(actual, digest, "{} holds other bytes", path.display());
        digests.insert(digest);
    }
    digests
}

struct Image {
    /// skopeo's name of the source (`oci:DIR:TAG` or `dir:DIR`).
    source: String,
    /// The top-level digest make-test-image printed.
    digest: Digest,
    /// Every blob and manifest digest of the source.
    digests: BTreeSet<Digest>,
}

fn build(dir: &Path, name: &str, args: &[&str]) -> Image {
    let out = dir.join(name);
    let out_str = out.to_str().unwrap();
    let mut all = vec!["-o", out_str];
    all.extend_from_slice(args);
    let maker = tools_dir().join("make-test-image");
    let printed = run(maker.to_str().unwrap(), &all);
    let digest: Digest = printed
        .trim()
        .parse()
        .expect("make-test-image prints a digest");
    let v2s2 = args.contains(&"v2s2");
    let (source, digests) = if v2s2 {
        (format!("dir:{out_str}"), verified_digests(&out))
    } else {
        let tag = args[args.iter().position(|a| *a == "-t").unwrap() + 1];
        (
            format!("oci:{out_str}:{tag}"),
            verified_digests(&out.join("blobs/sha256")),
        )
    };
    Image {
        source,
        digest,
        digests,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pushes_to_the_proxy_and_pulls_through_two_agents() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let images = [
        (
            "test/layers",
            build(
                work.path(),
                "layers",
                &["-t", "v1", "-l", "3", "-s", "0.5", "--seed", "1"],
            ),
        ),
        (
            "test/multi",
            build(
                work.path(),
                "multi",
                &[
                    "-t",
                    "v1",
                    "-l",
                    "2",
                    "-s",
                    "0.3",
                    "--seed",
                    "2",
                    "--multi-arch",
                ],
            ),
        ),
        (
            "test/docker",
            build(
                work.path(),
                "docker",
                &[
                    "-l",
                    "2",
                    "-s",
                    "0.3",
                    "--seed",
                    "3",
                    "--multi-arch",
                    "-f",
                    "v2s2",
                ],
            ),
        ),
    ];
    let cluster = TestCluster::start(2).await;
    let proxy = cluster.cluster.proxy_addr();
    for (repo, image) in &images {
        run_async(
            "skopeo",
            vec![
                "--insecure-policy".into(),
                "copy".into(),
                "--all".into(),
                "--dest-tls-verify=false".into(),
                image.source.clone(),
                format!("docker://{proxy}/{repo}:v1"),
            ],
        )
        .await;
    }
    for (i, agent) in cluster.cluster.agents().iter().enumerate() {
        let addr = agent.registry_addr();
        for (repo, image) in &images {
            let raw = run_async(
                "skopeo",
                vec![
                    "--insecure-policy".into(),
                    "inspect".into(),
                    "--raw".into(),
                    "--tls-verify=false".into(),
                    format!("docker://{addr}/{repo}:v1"),
                ],
            )
            .await;
            assert_eq!(
                Digest::sha256_of(raw.as_bytes()),
                image.digest,
                "{repo} via agent {i}"
            );
            let out = work
                .path()
                .join(format!("pulled-{i}-{}", repo.replace('/', "-")));
            run_async(
                "skopeo",
                vec![
                    "--insecure-policy".into(),
                    "copy".into(),
                    "--all".into(),
                    "--src-tls-verify=false".into(),
                    format!("docker://{addr}/{repo}:v1"),
                    format!("dir:{}", out.display()),
                ],
            )
            .await;
            let pulled = verified_digests(&out);
            let top = Digest::sha256_of(&std::fs::read(out.join("manifest.json")).unwrap());
            assert_eq!(
                top, image.digest,
                "{repo} via agent {i}: top-level manifest"
            );
            let mut expected = image.digests.clone();
            expected.remove(&image.digest);
            assert_eq!(
                pulled, expected,
                "{repo} via agent {i}: every blob and manifest"
            );
        }
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_pushes_need_credentials_and_pulls_stay_open() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let image = build(
        work.path(),
        "img",
        &["-t", "v1", "-l", "1", "-s", "0.2", "--seed", "9"],
    );
    let token = kraken_p2p::auth::Token::new("push-secret");
    let cluster = TestCluster::secured(1, 1, Some(token)).await;
    let proxy = cluster.cluster.proxy_addr();
    let target = format!("docker://{proxy}/secure/app:v1");
    let skopeo = |args: Vec<String>| {
        std::process::Command::new("timeout")
            .arg("300")
            .arg("skopeo")
            .args(args)
            .output()
            .unwrap()
    };
    let copy = |creds: Option<&str>| {
        let mut args: Vec<String> = ["--insecure-policy", "copy", "--dest-tls-verify=false"]
            .map(String::from)
            .to_vec();
        if let Some(creds) = creds {
            args.push(format!("--dest-creds={creds}"));
        }
        args.push(image.source.clone());
        args.push(target.clone());
        args
    };
    let refused = tokio::task::spawn_blocking({
        let args = copy(None);
        move || skopeo(args)
    })
    .await
    .unwrap();
    assert!(
        !refused.status.success(),
        "a push without credentials went through"
    );
    let wrong = tokio::task::spawn_blocking({
        let args = copy(Some("kraken:wrong"));
        move || skopeo(args)
    })
    .await
    .unwrap();
    assert!(
        !wrong.status.success(),
        "a push with a wrong token went through"
    );
    let pushed = tokio::task::spawn_blocking({
        let args = copy(Some("kraken:push-secret"));
        move || skopeo(args)
    })
    .await
    .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let agent = cluster.cluster.agents()[0].registry_addr();
    let raw = run_async(
        "skopeo",
        vec![
            "--insecure-policy".into(),
            "inspect".into(),
            "--raw".into(),
            "--tls-verify=false".into(),
            format!("docker://{agent}/secure/app:v1"),
        ],
    )
    .await;
    assert_eq!(Digest::sha256_of(raw.as_bytes()), image.digest);
    cluster.shutdown().await;
}
