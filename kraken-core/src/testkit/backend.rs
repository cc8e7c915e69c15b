//! The behaviour suite every `Backend` implementation runs.
//!
//! It works in fresh random namespaces and writes only objects it names
//! itself, so it can run against a shared bucket or server; it leaves its
//! objects behind because the trait has no delete.

use std::collections::BTreeSet;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt};

use super::{ok, random_bytes, random_namespace, token};
use crate::{Backend, BackendError, BackendErrorKind, Digest, Namespace, UploadBody};

/// The chunk size of upload bodies, small enough that the large object
/// arrives in many chunks.
const UPLOAD_CHUNK: usize = 64 * 1024;

/// Checks `backend` against the contract of [`Backend`].
///
/// Checks run in random namespaces:
///
/// - `stat` and `download` of a missing object fail with `NotFound`;
/// - with `write`: objects of 0 bytes, 1 byte and about 3 MiB (uploaded in
///   many chunks) stat to their size and download to their bytes; ranged
///   downloads of the start, the middle and past the end (clamped) return
///   the right slices and an empty range returns nothing; an overwrite
///   replaces the bytes, and readers racing it see the old or the new
///   object whole; a body shorter or longer than its declared length fails
///   with `Corrupt` and stores nothing, or keeps the old object; names
///   holding `:`, `/`, `@`, `..` and spaces, and the longest allowed name,
///   round-trip; objects are isolated per namespace, also where a naive
///   path join would collide; concurrent uploads all land;
/// - without `write`: `upload` fails with `Unsupported` and stores nothing;
/// - with `list`: listing by prefix two names a page returns every match
///   exactly once and ends with no token; a prefix matching nothing gives
///   one empty last page;
/// - without `list`: `list` fails with `Unsupported`.
///
/// # Panics
///
/// On the first broken contract, with a message naming the check.
pub async fn backend_suite(backend: Arc<dyn Backend>) {
    let suite = Suite {
        backend,
        ns: random_namespace("backend"),
    };
    let caps = suite.backend.capabilities();
    suite.missing_objects().await;
    if caps.write {
        suite.round_trips().await;
        suite.ranged_downloads().await;
        suite.overwrite().await;
        suite.wrong_length().await;
        suite.awkward_names().await;
        suite.namespace_isolation().await;
        suite.concurrent_uploads().await;
    } else {
        suite.read_only().await;
    }
    match (caps.list, caps.write) {
        (true, true) => suite.listing().await,
        (true, false) => suite.empty_listing().await,
        (false, _) => suite.no_listing().await,
    }
}

struct Suite {
    backend: Arc<dyn Backend>,
    ns: Namespace,
}

impl Suite {
    async fn missing_objects(&self) {
        let check = "backend_suite/missing object";
        let name = format!("missing-{}", token());
        for ns in [&self.ns, &random_namespace("never-written")] {
            expect_kind(
                check,
                self.backend.stat(ns, &name).await,
                BackendErrorKind::NotFound,
            );
            let download = self.backend.download(ns, &name, None).await;
            expect_kind(check, download, BackendErrorKind::NotFound);
            let ranged = self.backend.download(ns, &name, Some(0..1)).await;
            expect_kind(check, ranged, BackendErrorKind::NotFound);
        }
    }

    async fn round_trips(&self) {
        let check = "backend_suite/upload then read";
        for len in [0, 1, 3 * 1024 * 1024 + 17] {
            let name = format!("blob-{}", token());
            let data = random_bytes(len);
            self.put(check, &self.ns, &name, data.clone()).await;
            self.expect_object(check, &self.ns, &name, &data).await;
        }
    }

    async fn ranged_downloads(&self) {
        let check = "backend_suite/ranged download";
        let name = format!("ranged-{}", token());
        let data = random_bytes(200 * 1024 + 3);
        self.put(check, &self.ns, &name, data.clone()).await;
        let len = data.len() as u64;
        let cases: [(Range<u64>, Range<usize>); 6] = [
            (0..10, 0..10),
            (1000..150_000, 1000..150_000),
            (len - 5..len, data.len() - 5..data.len()),
            (len - 5..len + 100, data.len() - 5..data.len()),
            (7..7, 7..7),
            (len + 10..len + 20, 0..0),
        ];
        for (asked, expected) in cases {
            let got = self.get(check, &self.ns, &name, Some(asked.clone())).await;
            assert!(
                got == data.slice(expected.clone()),
                "{check}: range {asked:?} of a {len}-byte object gave {} bytes, expected \
                 bytes {expected:?}",
                got.len(),
            );
        }
    }

