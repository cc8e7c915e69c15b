//! TLS on the HTTP APIs of the components, as server and as client, so
//! that the calls between them (the proxy and build-index to origins,
//! origins to each other, the tracker to origins, agents to trackers and
//! build-index, build-index to another cluster) can run over mutual TLS.
//!
//! Plain HTTP stays the default: a listener or client without options
//! behaves as before. A listener given [`ServerTlsOptions`] speaks only
//! TLS, and with a `client_ca` it admits only clients whose certificate
//! chains to that CA. A client given [`ClientTlsOptions`] uses `https://`,
//! trusts only the CA it names, and presents its own certificate when it
//! has one. Certificates are verified for the host the client dials (a
//! DNS name or an IP address subject alternative name).
//!
//! Every listener goes through [`HttpListener`], so the TLS accept loop
//! exists once; every client starts from [`client_builder`], so each one
//! runs rustls on ring with a configuration chosen here. Nothing depends on
//! a process-wide crypto provider: reqwest's `rustls-no-provider` feature
//! makes a client built without a ready configuration panic, which is why
//! the plain clients take one too.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;

use crate::tls::{TlsError, TlsOptions, certify, load_certs, load_key, load_roots};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The ALPN protocol both sides offer.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// What a plain-HTTP client of a TLS listener is told before it is
/// disconnected, so the mistake reads as one.
const PLAINTEXT_REFUSAL: &str = "this server speaks https only; send the request over tls\n";

/// TLS of a component's HTTP listener. Deserializes from a `[tls]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsOptions {
    /// PEM certificate chain the server presents, its own certificate
    /// first.
    pub cert: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of the CA that clients' certificates must chain to; when
    /// set, a client without such a certificate is refused during the
    /// handshake (mutual TLS). Unset, any client may connect.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsOptions {
    /// Reads the files these options name and builds the server
    /// configuration, on ring.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file that is missing, unreadable, not PEM,
    /// holds no certificate or key, or whose key does not match the
    /// certificate.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = load_certs("certificate", &self.cert)?;
        let key = load_key(&self.key)?;
        let certified = certify(chain, key, (&self.cert, &self.key), &provider)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(&e))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let roots = Arc::new(load_roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }
}

/// TLS of a client of other components. Deserializes from a `[tls]`
/// table; when present, the client speaks `https://`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsOptions {
    /// PEM bundle of the CA the servers' certificates must chain to; the
    /// only trust anchors of the client.
    pub ca: PathBuf,
    /// PEM certificate chain the client presents to servers that require
    /// one; set together with `key`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
}

impl ClientTlsOptions {
    /// Reads the files these options name and builds the client
    /// configuration, on ring.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file at fault, or
    /// [`TlsError::Config`] when only one of `cert` and `key` is set.
    pub fn load(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = load_roots(&self.ca)?;
        let builder = client_builder_with(&provider, roots)?;
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs("certificate", cert)?;
                let certified = certify(chain, load_key(key)?, (cert, key), &provider)?;
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(TlsError::Config(
                    "client cert and key must be set together".into(),
                ));
            }
        };
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(config)
    }
}

/// A member's peer TLS material serves its HTTP API too: its certificate
/// and key, with clients required to chain to the cluster CA.
impl From<&TlsOptions> for ServerTlsOptions {
    fn from(peer: &TlsOptions) -> ServerTlsOptions {
        ServerTlsOptions {
            cert: peer.cert.clone(),
            key: peer.key.clone(),
            client_ca: Some(peer.ca.clone()),
        }
    }
}

/// A member's peer TLS material makes a client of the other members: it
/// trusts the cluster CA and presents its own certificate.
impl From<&TlsOptions> for ClientTlsOptions {
    fn from(peer: &TlsOptions) -> ClientTlsOptions {
        ClientTlsOptions {
            ca: peer.ca.clone(),
            cert: Some(peer.cert.clone()),
            key: Some(peer.key.clone()),
        }
    }
}

fn client_builder_with(
    provider: &Arc<CryptoProvider>,
    roots: RootCertStore,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(&e))?
        .with_root_certificates(roots))
}

