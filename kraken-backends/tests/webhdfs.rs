//! The WebHDFS backend against an in-test fake of the WebHDFS REST API:
//! no HDFS or WebHDFS server installs from the package registries this
//! project uses, so these tests pin the protocol as Hadoop documents it (a
//! namenode that redirects `OPEN` and `CREATE` to a datanode on another
//! port, `GETFILESTATUS`, `LISTSTATUS`, `MKDIRS`, `DELETE`, and `RENAME`
//! with the `OVERWRITE` option applied atomically) rather than a real
//! cluster's behaviour.

#![cfg(feature = "webhdfs")]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use common::read_all;
use futures::StreamExt;
use kraken_backends::webhdfs::{WebHdfsBackend, WebHdfsBackendOptions};
use kraken_core::{Backend, BackendErrorKind, Namespace};
use percent_encoding::percent_decode_str;

#[derive(Default)]
struct Hdfs {
    files: BTreeMap<String, Bytes>,
    dirs: BTreeSet<String>,
    datanode: Option<SocketAddr>,
    users: Vec<String>,
}

type Shared = Arc<Mutex<Hdfs>>;

fn exception(status: StatusCode, kind: &str) -> Response {
    let body = serde_json::json!({"RemoteException": {"exception": kind, "message": kind}});
    (status, axum::Json(body)).into_response()
}

fn parent(path: &str) -> String {
    path.rsplit_once('/')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default()
}

