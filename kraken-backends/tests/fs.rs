//! The filesystem backend against the shared backend suite, plus the
//! properties specific to keeping objects as files.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, StreamExt};
use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_core::{Backend, BackendErrorKind, Namespace};

async fn open(root: &Path) -> FsBackend {
    FsBackend::open(FsBackendOptions {
        root: root.to_path_buf(),
    })
    .await
    .unwrap()
}

fn body(chunks: Vec<std::io::Result<Bytes>>) -> kraken_core::UploadBody {
    stream::iter(chunks).boxed()
}

async fn read_all(backend: &FsBackend, ns: &Namespace, name: &str) -> Vec<u8> {
    let mut stream = backend.download(ns, name, None).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn passes_the_backend_suite() {
    let dir = tempfile::tempdir().unwrap();
    kraken_core::testkit::backend_suite(Arc::new(open(dir.path()).await)).await;
}

#[tokio::test]
async fn objects_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::new("library/ubuntu").unwrap();
    let data = Bytes::from_static(b"layer bytes");
    let backend = open(dir.path()).await;
    backend
        .upload(&ns, "sha256:abc", 11, body(vec![Ok(data.clone())]))
        .await
        .unwrap();
    drop(backend);
    let backend = open(dir.path()).await;
    assert_eq!(read_all(&backend, &ns, "sha256:abc").await, data);
}

#[tokio::test]
async fn failed_body_keeps_the_old_object_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let ns = Namespace::new("repo").unwrap();
    let backend = open(dir.path()).await;
    backend
        .upload(
            &ns,
            "repo:tag",
            3,
            body(vec![Ok(Bytes::from_static(b"old"))]),
        )
        .await
        .unwrap();
    let broken = body(vec![
        Ok(Bytes::from_static(b"ne")),
        Err(std::io::Error::other("reset")),
    ]);
    let err = backend
        .upload(&ns, "repo:tag", 3, broken)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), BackendErrorKind::Other);
    assert_eq!(read_all(&backend, &ns, "repo:tag").await, b"old");
    let tmp = std::fs::read_dir(dir.path().join("@tmp")).unwrap().count();
    assert_eq!(tmp, 0, "a failed upload must not leave temp files");
}

#[tokio::test]
async fn hostile_names_stay_inside_the_root() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("root");
    let backend = open(&root).await;
    let ns = Namespace::new("a").unwrap();
    for name in [
        "../../escape",
        "/etc/passwd",
        "..",
        ".",
        "a/../../b",
        "%2e%2e%2fx",
    ] {
        backend
            .upload(&ns, name, 1, body(vec![Ok(Bytes::from_static(b"x"))]))
            .await
            .unwrap();
        assert_eq!(read_all(&backend, &ns, name).await, b"x", "{name}");
    }
    let outside: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        outside,
        std::slice::from_ref(&root),
        "nothing may be written beside the root"
    );
    let page = backend.list(&ns, "", None, 100).await.unwrap();
    assert_eq!(page.names.len(), 6);
    assert!(
        backend
            .upload(&ns, "bad\0name", 1, body(vec![]))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn nested_namespaces_do_not_mix() {
    let dir = tempfile::tempdir().unwrap();
    let backend = open(dir.path()).await;
    let parent = Namespace::new("org").unwrap();
    let child = Namespace::new("org/app").unwrap();
    backend
        .upload(&parent, "app", 1, body(vec![Ok(Bytes::from_static(b"p"))]))
        .await
        .unwrap();
    backend
        .upload(&child, "app", 1, body(vec![Ok(Bytes::from_static(b"c"))]))
        .await
        .unwrap();
    assert_eq!(read_all(&backend, &parent, "app").await, b"p");
    assert_eq!(read_all(&backend, &child, "app").await, b"c");
    assert_eq!(
        backend.list(&parent, "", None, 10).await.unwrap().names,
        ["app"]
    );
}

#[tokio::test]
async fn docker_layout_keeps_blobs_and_tags_where_distribution_does() {
    use kraken_backends::layout::Layout;
    use kraken_core::Digest;

    let dir = tempfile::tempdir().unwrap();
    let options = FsBackendOptions::new(dir.path());
    let backend = FsBackend::open_with_layout(options, Layout::DockerRegistry)
        .await
        .unwrap();
    let ns = Namespace::new("library/app").unwrap();
    let blob = Bytes::from_static(b"layer bytes");
    let digest = Digest::sha256_of(&blob);
    let name = digest.to_string();
    backend
        .upload(&ns, &name, 11, body(vec![Ok(blob.clone())]))
        .await
        .unwrap();
    let tag = Bytes::from(name.clone());
    backend
        .upload(&ns, "library/app:v1", 71, body(vec![Ok(tag.clone())]))
        .await
        .unwrap();

    let hex = digest.hex();
    let v2 = dir.path().join("docker/registry/v2");
    let data = v2.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
    assert_eq!(std::fs::read(data).unwrap(), blob);
    let current = v2.join("repositories/library/app/_manifests/tags/v1/current/link");
    assert_eq!(std::fs::read(current).unwrap(), tag);
    assert_eq!(read_all(&backend, &ns, &name).await, blob);
    assert_eq!(read_all(&backend, &ns, "library/app:v1").await, tag);
    let listed = backend.list(&ns, "", None, 10).await.unwrap();
    assert_eq!(listed.names, ["library/app:v1", name.as_str()]);

    let refused = backend.upload(&ns, "loose-name", 1, body(vec![])).await;
    assert_eq!(refused.unwrap_err().kind(), BackendErrorKind::Other);
    let missing = backend.stat(&ns, "loose-name").await.unwrap_err();
    assert_eq!(missing.kind(), BackendErrorKind::NotFound);
    let not_repo = Namespace::new("CI-cache").unwrap();
    let refused = backend
        .upload(&not_repo, &name, 11, body(vec![Ok(blob)]))
        .await;
    assert_eq!(refused.unwrap_err().kind(), BackendErrorKind::Other);
}