fn config_error(e: &rustls::Error) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Returns the URL scheme of a client with `tls`: `https` when set.
pub fn scheme(tls: Option<&ClientTlsOptions>) -> &'static str {
    match tls {
        Some(_) => "https",
        None => "http",
    }
}

/// Starts the builder of an HTTP client of other components: TLS per
/// `tls` on ring (without `tls`, a configuration that trusts nothing, so
/// the client is good for `http://` only), no environment proxies, and the
/// kraken-rs user agent. Callers add their timeouts.
///
/// # Errors
///
/// A [`TlsError`] when the files `tls` names cannot be loaded.
pub fn client_builder(tls: Option<&ClientTlsOptions>) -> Result<reqwest::ClientBuilder, TlsError> {
    let config = match tls {
        Some(tls) => tls.load()?,
        None => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            client_builder_with(&provider, RootCertStore::empty())?.with_no_client_auth()
        }
    };
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .no_proxy()
        .user_agent(concat!("kraken-rs/", env!("CARGO_PKG_VERSION"))))
}

/// What a TLS listener hands the server: a handshaken connection and its
/// peer address.
type Accepted = (TlsStream<TcpStream>, SocketAddr);

/// A listener of a component's HTTP API, plain or TLS; serve it with
/// `axum::serve`.
///
/// In TLS mode a task accepts connections and runs each handshake on its
/// own, with a timeout, so a slow or hostile client holds up nobody else;
/// failed handshakes are logged at `debug` and dropped. A client that
/// sends plain HTTP gets a `400` saying the port speaks TLS.
#[derive(Debug)]
pub struct HttpListener {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Plain(TcpListener),
    Tls {
        addr: SocketAddr,
        accepted: mpsc::Receiver<Accepted>,
    },
}

impl HttpListener {
    /// Serves TLS with `tls` on `tcp` when given, plain HTTP otherwise.
    /// With TLS, starts the accept task, so it must run in a tokio runtime.
    ///
    /// # Errors
    ///
    /// When `tcp` has no local address.
    pub fn new(tcp: TcpListener, tls: Option<Arc<ServerConfig>>) -> io::Result<HttpListener> {
        let Some(tls) = tls else {
            return Ok(HttpListener::from(tcp));
        };
        let addr = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(tls), tx));
        Ok(HttpListener {
            inner: Inner::Tls { addr, accepted },
        })
    }

    /// Whether this listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls { .. })
    }
}

impl From<TcpListener> for HttpListener {
    fn from(tcp: TcpListener) -> HttpListener {
        HttpListener {
            inner: Inner::Plain(tcp),
        }
    }
}

impl Listener for HttpListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match &mut self.inner {
            Inner::Plain(tcp) => {
                let (stream, addr) = Listener::accept(tcp).await;
                (Either::Left(stream), addr)
            }
            // The accept task only ends once this receiver is gone.
            Inner::Tls { accepted, .. } => match accepted.recv().await {
                Some((stream, addr)) => (Either::Right(stream), addr),
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.inner {
            Inner::Plain(tcp) => tcp.local_addr(),
            Inner::Tls { addr, .. } => Ok(*addr),
        }
    }
}

/// Accepts connections until the listener is dropped, handing each to a
/// handshake task of its own.
async fn accept_loop(tcp: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<Accepted>) {
    loop {
        let (stream, peer) = tokio::select! {
            () = tx.closed() => return,
            accepted = tcp.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, mostly: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream)).await {
                Ok(Ok(Some(stream))) => {
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Ok(None)) => tracing::debug!(%peer, "refused a plain-http client"),
                Ok(Err(error)) => tracing::debug!(%peer, %error, "tls handshake failed"),
                Err(_) => tracing::debug!(%peer, "tls handshake timed out"),
            }
        });
    }
}

/// Runs the server side of the handshake; a client that opens with
/// anything but a TLS record is answered in plain HTTP and dropped
/// (`None`).
async fn handshake(
    acceptor: &TlsAcceptor,
    mut stream: TcpStream,
) -> io::Result<Option<TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{PLAINTEXT_REFUSAL}",
            PLAINTEXT_REFUSAL.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        return Ok(None);
    }
    acceptor.accept(stream).await.map(Some)
}
