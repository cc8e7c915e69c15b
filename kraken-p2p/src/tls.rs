//! Mutual TLS between cluster members, so that only hosts holding a
//! certificate from the cluster's CA can fetch or serve pieces, and nobody
//! on the path can read or alter them.
//!
//! Piece integrity does not depend on TLS: every piece is checked against
//! its SHA-256 in the metainfo whatever the transport. What TLS adds is
//! confidentiality and membership: a host outside the cluster can neither
//! download blobs from its peers nor feed them pieces to waste their time.
//!
//! # Who is verified, and against what
//!
//! Both directions authenticate, with TLS 1.3 only (both ends are ours).
//! The accepting side requires a client certificate that chains to the
//! cluster CA; it checks membership, not identity, because an inbound
//! connection's source address says little behind NAT. The dialling side
//! checks that the server certificate chains to the CA and is valid for a
//! name chosen by [`TlsOptions::server_name`]:
//!
//! - **Unset (the default): the dialled IP address.** Each host's
//!   certificate carries its advertised address as an IP subject
//!   alternative name, IPv4 or IPv6. A leaked certificate then only lets
//!   its holder answer for the one address it was issued for, at the cost
//!   of issuing per-host certificates that know the address, and reissuing
//!   when it changes.
//! - **Set: one fixed name for the whole cluster** (say `kraken-peer`),
//!   which every peer certificate carries as a DNS name. Certificates can
//!   be issued without knowing addresses, which suits NAT, changing
//!   addresses and a single certificate shared by a node pool; in exchange
//!   any member can answer for any address. Since the tracker hands out
//!   addresses and pieces are verified by hash, membership is all most
//!   clusters need.
//!
//! Every peer dials and accepts, so each certificate must allow both the
//! server and the client role (`serverAuth` and `clientAuth` extended key
//! usages, or none at all).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, InconsistentKeys, RootCertStore, ServerConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector, client, server};

/// The ALPN protocol peers offer, so a TLS client of another service that
/// trusts the same CA is not mistaken for a peer, nor a peer for it.
const ALPN: &[u8] = b"kraken-p2p/1";

/// Where a host's TLS material lives: the cluster CA, and this host's
/// certificate and key. Deserializes from a `[tls]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM bundle of the cluster CA certificates that peers' certificates
    /// must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain of this host, its own certificate first.
    pub cert: PathBuf,
    /// PEM private key of this host's certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The name every peer's certificate carries, verified when dialling;
    /// when unset, the dialled IP address is verified instead. See the
    /// module docs for the trade-off.
    #[serde(default)]
    pub server_name: Option<String>,
}

/// Why TLS material could not be loaded. Each variant names the file at
/// fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// Which file it was: `ca`, `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why reading failed.
        source: io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("{what} {} is not valid PEM: {source}", path.display())]
    Pem {
        /// Which file it was.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the parser found wrong.
        source: pem::Error,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{what} {} holds no certificate", path.display())]
    NoCertificate {
        /// Which file it was: `ca` or `certificate`.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key block.
    #[error("private key {} holds no private key", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// A certificate or key was decoded but cannot be used.
    #[error("{what} {} is unusable: {source}", path.display())]
    Unusable {
        /// Which file it was.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What rustls found wrong.
        source: rustls::Error,
    },
    /// The private key does not belong to the certificate.
    #[error("private key {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The configured server name is not a valid DNS name or IP address.
    #[error("invalid tls server_name {0:?}")]
    ServerName(String),
    /// rustls refused the assembled configuration.
    #[error("cannot build tls config: {0}")]
    Config(String),
}

/// Loaded TLS material for peer connections: wraps TCP streams in mutually
/// authenticated TLS, as dialler or acceptor. Cloning is cheap.
#[derive(Clone)]
pub struct PeerTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl PeerTls {
    /// Reads the CA bundle, certificate chain and key that `options` name
    /// and builds the client and server configurations.
    ///
    /// A certificate that does not verify against the CA is logged as a
    /// warning rather than refused: the host starts, and its peers refuse
    /// it, which is what an operator sees in their logs too.
    ///
    /// # Errors
    ///
    /// A [`TlsError`] naming the file that is missing, unreadable, not PEM,
    /// holds no certificate or key, or whose key does not match the
    /// certificate; or a bad `server_name`.
    pub fn load(options: &TlsOptions) -> Result<PeerTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(load_roots(&options.ca)?);
        let chain = load_certs("certificate", &options.cert)?;
        let key = load_key(&options.key)?;
        let certified = certify(chain, key, (&options.cert, &options.key), &provider)?;
        let server_name = options.server_name.as_deref().map(parse_name).transpose()?;

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        check_own_certificate(&*client_verifier, &certified, &options.cert);
        let server = server_config(&provider, client_verifier, certified.clone())?;
        let client = client_config(&provider, roots, certified)?;
        Ok(PeerTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// Runs the dialler's side of the TLS handshake with the peer at `addr`
    /// over `io`, verifying its certificate.
    ///
    /// # Errors
    ///
    /// When the handshake fails: the peer speaks no TLS, presents a
    /// certificate that does not verify, or refuses ours. Note that with
    /// TLS 1.3 a peer refusing our certificate is only seen at the first
    /// read.
    pub async fn connect<S>(&self, addr: SocketAddr, io: S) -> io::Result<client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = verified_name(self.server_name.as_ref(), addr);
        self.connector.connect(name, io).await
    }

    /// Runs the acceptor's side of the TLS handshake over `io`, requiring a
    /// client certificate that chains to the cluster CA.
    ///
    /// # Errors
    ///
    /// When the handshake fails: the peer speaks no TLS or presents no
    /// valid certificate.
    pub async fn accept<S>(&self, io: S) -> io::Result<server::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io).await
    }

    /// Returns the server configuration, for other listeners of this host
    /// that admit only cluster members.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.acceptor.config().clone()
    }

    /// Returns the client configuration, for other clients of this host
    /// that talk to cluster members.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.connector.config().clone()
    }
}

