//! An nginx on 127.0.0.1, one per test, with a config the test writes:
//! a WebDAV file server (`PUT`, JSON autoindex) or a reverse proxy, over
//! plain HTTP or TLS with a certificate from [`TestCa`].
//!
//! The tests need the `nginx` binary (Debian's `nginx-light`). Without it
//! they print why they skip, unless `CI` is set, where they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

use super::{free_port, tool};

/// What nginx serves.
pub enum Site {
    /// Files under `root/`, stored by WebDAV `PUT` and listed as JSON.
    Dav,
    /// Everything proxied to `upstream` (`http://127.0.0.1:PORT`), `Host`
    /// passed on unchanged so request signatures still match.
    Proxy { upstream: String },
    /// Every request redirected (307) to the same path under `to`.
    Redirect { to: String },
}

/// A certificate and key for nginx to serve.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A throwaway certificate authority, and server certificates it issues
/// for 127.0.0.1 and localhost.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "kraken-backends test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes a server certificate and key into `dir`.
    pub fn server_cert(&self, dir: &Path) -> ServerCert {
        let names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let out = ServerCert {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
        };
        std::fs::write(&out.cert, cert.pem()).unwrap();
        std::fs::write(&out.key, key.serialize_pem()).unwrap();
        out
    }
}

/// An nginx, killed on drop by its own handle.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Returns every file under `sub` of nginx's directory.
    pub fn files_in(&self, sub: &str) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut dirs = vec![self.dir.path().join(sub)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files
    }
}

fn location(site: &Site) -> String {
    match site {
        Site::Dav => "location / {
            dav_methods PUT DELETE;
            create_full_put_path on;
            client_max_body_size 0;
            autoindex on;
            autoindex_format json;
        }"
        .to_owned(),
        Site::Proxy { upstream } => format!(
            "location / {{
            proxy_pass {upstream};
            proxy_set_header Host $http_host;
            proxy_request_buffering off;
            proxy_buffering off;
            client_max_body_size 0;
        }}"
        ),
        Site::Redirect { to } => format!("location / {{ return 307 {to}$request_uri; }}"),
    }
}

fn config(dir: &Path, port: u16, site: &Site, tls: Option<&ServerCert>) -> String {
    let d = dir.display();
    let listen = match tls {
        None => format!("listen 127.0.0.1:{port};"),
        Some(cert) => format!(
            "listen 127.0.0.1:{port} ssl;
        ssl_certificate {};
        ssl_certificate_key {};",
            cert.cert.display(),
            cert.key.display()
        ),
    };
    // One process (`master_process off`), so killing the child stops all of
    // nginx rather than orphaning its workers. `user` matters only when the
    // test runs as root, where nginx would otherwise drop to `nobody` and
    // lose access to the temp dir; as another user it is ignored.
    format!(
        "user root;
master_process off;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        {listen}
        root {d}/root;
        {}
    }}
}}
",
        location(site)
    )
}

/// Starts nginx serving `site`, over TLS with a certificate of `ca` when
/// given, or returns `None` (after saying why) when it is missing outside
/// CI.
pub async fn start_nginx(site: Site, ca: Option<&TestCa>) -> Option<Nginx> {
    let binary = tool("nginx", "apt-get install nginx-light")?;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("root")).unwrap();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let port = free_port();
    let cert = ca.map(|ca| ca.server_cert(dir.path()));
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config(dir.path(), port, &site, cert.as_ref())).unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut nginx = Nginx { child, port, dir };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(nginx);
        }
        if let Some(status) = nginx.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(nginx.dir.path().join("error.log"));
            panic!("nginx exited with {status}: {}", log.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nginx did not listen on port {port}");
}
