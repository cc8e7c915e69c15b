//! Preheat: images another registry wrote to the cluster's backend are
//! announced by that registry's push webhook, and the origins fetch every
//! blob before anyone pulls.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestCluster, blob};
use futures::StreamExt;
use kraken_core::{Backend, Digest, Namespace};
use kraken_registry::manifest::media_type;
use reqwest::StatusCode;

/// Writes `data` into the backend as another registry sharing it would.
async fn put(c: &TestCluster, namespace: &Namespace, data: Vec<u8>) -> Digest {
    let digest = Digest::sha256_of(&data);
    let length = data.len() as u64;
    let body = futures::stream::iter([Ok(Bytes::from(data))]).boxed();
    c.backend
        .upload(namespace, &digest.to_string(), length, body)
        .await
        .unwrap();
    digest
}

fn descriptor(media: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media, "digest": digest.to_string(), "size": size})
}

/// An image of one config and two layers, written to the backend only.
async fn image(c: &TestCluster, namespace: &Namespace, seed: u64) -> (Digest, usize, Vec<Digest>) {
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    let config_len = config.len();
    let config_digest = put(c, namespace, config).await;
    let mut layers = Vec::new();
    let mut blobs = vec![config_digest];
    for i in 0..2 {
        let layer = blob(50_000, seed * 10 + i);
        let len = layer.len();
        let digest = put(c, namespace, layer).await;
        layers.push(descriptor(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &digest,
            len,
        ));
        blobs.push(digest);
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config_len),
        "layers": layers,
    }))
    .unwrap();
    let size = manifest.len();
    (put(c, namespace, manifest).await, size, blobs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_webhook_makes_the_origins_fetch_every_blob_of_an_index() {
    let c = TestCluster::with(2, 0).await;
    let namespace = Namespace::new("team/app").unwrap();
    let (amd, amd_size, mut blobs) = image(&c, &namespace, 1).await;
    let (arm, arm_size, arm_blobs) = image(&c, &namespace, 2).await;
    blobs.extend(arm_blobs);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [
            descriptor(media_type::OCI_MANIFEST, &amd, amd_size),
            descriptor(media_type::OCI_MANIFEST, &arm, arm_size),
        ],
    }))
    .unwrap();
    let index_digest = put(&c, &namespace, index).await;

    let envelope = serde_json::json!({"events": [{
        "id": "1",
        "action": "push",
        "target": {
            "mediaType": media_type::OCI_INDEX,
            "digest": index_digest.to_string(),
            "repository": "team/app",
            "tag": "v1",
        },
    }]});
    let response = c
        .http
        .post(format!("{}/registry/notifications", c.proxy()))
        .json(&envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let report: serde_json::Value = response.json().await.unwrap();
    assert_eq!(report["prefetched"], 6, "{report}");
    assert_eq!(report["missing"], serde_json::json!([]));

    // Every blob lands at its first owner without anyone pulling.
    let client = c.cluster.origin_client().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for digest in &blobs {
        let owner = client.locations(digest).await.unwrap()[0].clone();
        let node = c
            .cluster
            .origins()
            .iter()
            .find(|o| o.origin.addr() == owner)
            .unwrap();
        while node.origin.store().stat(digest).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{digest} never reached {owner}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A webhook naming content nowhere reports it missing; one that is
    // not a notification is 400; pulls and blob pushes are ignored.
    let nowhere = Digest::sha256_of(b"in no backend");
    let envelope = serde_json::json!({"events": [
        {"action": "push", "target": {"mediaType": media_type::OCI_MANIFEST, "digest": nowhere.to_string(), "repository": "team/app"}},
        {"action": "pull", "target": {"mediaType": media_type::OCI_MANIFEST, "digest": index_digest.to_string(), "repository": "team/app"}},
    ]});
    let report: serde_json::Value = c
        .http
        .post(format!("{}/registry/notifications", c.proxy()))
        .json(&envelope)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["missing"], serde_json::json!([nowhere.to_string()]));
    assert_eq!(report["prefetched"], 0);
    let bad = c
        .http
        .post(format!("{}/registry/notifications", c.proxy()))
        .body("{\"nope\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    c.shutdown().await;
}