/// Returns the name a dialled peer's certificate must be valid for: the
/// fixed cluster name when configured, else the address, with an
/// IPv4-mapped IPv6 address taken as the IPv4 address it carries.
fn verified_name(fixed: Option<&ServerName<'static>>, addr: SocketAddr) -> ServerName<'static> {
    match fixed {
        Some(name) => name.clone(),
        None => ServerName::IpAddress(addr.ip().to_canonical().into()),
    }
}

fn parse_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName(name.to_owned()))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what,
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("ca", path)? {
        roots.add(cert).map_err(|source| TlsError::Unusable {
            what: "ca",
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("private key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        source => TlsError::Pem {
            what: "private key",
            path: path.to_owned(),
            source,
        },
    })
}

/// Pairs the chain with its key, refusing a key that belongs to another
/// certificate: rustls would otherwise only fail at the first handshake.
pub(crate) fn certify(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    (cert_path, key_path): (&Path, &Path),
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch {
            cert: cert_path.to_owned(),
            key: key_path.to_owned(),
        },
        source => TlsError::Unusable {
            what: "private key",
            path: key_path.to_owned(),
            source,
        },
    })?;
    Ok(Arc::new(certified))
}

fn check_own_certificate(verifier: &dyn ClientCertVerifier, certified: &CertifiedKey, path: &Path) {
    let Some((end_entity, intermediates)) = certified.cert.split_first() else {
        return;
    };
    if let Err(e) = verifier.verify_client_cert(end_entity, intermediates, UnixTime::now()) {
        tracing::warn!(
            cert = %path.display(),
            error = %e,
            "own certificate does not verify against the cluster ca; peers will refuse this host"
        );
    }
}

fn server_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn ClientCertVerifier>,
    certified: Arc<CertifiedKey>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    certified: Arc<CertifiedKey>,
) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn ip(name: ServerName<'static>) -> std::net::IpAddr {
        match name {
            ServerName::IpAddress(ip) => std::net::IpAddr::from(ip),
            other => panic!("expected an ip address, got {other:?}"),
        }
    }

    #[test]
    fn verifies_the_dialled_address_of_either_family() {
        let v4 = SocketAddr::from((Ipv4Addr::new(10, 1, 2, 3), 7000));
        assert_eq!(ip(verified_name(None, v4)), v4.ip());

        let v6 = SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7), 7000));
        assert_eq!(ip(verified_name(None, v6)), v6.ip());
    }

    #[test]
    fn an_ipv4_mapped_address_verifies_as_ipv4() {
        let mapped = SocketAddr::from((Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped(), 7000));
        assert_eq!(ip(verified_name(None, mapped)), Ipv4Addr::new(10, 1, 2, 3));
    }

    #[test]
    fn a_fixed_name_wins_over_the_address() {
        let name = ServerName::try_from("kraken-peer").unwrap();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 7000));
        assert_eq!(verified_name(Some(&name), addr), name);
    }
}
