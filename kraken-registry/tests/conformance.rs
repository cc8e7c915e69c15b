//! The checks of the OCI conformance suites (legacy and current) that a
//! registry must pass, as integration tests against the proxy of an
//! in-process cluster, and their read subset against an agent.

mod common;

use common::{TestCluster, blob, code};
use kraken_core::{Algorithm, Digest};
use kraken_registry::manifest::media_type;
use reqwest::{Method, StatusCode};

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

fn descriptor(media: &str, digest: &Digest, size: usize) -> serde_json::Value {
    serde_json::json!({"mediaType": media, "digest": digest.to_string(), "size": size})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_pushes_in_every_shape_and_their_reads() {
    let c = TestCluster::start(0).await;
    let base = c.proxy();
    let repo = "conformance/push";

    // Streamed: PATCH without Content-Range, PUT with no body.
    let data = blob(3000, 1);
    let digest = Digest::sha256_of(&data);
    let start = c
        .send(Method::POST, &format!("{base}/v2/{repo}/blobs/uploads/"))
        .await;
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&start, "range"), "0-0");
    let location = header(&start, "location");
    assert!(location.starts_with(&format!("/v2/{repo}/blobs/uploads/")));
    let patch = c
        .http
        .patch(format!("{base}{location}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&patch, "range"), "0-2999");
    let put = c
        .http
        .put(format!(
            "{base}{}?digest={digest}",
            header(&patch, "location")
        ))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    assert_eq!(header(&put, "docker-content-digest"), digest.to_string());
    let got = c
        .send(Method::GET, &format!("{base}{}", header(&put, "location")))
        .await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap(), data);

    // Monolithic in one POST.
    let single = blob(512, 2);
    let single_digest = Digest::sha256_of(&single);
    let post = c
        .http
        .post(format!(
            "{base}/v2/{repo}/blobs/uploads/?digest={single_digest}"
        ))
        .body(single.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::CREATED);
    let head = c
        .send(
            Method::HEAD,
            &format!("{base}/v2/{repo}/blobs/{single_digest}"),
        )
        .await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "512");
    assert_eq!(
        header(&head, "docker-content-digest"),
        single_digest.to_string()
    );

    // Chunked, with the conformance suite's out-of-order checks.
    let small = blob(42, 3);
    let small_digest = Digest::sha256_of(&small);
    let session = |c: &TestCluster| {
        let url = format!("{base}/v2/{repo}/blobs/uploads/");
        let http = c.http.clone();
        async move {
            let r = http.post(url).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            header(&r, "location")
        }
    };
    let skipped = session(&c).await;
    let r = c
        .http
        .patch(format!("{base}{skipped}"))
        .header("content-range", "21-41")
        .body(small[21..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let chunked = session(&c).await;
    let first = c
        .http
        .patch(format!("{base}{chunked}"))
        .header("content-range", "0-20")
        .body(small[..21].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&first, "range"), "0-20");
    let again = c
        .http
        .patch(format!("{base}{chunked}"))
        .header("content-range", "0-20")
        .body(small[..21].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&again, "range"), "0-20");
    let status = c.send(Method::GET, &format!("{base}{chunked}")).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "range"), "0-20");
    assert!(!header(&status, "location").is_empty());
    // The final chunk rides in the PUT.
    let put = c
        .http
        .put(format!("{base}{chunked}?digest={small_digest}"))
        .header("content-range", "21-41")
        .body(small[21..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    let got = c
        .send(
            Method::GET,
            &format!("{base}/v2/{repo}/blobs/{small_digest}"),
        )
        .await;
    assert_eq!(got.bytes().await.unwrap(), small);

    // The empty blob, the `{}` blob and a sha512 blob round-trip.
    for (data, algorithm) in [
        (Vec::new(), Algorithm::Sha256),
        (b"{}".to_vec(), Algorithm::Sha256),
        (blob(700, 4), Algorithm::Sha512),
    ] {
        let digest = Digest::of(algorithm, &data);
        let post = c
            .http
            .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::CREATED, "{digest}");
        let head = c
            .send(Method::HEAD, &format!("{base}/v2/{repo}/blobs/{digest}"))
            .await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "content-length"), data.len().to_string());
        let got = c
            .send(Method::GET, &format!("{base}/v2/{repo}/blobs/{digest}"))
            .await;
        assert_eq!(got.bytes().await.unwrap(), data);
    }

    // Cancel.
    let cancelled = session(&c).await;
    let r = c.send(Method::DELETE, &format!("{base}{cancelled}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c.send(Method::GET, &format!("{base}{cancelled}")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(r).await, "BLOB_UPLOAD_UNKNOWN");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bytes_ranges_and_mounts() {
    let c = TestCluster::start(0).await;
    let base = c.proxy();
    let repo = "conformance/ranges";

    // Five extra bytes under the original digest: the closing request is
    // 400 DIGEST_INVALID, in every upload shape, and nothing is stored.
    let data = blob(512, 5);
    let digest = Digest::sha256_of(&data);
    let mut longer = data.clone();
    longer.extend_from_slice(b"extra");
    let post = c
        .http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(longer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(post).await, "DIGEST_INVALID");
    let start = c
        .send(Method::POST, &format!("{base}/v2/{repo}/blobs/uploads/"))
        .await;
    let location = header(&start, "location");
    c.http
        .patch(format!("{base}{location}"))
        .body(longer)
        .send()
        .await
        .unwrap();
    let put = c
        .http
        .put(format!("{base}{location}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(put).await, "DIGEST_INVALID");
    let head = c
        .send(Method::HEAD, &format!("{base}/v2/{repo}/blobs/{digest}"))
        .await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    // Ranges on a 2048-byte blob.
    let data = blob(2048, 6);
    let digest = c.push_blob(repo, &data).await;
    let url = format!("{base}/v2/{repo}/blobs/{digest}");
    for (range, start, end) in [
        ("bytes=500-1499", 500, 1500),
        ("bytes=500-", 500, 2048),
        ("bytes=-500", 1548, 2048),
        ("bytes=2000-5000", 2000, 2048),
    ] {
        let r = c
            .http
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {start}-{}/2048", end - 1),
            "{range}"
        );
        assert_eq!(r.bytes().await.unwrap(), data[start..end], "{range}");
    }
    for range in ["bytes=500-0", "bytes=5000-10000"] {
        let r = c
            .http
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
    }
    let r = c
        .http
        .get(&url)
        .header("range", "bytes=5000-10000")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-range"), "bytes */2048");

    // Mounts: from a repository that has the blob, 201; anonymous, 201;
    // a blob nobody pushed, 202 and a session.
    let other = "conformance/mounted";
    let r = c
        .send(
            Method::POST,
            &format!("{base}/v2/{other}/blobs/uploads/?mount={digest}&from={repo}"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        format!("/v2/{other}/blobs/{digest}")
    );
    let got = c
        .send(Method::GET, &format!("{base}/v2/{other}/blobs/{digest}"))
        .await;
    assert_eq!(got.bytes().await.unwrap(), data);
    let r = c
        .send(
            Method::POST,
            &format!("{base}/v2/{other}/blobs/uploads/?mount={digest}"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let never = Digest::sha256_of(b"never pushed anywhere");
    let r = c
        .send(
            Method::POST,
            &format!("{base}/v2/{other}/blobs/uploads/?mount={never}&from={repo}"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "location").starts_with(&format!("/v2/{other}/blobs/uploads/")));
    c.shutdown().await;
}

/// Pushes an image of one config and one layer; returns (manifest bytes, digest).
async fn image(c: &TestCluster, repo: &str, seed: u64, tag: &str) -> (Vec<u8>, Digest) {
    let bytes = c.push_image(repo, tag, seed, 1).await;
    let digest = Digest::sha256_of(&bytes);
    (bytes.to_vec(), digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_tags_referrers_and_deletes() {
    let c = TestCluster::start(0).await;
    let base = c.proxy();
    let repo = "conformance/manifests";

    let unknown = c
        .send(Method::GET, &format!("{base}/v2/{repo}/manifests/nope"))
        .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(unknown).await, "MANIFEST_UNKNOWN");
    let invalid = c
        .send(
            Method::HEAD,
            &format!("{base}/v2/{repo}/manifests/.INVALID_MANIFEST_NAME"),
        )
        .await;
    assert_eq!(invalid.status(), StatusCode::NOT_FOUND);
    let wrong = c
        .send(
            Method::GET,
            &format!("{base}/v2/{repo}/manifests/sha256:totallywrong"),
        )
        .await;
    assert!(matches!(wrong.status().as_u16(), 400 | 404));
    assert!(!code(wrong).await.is_empty());

    // One manifest under four tags; by tag and by digest alike.
    let (manifest, digest) = image(&c, repo, 1, "test0").await;
    for tag in ["test1", "test2", "test3"] {
        let r = c
            .put_manifest(repo, tag, &manifest, media_type::OCI_MANIFEST)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(
            header(&r, "location"),
            format!("/v2/{repo}/manifests/{digest}")
        );
    }
    for reference in ["test2".to_owned(), digest.to_string()] {
        let url = format!("{base}/v2/{repo}/manifests/{reference}");
        let head = c.send(Method::HEAD, &url).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "content-type"), media_type::OCI_MANIFEST);
        assert_eq!(header(&head, "content-length"), manifest.len().to_string());
        assert_eq!(header(&head, "docker-content-digest"), digest.to_string());
        let get = c.send(Method::GET, &url).await;
        assert_eq!(get.bytes().await.unwrap(), manifest, "exact bytes");
    }

    // Tag lists: sorted, paginated.
    let list = |query: &str| {
        let url = format!("{base}/v2/{repo}/tags/list{query}");
        let http = c.http.clone();
        async move { http.get(url).send().await.unwrap() }
    };
    let all: serde_json::Value = list("").await.json().await.unwrap();
    assert_eq!(all["name"], repo);
    assert_eq!(
        all["tags"],
        serde_json::json!(["test0", "test1", "test2", "test3"])
    );
    let page = list("?n=2").await;
    assert_eq!(
        header(&page, "link"),
        format!("</v2/{repo}/tags/list?n=2&last=test1>; rel=\"next\"")
    );
    let page: serde_json::Value = page.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["test0", "test1"]));
    let rest: serde_json::Value = list("?n=2&last=test1").await.json().await.unwrap();
    assert_eq!(rest["tags"], serde_json::json!(["test2", "test3"]));
    let none: serde_json::Value = list("?n=0").await.json().await.unwrap();
    assert_eq!(none["tags"], serde_json::json!([]));

    // An index of two platforms whose children are pushed by digest.
    let (amd, amd_digest) = image(&c, repo, 2, "amd").await;
    let (arm, arm_digest) = image(&c, repo, 3, "arm").await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_INDEX,
        "manifests": [
            descriptor(media_type::OCI_MANIFEST, &amd_digest, amd.len()),
            descriptor(media_type::OCI_MANIFEST, &arm_digest, arm.len()),
        ],
    })
    .to_string();
    let index_digest = c
        .push_manifest(repo, "multi", index.as_bytes(), media_type::OCI_INDEX)
        .await;
    let got = c
        .send(Method::GET, &format!("{base}/v2/{repo}/manifests/multi"))
        .await;
    assert_eq!(header(&got, "content-type"), media_type::OCI_INDEX);
    assert_eq!(
        header(&got, "docker-content-digest"),
        index_digest.to_string()
    );

    // Artifacts with a subject, and the referrers API.
    let empty = c.push_blob(repo, b"{}").await;
    let artifact = |kind: &str, subject: &Digest| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "artifactType": kind,
            "config": descriptor("application/vnd.oci.empty.v1+json", &empty, 2),
            "layers": [],
            "subject": descriptor(media_type::OCI_MANIFEST, subject, 10),
            "annotations": {"org.opencontainers.conformance.test": kind},
        })
        .to_string()
    };
    let sbom = artifact("application/vnd.example.sbom", &digest);
    let sig = artifact("application/vnd.example.signature", &digest);
    for body in [&sbom, &sig] {
        let d = Digest::sha256_of(body.as_bytes());
        let r = c
            .put_manifest(
                repo,
                &d.to_string(),
                body.as_bytes(),
                media_type::OCI_MANIFEST,
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(header(&r, "oci-subject"), digest.to_string());
    }
    let referrers = c
        .send(Method::GET, &format!("{base}/v2/{repo}/referrers/{digest}"))
        .await;
    assert_eq!(referrers.status(), StatusCode::OK);
    assert_eq!(header(&referrers, "content-type"), media_type::OCI_INDEX);
    let body: serde_json::Value = referrers.json().await.unwrap();
    assert_eq!(body["schemaVersion"], 2);
    let listed = body["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for entry in listed {
        let kind = entry["artifactType"].as_str().unwrap();
        assert_eq!(
            entry["annotations"]["org.opencontainers.conformance.test"],
            kind
        );
    }
    let filtered = c
        .send(
            Method::GET,
            &format!(
                "{base}/v2/{repo}/referrers/{digest}?artifactType=application/vnd.example.sbom"
            ),
        )
        .await;
    assert_eq!(header(&filtered, "oci-filters-applied"), "artifactType");
    let body: serde_json::Value = filtered.json().await.unwrap();
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    let nobody = Digest::sha256_of(b"no subject");
    let empty_list: serde_json::Value = c
        .send(Method::GET, &format!("{base}/v2/{repo}/referrers/{nobody}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty_list["manifests"], serde_json::json!([]));
    // A subject that was never pushed is accepted.
    let orphan = artifact("application/vnd.example.orphan", &nobody);
    let d = Digest::sha256_of(orphan.as_bytes());
    let r = c
        .put_manifest(
            repo,
            &d.to_string(),
            orphan.as_bytes(),
            media_type::OCI_MANIFEST,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Deletes: a tag, then the manifest with every tag left on it.
    let r = c
        .send(Method::DELETE, &format!("{base}/v2/{repo}/manifests/test3"))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = c
        .send(Method::GET, &format!("{base}/v2/{repo}/manifests/test3"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .send(
            Method::DELETE,
            &format!("{base}/v2/{repo}/manifests/{digest}"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for reference in ["test0".to_owned(), digest.to_string()] {
        let r = c
            .send(
                Method::HEAD,
                &format!("{base}/v2/{repo}/manifests/{reference}"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{reference}");
    }
    let all: serde_json::Value = list("").await.json().await.unwrap();
    assert_eq!(all["tags"], serde_json::json!(["amd", "arm", "multi"]));

    let catalog: serde_json::Value = c
        .send(Method::GET, &format!("{base}/v2/_catalog"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!([repo]));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_and_nothing_is_stored() {
    let c = TestCluster::start(0).await;
    let base = c.proxy();
    let repo = "conformance/bad";
    let (manifest, _) = image(&c, repo, 7, "good").await;

    // The bytes plus two spaces under the original digest.
    let digest = Digest::sha256_of(&manifest);
    let mut padded = manifest.clone();
    padded.extend_from_slice(b"  ");
    let other = "conformance/other";
    let r = c
        .put_manifest(
            other,
            &digest.to_string(),
            &padded,
            media_type::OCI_MANIFEST,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(r).await, "DIGEST_INVALID");
    let r = c
        .put_manifest(
            repo,
            "sha256:baddigeststring",
            &manifest,
            media_type::OCI_MANIFEST,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .send(
            Method::GET,
            &format!("{base}/v2/{other}/manifests/{digest}"),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "nothing was recorded in the other repo"
    );

    // A layer nobody has.
    let config = c.push_blob(repo, b"{\"config\":1}").await;
    let ghost = Digest::sha256_of(b"a layer nobody pushed");
    let dangling = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config, 12),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &ghost, 5)],
    })
    .to_string();
    let r = c
        .put_manifest(
            repo,
            "dangling",
            dangling.as_bytes(),
            media_type::OCI_MANIFEST,
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&ghost.to_string())
    );
    let r = c
        .send(Method::GET, &format!("{base}/v2/{repo}/manifests/dangling"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Not a manifest; over the size limit.
    let r = c
        .put_manifest(repo, "junk", b"not json", media_type::OCI_MANIFEST)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(r).await, "MANIFEST_INVALID");
    let huge = vec![b' '; 9 * 1024 * 1024];
    let r = c
        .put_manifest(repo, "huge", &huge, media_type::OCI_MANIFEST)
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // A manifest of almost 4 MB of annotations is accepted.
    let annotations: serde_json::Map<String, serde_json::Value> = (0..390)
        .map(|i| {
            (
                format!("org.example.{i}"),
                serde_json::json!("x".repeat(10_000)),
            )
        })
        .collect();
    let mut large: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    large["annotations"] = serde_json::Value::Object(annotations);
    let large = serde_json::to_vec(&large).unwrap();
    assert!(large.len() > 3_900_000);
    c.push_manifest(repo, "large", &large, media_type::OCI_MANIFEST)
        .await;
    let r = c
        .send(Method::GET, &format!("{base}/v2/{repo}/manifests/large"))
        .await;
    assert_eq!(r.bytes().await.unwrap(), large);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_tags_digests_and_uploads_get_spec_codes() {
    let c = TestCluster::start(0).await;
    let base = c.proxy();
    let cases = [
        (Method::GET, "/v2/UPPER/tags/list", 400, "NAME_INVALID"),
        (Method::GET, "/v2/a//b/manifests/v1", 400, "NAME_INVALID"),
        (
            Method::POST,
            "/v2/bad..name/blobs/uploads/",
            400,
            "NAME_INVALID",
        ),
        (
            Method::GET,
            "/v2/ok/blobs/sha256:xyz",
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/ok/referrers/sha256:xyz",
            400,
            "DIGEST_INVALID",
        ),
        (
            Method::PUT,
            "/v2/ok/manifests/-bad-tag",
            400,
            "MANIFEST_INVALID",
        ),
        (
            Method::GET,
            "/v2/ok/blobs/uploads/00000000000000000000000000000000",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::PATCH,
            "/v2/ok/blobs/uploads/nonsense",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            Method::GET,
            "/v2/ok/tags/list?n=many",
            400,
            "PAGINATION_NUMBER_INVALID",
        ),
        (
            Method::DELETE,
            "/v2/ok/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            405,
            "UNSUPPORTED",
        ),
    ];
    for (method, path, status, expected) in cases {
        let r = c.send(method.clone(), &format!("{base}{path}")).await;
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        assert_eq!(code(r).await, expected, "{method} {path}");
    }
    let missing = Digest::sha256_of(b"hello world");
    let r = c
        .send(Method::GET, &format!("{base}/v2/ok/blobs/{missing}"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(r).await, "BLOB_UNKNOWN");
    // The proxy still serves, and says so.
    for path in ["/health", "/readiness"] {
        let r = c.send(Method::GET, &format!("{base}{path}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let ping = c.send(Method::GET, &format!("{base}/v2/")).await;
    assert_eq!(ping.status(), StatusCode::OK);
    assert_eq!(
        header(&ping, "docker-distribution-api-version"),
        "registry/2.0"
    );
    c.push_image("ok", "v1", 9, 1).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_serves_the_read_subset_and_refuses_pushes() {
    let c = TestCluster::start(1).await;
    let repo = "conformance/agent";
    let (manifest, digest) = image(&c, repo, 11, "v1").await;
    let parsed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer: Digest = parsed["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let agent = c.agent(0);

    for path in ["/v2/", "/health", "/readiness"] {
        let r = c.send(Method::GET, &format!("{agent}{path}")).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    for reference in ["v1".to_owned(), digest.to_string()] {
        let url = format!("{agent}/v2/{repo}/manifests/{reference}?ns=docker.io");
        let head = c.send(Method::HEAD, &url).await;
        assert_eq!(head.status(), StatusCode::OK, "{reference}");
        assert_eq!(header(&head, "docker-content-digest"), digest.to_string());
        assert_eq!(header(&head, "content-type"), media_type::OCI_MANIFEST);
        let get = c.send(Method::GET, &url).await;
        assert_eq!(get.bytes().await.unwrap(), manifest);
    }
    let url = format!("{agent}/v2/{repo}/blobs/{layer}");
    let head = c.send(Method::HEAD, &url).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "40000");
    let whole = c.send(Method::GET, &url).await.bytes().await.unwrap();
    assert_eq!(Digest::sha256_of(&whole), layer);
    let part = c
        .http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.unwrap(), whole[100..200]);
    let tags: serde_json::Value = c
        .send(Method::GET, &format!("{agent}/v2/{repo}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let missing = Digest::sha256_of(b"nobody has this");
    let r = c
        .send(Method::GET, &format!("{agent}/v2/{repo}/blobs/{missing}"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .send(Method::GET, &format!("{agent}/v2/{repo}/manifests/v2"))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Pushes are refused with a message naming the proxy.
    let r = c
        .send(Method::POST, &format!("{agent}/v2/{repo}/blobs/uploads/"))
        .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "UNSUPPORTED");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&c.cluster.proxy_addr().to_string()),
        "{message}"
    );
    let r = c.put_manifest_to(&agent, repo, "v2", &manifest).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // Both ends count what they did.
    let text = c
        .send(Method::GET, &format!("{agent}/metrics"))
        .await
        .text()
        .await
        .unwrap();
    let served = r#"kraken_http_requests_total{component="agent",method="GET",route="/v2/{name}/blobs/{digest}",status="200"}"#;
    assert!(text.contains(served), "{text}");
    assert!(
        text.contains("kraken_swarm_received_bytes_total{component=\"agent\"}"),
        "{text}"
    );
    let text = c
        .send(Method::GET, &format!("{}/metrics", c.proxy()))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"route="/v2/{name}/manifests/{reference}",status="201""#),
        "{text}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repushed_tag_is_seen_at_once_through_an_agent() {
    let c = TestCluster::start(1).await;
    let repo = "team/app";
    let agent = c.agent(0);
    let (_, first) = image(&c, repo, 21, "v1").await;
    let url = format!("{agent}/v2/{repo}/manifests/v1");
    let r = c.send(Method::GET, &url).await;
    assert_eq!(header(&r, "docker-content-digest"), first.to_string());
    let (second_bytes, second) = image(&c, repo, 22, "v1").await;
    assert_ne!(first, second);
    let r = c.send(Method::GET, &url).await;
    assert_eq!(header(&r, "docker-content-digest"), second.to_string());
    assert_eq!(r.bytes().await.unwrap(), second_bytes);
    c.shutdown().await;
}
