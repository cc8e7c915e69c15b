//! The docker/distribution layout against the real thing: a
//! `docker-registry` with filesystem storage shares its root with an
//! `FsBackend` opened in that layout, and one with the S3 driver shares a
//! Garage bucket with an `S3Backend`; each reads what the other wrote.
//!
//! Without `docker-registry` (or `garage`) the tests print why they skip,
//! unless `CI` is set, where they fail.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::{
    OCI_INDEX, OCI_MANIFEST, Pusher, RegistryAuth, RegistryStorage, random, read_all,
    start_registry, start_registry_on,
};
use futures::StreamExt;
use kraken_backends::fs::{FsBackend, FsBackendOptions};
use kraken_backends::layout::Layout;
use kraken_backends::registry::{RegistryBackend, RegistryBackendOptions};
use kraken_backends::s3::{S3Backend, S3BackendOptions};
use kraken_core::{Backend, BackendErrorKind, Digest, Namespace, UploadBody};

async fn docker_fs(root: &Path) -> FsBackend {
    FsBackend::open_with_layout(FsBackendOptions::new(root), Layout::DockerRegistry)
        .await
        .unwrap()
}

fn body(data: &Bytes) -> UploadBody {
    let chunks: Vec<_> = data.chunks(64 * 1024).map(Bytes::copy_from_slice).collect();
    futures::stream::iter(chunks.into_iter().map(Ok)).boxed()
}