    async fn overwrite(&self) {
        let check = "backend_suite/overwrite";
        let name = format!("tag-{}", token());
        let (old, new) = (random_bytes(300 * 1024), random_bytes(100 * 1024 + 1));
        self.put(check, &self.ns, &name, old.clone()).await;
        let readers = (0..8).map(|_| self.get(check, &self.ns, &name, None));
        let (_, seen) = futures::join!(
            self.put(check, &self.ns, &name, new.clone()),
            futures::future::join_all(readers)
        );
        for got in seen {
            assert!(
                got == old || got == new,
                "{check}: a reader racing the overwrite saw {} bytes that are neither object",
                got.len()
            );
        }
        self.expect_object(check, &self.ns, &name, &new).await;
    }

    async fn wrong_length(&self) {
        let check = "backend_suite/upload of the wrong length";
        let data = random_bytes(1000);
        for declared in [999, 1001, 0] {
            let name = format!("bad-{}", token());
            let result = self.upload(&self.ns, &name, declared, data.clone()).await;
            expect_kind(check, result, BackendErrorKind::Corrupt);
            let stat = self.backend.stat(&self.ns, &name).await;
            expect_kind(
                &format!("{check} left nothing"),
                stat,
                BackendErrorKind::NotFound,
            );
        }
        let name = format!("kept-{}", token());
        let old = random_bytes(64);
        self.put(check, &self.ns, &name, old.clone()).await;
        for declared in [999, 1001] {
            let result = self.upload(&self.ns, &name, declared, data.clone()).await;
            expect_kind(check, result, BackendErrorKind::Corrupt);
            self.expect_object(
                &format!("{check} kept the old object"),
                &self.ns,
                &name,
                &old,
            )
            .await;
        }
    }

    async fn awkward_names(&self) {
        let check = "backend_suite/names round-trip";
        let run = token();
        let digest = Digest::sha256_of(run.as_bytes());
        let names = [
            format!("library/ubuntu-{run}:latest"),
            format!("{digest}"),
            format!("repo-{run}@{digest}"),
            format!("a/../b-{run}"),
            format!("b-{run}"),
            format!("with space %2F {run}"),
            format!(
                "{run}-{}",
                "x".repeat(crate::MAX_OBJECT_NAME_LEN - run.len() - 1)
            ),
        ];
        for name in &names {
            let data = Bytes::from(format!("object named {name}"));
            self.put(check, &self.ns, name, data).await;
        }
        for name in &names {
            let data = Bytes::from(format!("object named {name}"));
            self.expect_object(&format!("{check} ({name:.60})"), &self.ns, name, &data)
                .await;
        }
    }

    async fn namespace_isolation(&self) {
        let check = "backend_suite/namespace isolation";
        let (a, b) = (random_namespace("iso-a"), random_namespace("iso-b"));
        let name = format!("shared-{}", token());
        self.put(check, &a, &name, Bytes::from_static(b"in a"))
            .await;
        expect_kind(
            check,
            self.backend.stat(&b, &name).await,
            BackendErrorKind::NotFound,
        );
        self.put(check, &b, &name, Bytes::from_static(b"in b"))
            .await;
        self.expect_object(check, &a, &name, b"in a").await;
        self.expect_object(check, &b, &name, b"in b").await;

        // `x/y` + `z` and `x` + `y/z` are one path to a naive join.
        let nested = Namespace::new(format!("{a}/y")).expect("valid namespace");
        self.put(check, &nested, "z", Bytes::from_static(b"nested"))
            .await;
        self.put(check, &a, "y/z", Bytes::from_static(b"flat"))
            .await;
        self.expect_object(check, &nested, "z", b"nested").await;
        self.expect_object(check, &a, "y/z", b"flat").await;
    }

    async fn concurrent_uploads(&self) {
        let check = "backend_suite/concurrent uploads";
        let objects: Vec<_> = (0..8)
            .map(|i| {
                (
                    format!("concurrent-{i}-{}", token()),
                    random_bytes(10_000 + i),
                )
            })
            .collect();
        let uploads = objects
            .iter()
            .map(|(name, data)| self.put(check, &self.ns, name, data.clone()));
        futures::future::join_all(uploads).await;
        for (name, data) in &objects {
            self.expect_object(check, &self.ns, name, data).await;
        }
    }

    async fn read_only(&self) {
        let check = "backend_suite/read-only upload";
        let name = format!("refused-{}", token());
        let result = self
            .upload(&self.ns, &name, 1, Bytes::from_static(b"x"))
            .await;
        expect_kind(check, result, BackendErrorKind::Unsupported);
        expect_kind(
            check,
            self.backend.stat(&self.ns, &name).await,
            BackendErrorKind::NotFound,
        );
    }