async fn serve(
    State(hdfs): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let raw = uri.path().strip_prefix("/webhdfs/v1").unwrap_or("");
    let path = percent_decode_str(raw).decode_utf8().unwrap().into_owned();
    let op = query.get("op").map(String::as_str).unwrap_or("");
    let on_datanode = query.contains_key("namenoderpcaddress");
    let mut hdfs = hdfs.lock().unwrap();
    hdfs.users.extend(query.get("user.name").cloned());
    match (method, op, on_datanode) {
        (Method::GET, "GETFILESTATUS", false) => match hdfs.files.get(&path) {
            Some(data) => axum::Json(serde_json::json!({"FileStatus":
                {"length": data.len(), "pathSuffix": "", "type": "FILE"}}))
            .into_response(),
            None => exception(StatusCode::NOT_FOUND, "FileNotFoundException"),
        },
        (Method::GET, "LISTSTATUS", false) => {
            if !hdfs.dirs.contains(&path) {
                return exception(StatusCode::NOT_FOUND, "FileNotFoundException");
            }
            let inside = hdfs.files.iter().filter(|(p, _)| parent(p) == path);
            let listed: Vec<_> = inside
                .map(|(p, d)| {
                    let name = p.rsplit('/').next().unwrap();
                    serde_json::json!({"pathSuffix": name, "type": "FILE", "length": d.len()})
                })
                .collect();
            axum::Json(serde_json::json!({"FileStatuses": {"FileStatus": listed}})).into_response()
        }
        (Method::PUT, "MKDIRS", false) => {
            let mut dir = String::new();
            for part in path.split('/').skip(1) {
                dir = format!("{dir}/{part}");
                hdfs.dirs.insert(dir.clone());
            }
            axum::Json(serde_json::json!({"boolean": true})).into_response()
        }
        (Method::GET, "OPEN", false) | (Method::PUT, "CREATE", false) => {
            let datanode = hdfs.datanode.unwrap();
            let mut to = format!(
                "http://{datanode}{}?{}",
                uri.path(),
                uri.query().unwrap_or("")
            );
            to.push_str("&namenoderpcaddress=fake:8020");
            (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response()
        }
        (Method::GET, "OPEN", true) => {
            let Some(data) = hdfs.files.get(&path).cloned() else {
                return exception(StatusCode::NOT_FOUND, "FileNotFoundException");
            };
            let number = |key: &str| query.get(key).map(|v| v.parse::<usize>().unwrap());
            let offset = number("offset").unwrap_or(0);
            if offset > data.len() {
                return exception(StatusCode::FORBIDDEN, "IOException");
            }
            let end = number("length").map_or(data.len(), |l| (offset + l).min(data.len()));
            data.slice(offset..end).into_response()
        }
        (Method::PUT, "CREATE", true) => {
            if !hdfs.dirs.contains(&parent(&path)) {
                let dir = parent(&path);
                let mut made = String::new();
                for part in dir.split('/').skip(1) {
                    made = format!("{made}/{part}");
                    hdfs.dirs.insert(made.clone());
                }
            }
            hdfs.files.insert(path, body);
            StatusCode::CREATED.into_response()
        }
        (Method::PUT, "RENAME", false) => {
            let to = query.get("destination").cloned().unwrap_or_default();
            let overwrite = query.get("renameoptions").is_some_and(|o| o == "OVERWRITE");
            if !hdfs.dirs.contains(&parent(&to)) {
                return exception(StatusCode::NOT_FOUND, "FileNotFoundException");
            }
            if hdfs.files.contains_key(&to) && !overwrite {
                return exception(StatusCode::CONFLICT, "FileAlreadyExistsException");
            }
            match hdfs.files.remove(&path) {
                Some(data) => {
                    hdfs.files.insert(to, data);
                    StatusCode::OK.into_response()
                }
                None => exception(StatusCode::NOT_FOUND, "FileNotFoundException"),
            }
        }
        (Method::DELETE, "DELETE", false) => {
            let gone = hdfs.files.remove(&path).is_some();
            axum::Json(serde_json::json!({"boolean": gone})).into_response()
        }
        _ => exception(StatusCode::BAD_REQUEST, "IllegalArgumentException"),
    }
}

/// Starts the fake namenode and datanode, sharing one namespace tree.
async fn start_fake() -> (SocketAddr, Shared) {
    let hdfs: Shared = Arc::default();
    let app = axum::Router::new()
        .fallback(serve)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(hdfs.clone());
    let namenode = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let datanode = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = namenode.local_addr().unwrap();
    hdfs.lock().unwrap().datanode = Some(datanode.local_addr().unwrap());
    let second = app.clone();
    tokio::spawn(async move { axum::serve(namenode, app).await });
    tokio::spawn(async move { axum::serve(datanode, second).await });
    (addr, hdfs)
}

fn backend(addr: SocketAddr) -> WebHdfsBackend {
    let mut options = WebHdfsBackendOptions::new(format!("http://{addr}"));
    options.user = Some("kraken".into());
    WebHdfsBackend::new(options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_the_backend_suite_against_the_fake() {
    let (addr, hdfs) = start_fake().await;
    kraken_core::testkit::backend_suite(Arc::new(backend(addr))).await;
    let hdfs = hdfs.lock().unwrap();
    assert!(hdfs.users.iter().all(|u| u == "kraken") && !hdfs.users.is_empty());
    let uploads = hdfs
        .files
        .keys()
        .filter(|p| p.contains("/@uploads/"))
        .count();
    assert_eq!(uploads, 0, "no upload is left in @uploads");
    assert!(
        hdfs.files
            .keys()
            .all(|p| !p.rsplit('/').next().unwrap().contains(':')),
        "HDFS file names never hold a colon"
    );
}

#[tokio::test]
async fn files_land_under_the_root_by_namespace() {
    let (addr, hdfs) = start_fake().await;
    let backend = backend(addr);
    let ns = Namespace::new("library/app").unwrap();
    let body = futures::stream::iter([Ok(Bytes::from_static(b"blob"))]).boxed();
    backend.upload(&ns, "sha256:ab", 4, body).await.unwrap();
    let files: Vec<String> = hdfs.lock().unwrap().files.keys().cloned().collect();
    assert_eq!(files, ["/kraken/library%2Fapp/sha256%3Aab"]);
    assert_eq!(
        read_all(&backend, &ns, "sha256:ab", Some(1..3))
            .await
            .unwrap(),
        &b"lo"[..]
    );
    let short = futures::stream::iter([Ok(Bytes::from_static(b"bl"))]).boxed();
    let error = backend
        .upload(&ns, "sha256:ab", 4, short)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), BackendErrorKind::Corrupt, "{error}");
    assert_eq!(
        read_all(&backend, &ns, "sha256:ab", None).await.unwrap(),
        &b"blob"[..]
    );
}