async fn put(backend: &dyn Backend, ns: &Namespace, name: &str, data: &Bytes) {
    let length = data.len() as u64;
    backend.upload(ns, name, length, body(data)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_reads_what_the_registry_wrote() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let pusher = Pusher::new(&registry.url(), None);
    let image = pusher
        .image("library/app", "v1", &[200_000, 10], true)
        .await;
    let (index, index_digest) = pusher.index("library/app", "multi", &[&image]).await;
    let fs = docker_fs(&registry.storage()).await;
    let app = Namespace::new("library/app").unwrap();

    for layer in &image.layers {
        let name = Digest::sha256_of(layer).to_string();
        assert_eq!(fs.stat(&app, &name).await.unwrap().size, layer.len() as u64);
        assert!(read_all(&fs, &app, &name, None).await.unwrap() == *layer);
    }
    let first = Digest::sha256_of(&image.layers[0]).to_string();
    let ranged = read_all(&fs, &app, &first, Some(5..15)).await.unwrap();
    assert!(ranged == image.layers[0].slice(5..15));
    let manifest = read_all(&fs, &app, &image.digest.to_string(), None).await;
    assert_eq!(manifest.unwrap(), image.manifest);
    for (tag, digest) in [("v1", &image.digest), ("multi", &index_digest)] {
        let name = format!("library/app:{tag}");
        let text = read_all(&fs, &app, &name, None).await.unwrap();
        assert_eq!(text, digest.to_string().as_bytes(), "{tag}");
        assert_eq!(fs.stat(&app, &name).await.unwrap().size, 71);
    }
    assert_eq!(
        read_all(&fs, &app, &index_digest.to_string(), None)
            .await
            .unwrap(),
        index
    );

    let listed = fs.list(&app, "", None, 100).await.unwrap();
    let config = Digest::sha256_of(&image.config).to_string();
    for name in [
        config.as_str(),
        &Digest::sha256_of(&image.layers[0]).to_string(),
        &image.digest.to_string(),
        "library/app:multi",
        "library/app:v1",
    ] {
        assert!(
            listed.names.iter().any(|n| n == name),
            "{name} not in {:?}",
            listed.names
        );
    }
    let tags = fs.list(&app, "library/app:", None, 1).await.unwrap();
    assert_eq!(tags.names, ["library/app:multi"]);
    assert_eq!(tags.next.as_deref(), Some("library/app:multi"));

    let absent = Digest::sha256_of(b"never pushed").to_string();
    for name in [absent.as_str(), "library/app:v9", "not-a-digest"] {
        let error = fs.stat(&app, name).await.unwrap_err();
        assert_eq!(error.kind(), BackendErrorKind::NotFound, "{name}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_serves_what_fs_wrote() {
    let Some(registry) = start_registry(RegistryAuth::Open).await else {
        return;
    };
    let fs = docker_fs(&registry.storage()).await;
    let new = Namespace::new("library/new").unwrap();

    // An image and an index over it, written as blobs and tags only.
    let config = Bytes::from_static(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let layer = random(300_000);
    let manifest = manifest_of(&config, &layer);
    let manifest_digest = Digest::sha256_of(&manifest);
    let index = index_of(&manifest_digest, manifest.len());
    let index_digest = Digest::sha256_of(&index);
    for blob in [&config, &layer, &manifest, &index] {
        put(&fs, &new, &Digest::sha256_of(blob).to_string(), blob).await;
    }
    // Manifests get the revision link distribution itself writes for them
    // (2.8 also finds them through their layer link; newer releases may
    // not), other blobs only a layer link.
    let repo = registry
        .storage()
        .join("docker/registry/v2/repositories/library/new");
    for (blob, is_manifest) in [
        (&config, false),
        (&layer, false),
        (&manifest, true),
        (&index, true),
    ] {
        let hex = Digest::sha256_of(blob).hex();
        let revision = repo.join(format!("_manifests/revisions/sha256/{hex}/link"));
        assert_eq!(revision.is_file(), is_manifest, "{hex}");
        let layer_link = std::fs::read_to_string(repo.join(format!("_layers/sha256/{hex}/link")));
        assert_eq!(layer_link.unwrap(), format!("sha256:{hex}"));
    }
    let tag_to = |d: &Digest| Bytes::from(d.to_string());
    put(&fs, &new, "library/new:multi", &tag_to(&index_digest)).await;

    let pull = RegistryBackend::new(RegistryBackendOptions::new(registry.url())).unwrap();
    let got = pull.manifest(&new, "multi").await.unwrap();
    assert_eq!(
        (got.bytes, got.media_type.as_str()),
        (index.clone(), OCI_INDEX)
    );
    // The child is reachable by digest alone: fs linked it as a manifest
    // because its bytes are one.
    let child = pull
        .manifest(&new, &manifest_digest.to_string())
        .await
        .unwrap();
    assert_eq!(
        (child.bytes, child.media_type.as_str()),
        (manifest.clone(), OCI_MANIFEST)
    );
    let layer_name = Digest::sha256_of(&layer).to_string();
    assert!(read_all(&pull, &new, &layer_name, None).await.unwrap() == layer);
    let config_name = Digest::sha256_of(&config).to_string();
    assert_eq!(
        read_all(&pull, &new, &config_name, None).await.unwrap(),
        config
    );

    // Re-pointing a tag is seen at once.
    put(&fs, &new, "library/new:multi", &tag_to(&manifest_digest)).await;
    let text = read_all(&pull, &new, "library/new:multi", None)
        .await
        .unwrap();
    assert_eq!(text, manifest_digest.to_string().as_bytes());
    let tags = pull.list(&new, "", None, 10).await.unwrap();
    assert_eq!(tags.names, ["library/new:multi"]);

    // What the layout cannot hold is refused and leaves nothing behind.
    let not_digest = Bytes::from_static(b"latest");
    let error = fs
        .upload(&new, "library/new:bad", 6, body(&not_digest))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Corrupt, "{error}");
    let gone = pull.stat(&new, "library/new:bad").await.unwrap_err();
    assert_eq!(gone.kind(), BackendErrorKind::NotFound);
    let plain = fs
        .upload(&new, "plain-name", 1, body(&Bytes::from_static(b"x")))
        .await;
    assert_eq!(plain.unwrap_err().kind(), BackendErrorKind::Other);
    let leftovers = std::fs::read_dir(registry.storage().join("@tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "no temp files left");
}

fn manifest_of(config: &Bytes, layer: &Bytes) -> Bytes {
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": Digest::sha256_of(config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": Digest::sha256_of(layer).to_string(),
            "size": layer.len(),
        }],
    });
    Bytes::from(serde_json::to_vec(&manifest).unwrap())
}

fn index_of(manifest: &Digest, size: usize) -> Bytes {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": manifest.to_string(),
            "size": size,
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    });
    Bytes::from(serde_json::to_vec(&index).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_and_a_registry_share_a_garage_bucket() {
    let Some(garage) = common::garage::start_garage() else {
        return;
    };
    let storage = RegistryStorage::Garage {
        endpoint: garage.endpoint(),
        root: "/registry".into(),
    };
    let Some(registry) = start_registry_on(RegistryAuth::Open, storage).await else {
        return;
    };
    let s3 = S3Backend::new(S3BackendOptions {
        prefix: "registry".into(),
        layout: Layout::DockerRegistry,
        ..garage.options()
    })
    .unwrap();

    // Pushed to the registry, read from the bucket.
    let pusher = Pusher::new(&registry.url(), None);
    let image = pusher.image("library/app", "v1", &[100_000], true).await;
    let app = Namespace::new("library/app").unwrap();
    let layer = Digest::sha256_of(&image.layers[0]).to_string();
    assert!(read_all(&s3, &app, &layer, None).await.unwrap() == image.layers[0]);
    let manifest = read_all(&s3, &app, &image.digest.to_string(), None).await;
    assert_eq!(manifest.unwrap(), image.manifest);
    let tag = read_all(&s3, &app, "library/app:v1", None).await.unwrap();
    assert_eq!(tag, image.digest.to_string().as_bytes());
    let listed = s3.list(&app, "library/app:", None, 10).await.unwrap();
    assert_eq!(listed.names, ["library/app:v1"]);
    let digests = s3.list(&app, "sha256:", None, 10).await.unwrap();
    assert!(digests.names.contains(&layer), "{:?}", digests.names);

    // Written to the bucket, pulled from the registry, whose blob reads
    // redirect to presigned Garage URLs that the registry backend follows.
    let new = Namespace::new("library/new").unwrap();
    let config = Bytes::from_static(
        br#"{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let blob = random(6 * 1024 * 1024 + 5);
    let written = manifest_of(&config, &blob);
    let written_digest = Digest::sha256_of(&written);
    for data in [&config, &blob, &written] {
        put(&s3, &new, &Digest::sha256_of(data).to_string(), data).await;
    }
    put(
        &s3,
        &new,
        "library/new:v1",
        &Bytes::from(written_digest.to_string()),
    )
    .await;
    let pull = RegistryBackend::new(RegistryBackendOptions::new(registry.url())).unwrap();
    let got = pull.manifest(&new, "v1").await.unwrap();
    assert_eq!((got.bytes, got.digest), (written, written_digest));
    let blob_name = Digest::sha256_of(&blob).to_string();
    let raw = common::plain_http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/v2/library/new/blobs/{blob_name}", registry.url());
    let answer = raw.get(url).send().await.unwrap();
    assert_eq!(answer.status(), 307, "the registry redirects blob reads");
    let location = answer.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&garage.endpoint()), "{location}");
    assert!(read_all(&pull, &new, &blob_name, None).await.unwrap() == blob);
    let part = read_all(&pull, &new, &blob_name, Some(10..20))
        .await
        .unwrap();
    assert!(part == blob.slice(10..20));
}