    async fn listing(&self) {
        let check = "backend_suite/list";
        let prefix = format!("list-{}/", token());
        let suffixes = ["a", "a/b", "ab", "b:latest", "c@sha256:0123"];
        let names: BTreeSet<String> = suffixes.iter().map(|s| format!("{prefix}{s}")).collect();
        for name in &names {
            self.put(check, &self.ns, name, Bytes::from_static(b"listed"))
                .await;
        }
        // Near misses that must not be listed: another prefix, another
        // namespace.
        self.put(
            check,
            &self.ns,
            &format!("{}x", prefix.trim_end_matches('/')),
            Bytes::new(),
        )
        .await;
        let other = random_namespace("list-other");
        self.put(check, &other, &format!("{prefix}a"), Bytes::new())
            .await;

        assert_eq!(
            self.list_all(check, &self.ns, &prefix, 2).await,
            names,
            "{check}: by prefix"
        );
        let narrow: BTreeSet<String> = ["a", "a/b", "ab"]
            .iter()
            .map(|s| format!("{prefix}{s}"))
            .collect();
        let got = self
            .list_all(check, &self.ns, &format!("{prefix}a"), 2)
            .await;
        assert_eq!(
            got, narrow,
            "{check}: a prefix is a string prefix, not a directory"
        );
        self.empty_listing().await;
    }

    async fn empty_listing(&self) {
        let check = "backend_suite/list of an empty prefix";
        let prefix = format!("nothing-{}/", token());
        let page = ok(check, self.backend.list(&self.ns, &prefix, None, 2).await);
        assert!(page.names.is_empty(), "{check}: listed {:?}", page.names);
        assert_eq!(page.next, None, "{check}: an empty listing must end");
    }

    async fn no_listing(&self) {
        let check = "backend_suite/list unsupported";
        let result = self.backend.list(&self.ns, "", None, 10).await;
        expect_kind(check, result, BackendErrorKind::Unsupported);
    }

    /// Lists every page of `prefix`, checking each name comes once and
    /// pages respect `limit`.
    async fn list_all(
        &self,
        check: &str,
        ns: &Namespace,
        prefix: &str,
        limit: usize,
    ) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut page = None;
        for _ in 0..100 {
            let listed = ok(
                check,
                self.backend.list(ns, prefix, page.as_deref(), limit).await,
            );
            assert!(
                listed.names.len() <= limit,
                "{check}: page of {} > limit",
                listed.names.len()
            );
            for name in listed.names {
                assert!(seen.insert(name.clone()), "{check}: {name} listed twice");
            }
            page = listed.next;
            if page.is_none() {
                return seen;
            }
        }
        panic!("{check}: listing did not end after 100 pages");
    }

    async fn put(&self, check: &str, ns: &Namespace, name: &str, data: Bytes) {
        let result = self.upload(ns, name, data.len() as u64, data).await;
        ok(&format!("{check}: upload {name:.60}"), result);
    }

    async fn upload(
        &self,
        ns: &Namespace,
        name: &str,
        length: u64,
        data: Bytes,
    ) -> Result<(), BackendError> {
        self.backend.upload(ns, name, length, body(&data)).await
    }

    async fn get(
        &self,
        check: &str,
        ns: &Namespace,
        name: &str,
        range: Option<Range<u64>>,
    ) -> Bytes {
        let check = format!("{check}: download {name:.60}");
        let mut stream = ok(&check, self.backend.download(ns, name, range).await);
        let mut data = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&ok(&check, chunk));
        }
        data.freeze()
    }

    /// Checks an object stats to the size of `data` and downloads to it.
    async fn expect_object(&self, check: &str, ns: &Namespace, name: &str, data: &[u8]) {
        let info = ok(
            &format!("{check}: stat {name:.60}"),
            self.backend.stat(ns, name).await,
        );
        assert_eq!(
            info.size,
            data.len() as u64,
            "{check}: stat size of {name:.60}"
        );
        let got = self.get(check, ns, name, None).await;
        assert!(
            got == data,
            "{check}: {name:.60} downloaded {} bytes that differ from the {} uploaded",
            got.len(),
            data.len()
        );
    }
}

/// Cuts `data` into an upload body of many chunks.
fn body(data: &Bytes) -> UploadBody {
    let chunks: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(UPLOAD_CHUNK)
        .map(|at| Ok(data.slice(at..(at + UPLOAD_CHUNK).min(data.len()))))
        .collect();
    stream::iter(chunks).boxed()
}

/// Fails `check` unless `result` is an error of `kind`.
#[track_caller]
fn expect_kind<T>(check: &str, result: Result<T, BackendError>, kind: BackendErrorKind) {
    match result {
        Err(e) if e.kind() == kind => {}
        Err(e) => panic!("{check}: expected a {kind} error, got {e}"),
        Ok(_) => panic!("{check}: expected a {kind} error, got success"),
    }
}
