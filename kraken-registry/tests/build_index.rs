//! Build-index against real in-process origins over a filesystem backend,
//! through its HTTP server and client: tags that move and are seen at
//! once, dependency checks, referrers, deletes, a backend that goes down,
//! a database that is lost, replication between two clusters, and bad
//! input.

#[path = "build_index/support.rs"]
mod support;

use std::time::Duration;

use kraken_core::Digest;
use kraken_registry::ErrorCode;
use kraken_registry::buildindex::Page;
use kraken_registry::manifest::media_type;
use reqwest::StatusCode;
use serde_json::json;
use support::{CONFIG, LAYER, Site, descriptor, eventually, repo, reserve, rule, tag};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_pushed_tag_is_seen_on_the_next_read() {
    let site = Site::start().await;
    let bi = &site.client;
    let app = repo("team/app");
    let (first, _) = site.image(&app, 1).await;
    let (second, _) = site.image(&app, 2).await;

    let record = bi
        .put_manifest(&app, &first, &[tag("v1"), tag("latest")], None)
        .await
        .unwrap();
    assert_eq!(record.digest, first);
    assert_eq!(record.media_type, media_type::OCI_MANIFEST);
    assert_eq!(record.artifact_type.as_deref(), Some(CONFIG));
    assert_eq!(bi.get_tag(&app, &tag("v1"), None).await.unwrap(), first);

    bi.put_manifest(&app, &second, &[tag("v1")], None)
        .await
        .unwrap();
    assert_eq!(
        bi.get_tag(&app, &tag("v1"), None).await.unwrap(),
        second,
        "the overwrite is visible at once"
    );
    assert_eq!(bi.get_tag(&app, &tag("latest"), None).await.unwrap(), first);
    assert_eq!(bi.get_manifest(&app, &first).await.unwrap(), record);

    let more = [tag("a"), tag("B"), tag("_x"), tag("Z1")];
    bi.put_manifest(&app, &second, &more, None).await.unwrap();
    let list = bi.list_tags(&app, &Page::default()).await.unwrap();
    let names: Vec<&str> = list.tags.iter().map(|t| t.as_str()).collect();
    assert_eq!(list.name, app);
    assert_eq!(names, ["B", "Z1", "_x", "a", "latest", "v1"], "byte order");
    let page = Page {
        n: Some(2),
        last: Some("B".into()),
    };
    let list = bi.list_tags(&app, &page).await.unwrap();
    assert_eq!(list.tags, [tag("Z1"), tag("_x")]);

    let ubuntu = repo("library/ubuntu");
    let (image, _) = site.image(&ubuntu, 3).await;
    bi.put_manifest(&ubuntu, &image, &[tag("22.04")], None)
        .await
        .unwrap();
    let catalog = bi.catalog(&Page::default()).await.unwrap();
    assert_eq!(catalog.repositories, [ubuntu.clone(), app.clone()]);
    let page = Page {
        n: Some(1),
        last: None,
    };
    assert_eq!(bi.catalog(&page).await.unwrap().repositories, [ubuntu]);

    let unknown = bi.get_tag(&app, &tag("v9"), None).await.unwrap_err();
    assert_eq!(
        (unknown.code(), unknown.status()),
        (ErrorCode::ManifestUnknown, StatusCode::NOT_FOUND)
    );
    let nobody = bi.list_tags(&repo("nobody/here"), &Page::default()).await;
    assert_eq!(nobody.unwrap_err().code(), ErrorCode::NameUnknown);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_whose_content_is_missing_is_refused_and_nothing_is_stored() {
    let site = Site::start().await;
    let bi = &site.client;
    let app = repo("team/app");
    let config = site.blob(&app, CONFIG, b"{}").await;
    let present = site.blob(&app, LAYER, b"present layer").await;
    let (gone1, gone2) = (
        Digest::sha256_of(b"never pushed 1"),
        Digest::sha256_of(b"never pushed 2"),
    );
    let body = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config,
        "layers": [descriptor(LAYER, &gone1, 5), present, descriptor(LAYER, &gone2, 5)],
    });
    let digest = site.manifest(&app, &body).await;

    let e = bi
        .put_manifest(&app, &digest, &[tag("v1")], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ManifestBlobUnknown);
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    for gone in [gone1, gone2] {
        assert!(e.message().contains(&gone.to_string()), "{e}");
    }
    let tag_read = bi.get_tag(&app, &tag("v1"), None).await.unwrap_err();
    assert_eq!(tag_read.code(), ErrorCode::ManifestUnknown);
    let record = bi.get_manifest(&app, &digest).await.unwrap_err();
    assert_eq!(record.code(), ErrorCode::ManifestUnknown);
    let list = bi.list_tags(&app, &Page::default()).await.unwrap_err();
    assert_eq!(list.code(), ErrorCode::NameUnknown, "nothing was stored");

    let never = Digest::sha256_of(b"a manifest never uploaded");
    let e = bi.put_manifest(&app, &never, &[], None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ManifestUnknown);
    let junk = site.upload(&app, b"{\"not\": \"a manifest\"}").await;
    let e = bi.put_manifest(&app, &junk, &[], None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ManifestInvalid);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_checked_to_every_layer_and_its_children_are_recorded() {
    let site = Site::start().await;
    let bi = &site.client;
    let app = repo("team/multi");
    let (amd, _) = site.image(&app, 10).await;
    let (arm, _) = site.image(&app, 11).await;
    let child = |d: &Digest| descriptor(media_type::OCI_MANIFEST, d, 1);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [child(&amd), child(&arm)],
    });
    let root = site.manifest(&app, &index).await;
    let record = bi
        .put_manifest(&app, &root, &[tag("v1")], None)
        .await
        .unwrap();
    assert_eq!(record.media_type, media_type::OCI_INDEX);
    assert_eq!(record.artifact_type, None);
    for child in [amd, arm] {
        let record = bi.get_manifest(&app, &child).await.unwrap();
        assert_eq!(record.media_type, media_type::OCI_MANIFEST);
    }

    // A child whose own layer is missing is named, two levels down.
    let config = site.blob(&app, CONFIG, b"{\"c\":1}").await;
    let gone = Digest::sha256_of(b"missing deep layer");
    let broken = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": config,
        "layers": [descriptor(LAYER, &gone, 3)],
    });
    let broken = site.manifest(&app, &broken).await;
    let absent_child = Digest::sha256_of(b"child never uploaded");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [child(&broken), child(&absent_child)],
    });
    let root = site.manifest(&app, &index).await;
    let e = bi
        .put_manifest(&app, &root, &[tag("v2")], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ManifestBlobUnknown);
    assert!(e.message().contains(&gone.to_string()), "{e}");
    assert!(e.message().contains(&absent_child.to_string()), "{e}");
    let child_record = bi.get_manifest(&app, &broken).await.unwrap_err();
    assert_eq!(child_record.code(), ErrorCode::ManifestUnknown);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_are_the_manifests_whose_subject_is_the_digest() {
    let site = Site::start().await;
    let bi = &site.client;
    let app = repo("team/app");
    let (image, _) = site.image(&app, 20).await;
    bi.put_manifest(&app, &image, &[tag("v1")], None)
        .await
        .unwrap();
    let empty = site
        .blob(&app, "application/vnd.oci.empty.v1+json", b"{}")
        .await;
    let artifact = |kind: &str, subject: &Digest, note: &str| {
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": kind,
            "config": empty,
            "layers": [],
            "subject": descriptor(media_type::OCI_MANIFEST, subject, 1),
            "annotations": {"org.example.note": note},
        })
    };
    let sig = site
        .manifest(
            &app,
            &artifact("application/vnd.example.sig", &image, "sig"),
        )
        .await;
    let sbom = site
        .manifest(
            &app,
            &artifact("application/vnd.example.sbom", &image, "sbom"),
        )
        .await;
    for digest in [sig, sbom] {
        bi.put_manifest(&app, &digest, &[], None).await.unwrap();
    }
    // A subject that was never pushed is no reason to refuse.
    let stranger = Digest::sha256_of(b"an image pushed elsewhere");
    let orphan = site
        .manifest(
            &app,
            &artifact("application/vnd.example.sig", &stranger, "x"),
        )
        .await;
    let record = bi.put_manifest(&app, &orphan, &[], None).await.unwrap();
    assert_eq!(record.subject, Some(stranger));

    let all = bi.referrers(&app, &image, None).await.unwrap();
    let mut found: Vec<Digest> = all.iter().map(|d| d.digest).collect();
    found.sort();
    let mut expected = vec![sig, sbom];
    expected.sort();
    assert_eq!(found, expected);
    let sigs = bi
        .referrers(&app, &image, Some("application/vnd.example.sig"))
        .await
        .unwrap();
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].digest, sig);
    assert_eq!(sigs[0].media_type, media_type::OCI_MANIFEST);
    assert_eq!(
        sigs[0].annotations.as_ref().unwrap()["org.example.note"],
        "sig"
    );
    let nothing = bi
        .referrers(&app, &Digest::sha256_of(b"nobody"), None)
        .await
        .unwrap();
    assert!(nothing.is_empty(), "an unknown subject has no referrers");
    let elsewhere = bi.referrers(&repo("other/repo"), &image, None).await;
    assert!(
        elsewhere.unwrap().is_empty(),
        "referrers are per repository"
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_manifest_takes_every_tag_pointing_at_it() {
    let site = Site::start().await;
    let bi = &site.client;
    let app = repo("team/app");
    let (first, _) = site.image(&app, 30).await;
    let (second, _) = site.image(&app, 31).await;
    bi.put_manifest(&app, &first, &[tag("v1"), tag("v2")], None)
        .await
        .unwrap();
    bi.put_manifest(&app, &second, &[tag("v3")], None)
        .await
        .unwrap();

    bi.delete_tag(&app, &tag("v3")).await.unwrap();
    let e = bi.get_tag(&app, &tag("v3"), None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ManifestUnknown);
    let again = bi.delete_tag(&app, &tag("v3")).await.unwrap_err();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    assert!(
        bi.get_manifest(&app, &second).await.is_ok(),
        "only the tag went"
    );

    bi.delete_manifest(&app, &first).await.unwrap();
    for gone in ["v1", "v2"] {
        let e = bi.get_tag(&app, &tag(gone), None).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ManifestUnknown, "{gone}");
    }
    let e = bi.get_manifest(&app, &first).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ManifestUnknown);
    let again = bi.delete_manifest(&app, &first).await.unwrap_err();
    assert_eq!(again.code(), ErrorCode::ManifestUnknown);
    let list = bi.list_tags(&app, &Page::default()).await.unwrap();
    assert!(list.tags.is_empty(), "the repository stays, without tags");

    // The deletions reach the backend as tombstones.
    eventually("tombstones written back", || async {
        site.in_backend("team/app", "team/app:v1").await == Some(Vec::new())
            && site
                .in_backend("team/app", &format!("team/app@{first}"))
                .await
                == Some(Vec::new())
    })
    .await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_succeed_while_the_backend_is_down_and_land_when_it_is_back() {
    let mut site = Site::start().await;
    let app = repo("team/app");
    let (first, _) = site.image(&app, 40).await;
    let (second, _) = site.image(&app, 41).await;
    site.faults.set_outage(true);

    site.client
        .put_manifest(&app, &first, &[tag("v1")], None)
        .await
        .unwrap();
    assert_eq!(
        site.client.get_tag(&app, &tag("v1"), None).await.unwrap(),
        first
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(site.in_backend("team/app", "team/app:v1").await.is_none());
    assert!(
        site.index().pending_writebacks() >= 3,
        "tag, record, catalog"
    );
    let ready = site.http.get(site.url("/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let metrics = site.http.get(site.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let pending = metrics
        .lines()
        .find(|l| l.starts_with("kraken_buildindex_writeback_pending"))
        .unwrap_or_else(|| panic!("no write-back gauge in {metrics}"));
    assert!(!pending.ends_with(" 0"), "{pending}");

    // A restart while the backend is still down loses nothing.
    site.stop_index().await;
    site.start_index().await;
    assert_eq!(
        site.client.get_tag(&app, &tag("v1"), None).await.unwrap(),
        first
    );
    site.client
        .put_manifest(&app, &second, &[tag("v2")], None)
        .await
        .unwrap();
    assert!(site.index().pending_writebacks() >= 4);

    site.faults.set_outage(false);
    eventually("every write-back landed", || async {
        site.index().pending_writebacks() == 0
    })
    .await;
    let v1 = site.in_backend("team/app", "team/app:v1").await.unwrap();
    assert_eq!(v1, first.to_string().into_bytes());
    let v2 = site.in_backend("team/app", "team/app:v2").await.unwrap();
    assert_eq!(v2, second.to_string().into_bytes());
    let record = site
        .in_backend("team/app", &format!("team/app@{first}"))
        .await
        .unwrap();
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["digest"], first.to_string());
    let marker = site.in_backend("kraken-catalog", "team/app").await;
    assert!(marker.is_some(), "catalog marker written");
    let ready = site.http.get(site.url("/readiness")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_build_index_recovers_everything_from_the_backend() {
    let mut site = Site::start().await;
    let app = repo("team/app");
    let tools = repo("team/tools");
    let (image, _) = site.image(&app, 50).await;
    let (other, _) = site.image(&tools, 51).await;
    let empty = site.blob(&app, CONFIG, b"{}").await;
    let sig = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": empty,
        "layers": [],
        "subject": descriptor(media_type::OCI_MANIFEST, &image, 1),
    });
    let sig = site.manifest(&app, &sig).await;
    let bi = site.client.clone();
    bi.put_manifest(&app, &image, &[tag("v1"), tag("v2"), tag("v3")], None)
        .await
        .unwrap();
    bi.put_manifest(&app, &sig, &[], None).await.unwrap();
    bi.put_manifest(&tools, &other, &[tag("stable")], None)
        .await
        .unwrap();
    bi.delete_tag(&app, &tag("v3")).await.unwrap();
    eventually("written back", || async {
        site.index().pending_writebacks() == 0
    })
    .await;

    site.stop_index().await;
    site.wipe_index();
    site.start_index().await;

    // While the backend is down, an unknown tag is "cannot tell", not
    // "not found".
    site.faults.set_outage(true);
    let e = bi.get_tag(&app, &tag("v1"), None).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    site.faults.set_outage(false);

    assert_eq!(bi.get_tag(&app, &tag("v1"), None).await.unwrap(), image);
    let record = bi.get_manifest(&app, &image).await.unwrap();
    assert_eq!(record.media_type, media_type::OCI_MANIFEST);
    let deleted = bi.get_tag(&app, &tag("v3"), None).await.unwrap_err();
    assert_eq!(deleted.code(), ErrorCode::ManifestUnknown, "still deleted");
    let list = bi.list_tags(&app, &Page::default()).await.unwrap();
    assert_eq!(list.tags, [tag("v1"), tag("v2")]);
    let referrers = bi.referrers(&app, &image, None).await.unwrap();
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].digest, sig);
    let catalog = bi.catalog(&Page::default()).await.unwrap();
    assert_eq!(catalog.repositories, [app.clone(), tools.clone()]);

    // What was recovered is kept: the backend is not needed again.
    site.faults.set_outage(true);
    assert_eq!(bi.get_tag(&app, &tag("v2"), None).await.unwrap(), image);
    let list = bi.list_tags(&tools, &Page::default()).await;
    assert!(
        list.is_ok(),
        "a known repository lists from the local tables"
    );
    site.faults.set_outage(false);
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_tag_is_replicated_with_its_whole_tree_and_re_pushes_follow() {
    let mut remote = Site::new(reserve(), Vec::new()).await;
    remote.start_index().await;
    let rules = vec![rule("team/.*", &remote.index_addr)];
    let mut local = Site::new(reserve(), rules).await;
    local.start_index().await;
    let app = repo("team/app");

    let (amd, amd_blobs) = local.image(&app, 60).await;
    let (arm, arm_blobs) = local.image(&app, 61).await;
    let child = |d: &Digest| descriptor(media_type::OCI_MANIFEST, d, 1);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [child(&amd), child(&arm)],
    });
    let root = local.manifest(&app, &index).await;
    local
        .client
        .put_manifest(&app, &root, &[tag("v1")], None)
        .await
        .unwrap();
    eventually("v1 on the remote", || async {
        remote.client.get_tag(&app, &tag("v1"), None).await.ok() == Some(root)
    })
    .await;
    let namespace = app.namespace();
    let everything = amd_blobs
        .iter()
        .chain(&arm_blobs)
        .chain([&amd, &arm, &root]);
    for digest in everything {
        let bytes = remote.origins.download(&namespace, digest).await;
        assert!(
            bytes.is_ok(),
            "{digest} not pullable from the remote origins"
        );
    }
    let child_record = remote.client.get_manifest(&app, &amd).await.unwrap();
    assert_eq!(child_record.media_type, media_type::OCI_MANIFEST);

    // The same tag pushed again with another digest replicates too.
    let (next, _) = local.image(&app, 62).await;
    local
        .client
        .put_manifest(&app, &next, &[tag("v1")], None)
        .await
        .unwrap();
    eventually("the new v1 on the remote", || async {
        remote.client.get_tag(&app, &tag("v1"), None).await.ok() == Some(next)
    })
    .await;

    // Tags no rule names stay home.
    let private = repo("private/app");
    let (mine, _) = local.image(&private, 63).await;
    local
        .client
        .put_manifest(&private, &mine, &[tag("v1")], None)
        .await
        .unwrap();
    assert_eq!(local.index().pending_replications(), 0);
    let e = remote.client.get_tag(&private, &tag("v1"), None).await;
    assert_eq!(e.unwrap_err().code(), ErrorCode::ManifestUnknown);
    local.shutdown().await;
    remote.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_waits_for_a_remote_that_is_down() {
    let mut remote = Site::new(reserve(), Vec::new()).await;
    let rules = vec![rule("^team/app:.*$", &remote.index_addr)];
    let mut local = Site::new(reserve(), rules).await;
    local.start_index().await;
    let app = repo("team/app");
    let (image, blobs) = local.image(&app, 70).await;
    local
        .client
        .put_manifest(&app, &image, &[tag("v1")], None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        local.index().pending_replications(),
        1,
        "retried, not dropped"
    );

    remote.start_index().await;
    eventually("v1 on the remote once it is back", || async {
        remote.client.get_tag(&app, &tag("v1"), None).await.ok() == Some(image)
    })
    .await;
    for digest in &blobs {
        assert!(
            remote
                .origins
                .download(&app.namespace(), digest)
                .await
                .is_ok()
        );
    }
    eventually("the job is done", || async {
        local.index().pending_replications() == 0
    })
    .await;
    local.shutdown().await;
    remote.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_is_asked_only_for_tags_the_cluster_lacks() {
    let site = Site::start().await;
    let bi = &site.client;
    let ubuntu = repo("library/ubuntu");
    let upstream = Digest::sha256_of(b"upstream manifest");
    let name = "library/ubuntu:22.04";
    site.put_in_backend(
        "docker.io/library/ubuntu",
        name,
        upstream.to_string().as_bytes(),
    )
    .await;
    let with_port = Digest::sha256_of(b"mirror manifest");
    site.put_in_backend(
        "localhost_5000/library/ubuntu",
        name,
        with_port.to_string().as_bytes(),
    )
    .await;

    let got = bi.get_tag(&ubuntu, &tag("22.04"), Some("docker.io")).await;
    assert_eq!(got.unwrap(), upstream);
    let got = bi
        .get_tag(&ubuntu, &tag("22.04"), Some("localhost:5000"))
        .await;
    assert_eq!(got.unwrap(), with_port);
    let plain = bi.get_tag(&ubuntu, &tag("22.04"), None).await.unwrap_err();
    assert_eq!(plain.code(), ErrorCode::ManifestUnknown);

    // Upstream answers are not kept: the upstream tag moves, we follow.
    let moved = Digest::sha256_of(b"upstream manifest, rebuilt");
    site.put_in_backend(
        "docker.io/library/ubuntu",
        name,
        moved.to_string().as_bytes(),
    )
    .await;
    let got = bi.get_tag(&ubuntu, &tag("22.04"), Some("docker.io")).await;
    assert_eq!(got.unwrap(), moved);

    // A tag the cluster has is answered the same with or without `ns`.
    let (ours, _) = site.image(&ubuntu, 80).await;
    bi.put_manifest(&ubuntu, &ours, &[tag("22.04")], None)
        .await
        .unwrap();
    let got = bi.get_tag(&ubuntu, &tag("22.04"), Some("docker.io")).await;
    assert_eq!(got.unwrap(), ours);
    site.shutdown().await;
}

/// Requests with bad input, one a line: method, path, status, code.
/// `{good}` is a well-formed digest, `{long}` a name over 255 bytes.
const BAD_INPUT: &str = "
    GET    /repositories/Bad%20Name/tags/v1                 400 NAME_INVALID
    GET    /repositories/a%2F..%2Fb/tags                    400 NAME_INVALID
    GET    /repositories/%FF%FE/tags                        400 NAME_INVALID
    GET    /repositories/{long}/tags                        400 NAME_INVALID
    GET    /repositories/app/tags/v1?upstream=a%2Fb         400 NAME_INVALID
    PUT    /repositories/UPPER/manifests/{good}             400 NAME_INVALID
    GET    /repositories/app/tags/-bad                      400 MANIFEST_INVALID
    PUT    /repositories/app/manifests/{good}?tag=a%3Ab     400 MANIFEST_INVALID
    GET    /repositories/app/manifests/sha256:xyz           400 DIGEST_INVALID
    PUT    /repositories/app/manifests/latest               400 DIGEST_INVALID
    DELETE /repositories/app/manifests/md5:abc              400 DIGEST_INVALID
    GET    /repositories/app/referrers/sha256:short         400 DIGEST_INVALID
    GET    /repositories?n=lots                             400 PAGINATION_NUMBER_INVALID
    GET    /repositories/library/ubuntu/tags                404 UNSUPPORTED
    POST   /repositories/app/tags/v1                        405 UNSUPPORTED
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_tags_and_digests_are_client_errors_and_the_server_keeps_serving() {
    let site = Site::start().await;
    let good = Digest::sha256_of(b"x").to_string();
    let long = "a".repeat(300);
    for line in BAD_INPUT.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [method, path, status, code] = fields[..] else {
            panic!("bad case {line:?}");
        };
        let path = path.replace("{good}", &good).replace("{long}", &long);
        let method: reqwest::Method = method.parse().unwrap();
        let response = site
            .http
            .request(method, site.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_str(), status, "{line}");
        let body = response.bytes().await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], code, "{line}");
        let health = site.http.get(site.url("/health")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK, "after {line}");
    }
    let origin = site.http.get(site.url("/origin")).send().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&origin.bytes().await.unwrap()).unwrap();
    assert_eq!(body["members"], json!(site.origins.members()));
    site.shutdown().await;
}
