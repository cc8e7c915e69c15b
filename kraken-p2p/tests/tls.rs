//! Mutual TLS on peer connections: a TLS swarm delivers exact bytes, and a
//! host without a certificate from the cluster CA, or without TLS at all,
//! gets nothing from it and gives nothing to it.
//!
//! Certificates are made at test time with rcgen: a cluster CA, a rogue CA,
//! and per-peer certificates for `127.0.0.1` or a fixed cluster name.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Peer, Swarm, blob, download_all, fast_config, ns, read_back};
use kraken_core::{BlobStore, MetaInfo, PeerInfo, PieceIndex, Scheduler};
use kraken_p2p::scheduler::{EngineOptions, SchedulerConfig};
use kraken_p2p::tls::{PeerTls, TlsError, TlsOptions};
use kraken_p2p::wire::{Frame, FrameReader, FrameWriter, read_handshake, write_handshake};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(60);

/// The name every peer certificate carries in fixed-name mode.
const CLUSTER_NAME: &str = "kraken-peer";

/// A certificate authority that writes its certificate and the peer
/// certificates it issues as PEM files.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
        Ca { issuer, dir }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues a peer certificate valid for `names` (IP addresses or DNS
    /// names) in both the server and the client role, and returns the
    /// paths of its certificate and key.
    fn issue(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.join(format!("{file}.crt"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Returns options for a peer whose certificate this CA issued for
    /// `127.0.0.1`, trusting this CA.
    fn peer_options(&self, file: &str) -> TlsOptions {
        let (cert, key) = self.issue(file, &["127.0.0.1"]);
        TlsOptions {
            ca: self.ca_path(),
            cert,
            key,
            server_name: None,
        }
    }
}

fn engine_options(config: SchedulerConfig, origin: bool, tls: Option<TlsOptions>) -> EngineOptions {
    EngineOptions {
        origin,
        scheduler: config,
        tls,
        ..EngineOptions::default()
    }
}

/// Settings for a peer expected to fail: it gives up after a few seconds
/// without a piece.
fn doomed_config() -> SchedulerConfig {
    SchedulerConfig {
        download_idle_timeout: Duration::from_secs(3),
        ..fast_config()
    }
}

async fn assert_exact(leechers: &[Peer], meta: &MetaInfo, data: &Bytes) {
    for (leecher, result) in leechers
        .iter()
        .zip(download_all(leechers, meta, LIMIT).await)
    {
        result.unwrap();
        assert_eq!(read_back(&leecher.store, meta.digest()).await, &data[..]);
        assert!(leecher.engine.stats().bytes_in > 0);
    }
}

/// Asserts that `peer` could not fetch the blob and received nothing.
async fn assert_refused(peer: &Peer, meta: &MetaInfo) {
    let result = tokio::time::timeout(LIMIT, peer.engine.download(&ns(), meta.digest()))
        .await
        .expect("the refused download gave up in time");
    assert!(result.is_err(), "a refused peer downloaded the blob");
    assert_eq!(peer.engine.stats().bytes_in, 0);
    let stat = peer.store.stat(meta.digest()).await;
    assert!(!matches!(stat, Ok(s) if s.state == kraken_core::BlobState::Cached));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_swarm_delivers_exact_bytes() {
    let swarm = Swarm::new();
    let ca = Ca::new(swarm.dir.path(), "cluster");
    let origin_tls = Some(ca.peer_options("origin"));
    let origin = swarm
        .peer_with_options(engine_options(fast_config(), true, origin_tls))
        .await;
    let data = blob(3 << 20, 11);
    let meta = swarm.publish(&origin, &data, 128 * 1024).await;
    let mut leechers = Vec::new();
    for i in 0..3 {
        let tls = Some(ca.peer_options(&format!("leecher{i}")));
        let options = engine_options(fast_config(), false, tls);
        leechers.push(swarm.peer_with_options(options).await);
    }

    assert_exact(&leechers, &meta, &data).await;
    assert!(origin.engine.stats().bytes_out > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_cluster_name_stands_in_for_the_address() {
    let swarm = Swarm::new();
    let ca = Ca::new(swarm.dir.path(), "cluster");
    let named = |file: &str| {
        let (cert, key) = ca.issue(file, &[CLUSTER_NAME]);
        TlsOptions {
            ca: ca.ca_path(),
            cert,
            key,
            server_name: Some(CLUSTER_NAME.to_owned()),
        }
    };
    let origin_tls = Some(named("origin"));
    let origin = swarm
        .peer_with_options(engine_options(fast_config(), true, origin_tls))
        .await;
    let data = blob(1 << 20, 12);
    let meta = swarm.publish(&origin, &data, 64 * 1024).await;
    let leecher = swarm
        .peer_with_options(engine_options(fast_config(), false, Some(named("leecher"))))
        .await;

    assert_exact(&[leecher], &meta, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_address_is_refused() {
    let swarm = Swarm::new();
    let ca = Ca::new(swarm.dir.path(), "cluster");
    // A cluster certificate, but for an address the origin does not have:
    // a member answering for another member.
    let (cert, key) = ca.issue("origin", &["10.9.9.9", CLUSTER_NAME]);
    let origin_tls = TlsOptions {
        ca: ca.ca_path(),
        cert,
        key,
        server_name: None,
    };
    let origin = swarm
        .peer_with_options(engine_options(fast_config(), true, Some(origin_tls)))
        .await;
    let meta = swarm
        .publish(&origin, &blob(256 * 1024, 13), 64 * 1024)
        .await;
    let tls = Some(ca.peer_options("leecher"));
    let leecher = swarm
        .peer_with_options(engine_options(doomed_config(), false, tls))
        .await;

    assert_refused(&leecher, &meta).await;
    assert_eq!(origin.engine.stats().bytes_out, 0);
}

#[tokio::test]
async fn an_ipv6_address_is_verified_like_an_ipv4_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let (cert, key) = ca.issue("v6", &["fd00::7"]);
    let server = TlsOptions {
        ca: ca.ca_path(),
        cert,
        key,
        server_name: None,
    };
    let server = PeerTls::load(&server).unwrap();
    let client = PeerTls::load(&ca.peer_options("client")).unwrap();

    // In-memory pipes stand in for sockets: only the dialled address
    // matters to verification, and nothing binds an IPv6 address.
    let cases = [
        ("[fd00::7]:7000", true),
        ("[fd00::8]:7000", false),
        ("127.0.0.1:7000", false),
    ];
    for (dialled, accepted) in cases {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let (dial, accept) = tokio::join!(
            client.connect(dialled.parse().unwrap(), near),
            server.accept(far)
        );
        assert_eq!(
            dial.is_ok() && accept.is_ok(),
            accepted,
            "dialling {dialled}"
        );
    }
}

/// A TLS listener announced to the tracker as a complete seeder, holding a
/// certificate from another CA. Counts the connections it gets and the TLS
/// handshakes that succeed.
struct RogueSeeder {
    connections: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
}

async fn spawn_rogue_seeder(swarm: &Swarm, meta: &MetaInfo, tls: PeerTls) -> RogueSeeder {
    use kraken_p2p::tracker::{AnnounceRequest, Tracker};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = PeerInfo {
        complete: true,
        ..PeerInfo::new(
            kraken_core::PeerId::random(),
            listener.local_addr().unwrap(),
        )
    };
    let connections = Arc::new(AtomicUsize::new(0));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (conns, shakes) = (connections.clone(), handshakes.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let (tls, shakes) = (tls.clone(), shakes.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = tls.accept(tcp).await else {
                    return;
                };
                // With TLS 1.3 the client's verdict on our certificate comes
                // after our side is done; only a handshake read proves the
                // session was accepted.
                if read_handshake(&mut stream).await.is_ok() {
                    shakes.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    let request = AnnounceRequest {
        info_hash: meta.info_hash(),
        digest: *meta.digest(),
        namespace: ns(),
        peer,
    };
    swarm.tracker.announce(&request).await.unwrap();
    RogueSeeder {
        connections,
        handshakes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_from_another_ca_is_refused_as_dialler_and_acceptor() {
    let swarm = Swarm::new();
    let cluster = Ca::new(swarm.dir.path(), "cluster");
    let rogue_ca = Ca::new(swarm.dir.path(), "rogue");
    let origin_tls = Some(cluster.peer_options("origin"));
    let origin = swarm
        .peer_with_options(engine_options(fast_config(), true, origin_tls))
        .await;
    let data = blob(2 << 20, 14);
    let meta = swarm.publish(&origin, &data, 128 * 1024).await;

    // The rogue trusts the cluster CA, so every refusal below is the
    // honest side's doing.
    let rogue_options = |file: &str| {
        let (cert, key) = rogue_ca.issue(file, &["127.0.0.1"]);
        TlsOptions {
            ca: cluster.ca_path(),
            cert,
            key,
            server_name: None,
        }
    };
    let seeder = PeerTls::load(&rogue_options("seeder")).unwrap();
    let seeder = spawn_rogue_seeder(&swarm, &meta, seeder).await;
    let rogue_tls = Some(rogue_options("leecher"));
    let rogue = swarm
        .peer_with_options(engine_options(doomed_config(), false, rogue_tls))
        .await;
    let mut honest = Vec::new();
    for i in 0..2 {
        let tls = Some(cluster.peer_options(&format!("leecher{i}")));
        let options = engine_options(fast_config(), false, tls);
        honest.push(swarm.peer_with_options(options).await);
    }

    tokio::join!(
        assert_exact(&honest, &meta, &data),
        assert_refused(&rogue, &meta)
    );
    assert_eq!(rogue.engine.stats().bytes_out, 0);
    assert!(
        seeder.connections.load(Ordering::SeqCst) > 0,
        "honest peers never dialled the rogue seeder"
    );
    assert_eq!(seeder.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_tls_peers_cannot_talk() {
    let swarm = Swarm::new();
    let ca = Ca::new(swarm.dir.path(), "cluster");
    let tls_origin = swarm
        .peer_with_options(engine_options(
            fast_config(),
            true,
            Some(ca.peer_options("o")),
        ))
        .await;
    let data = blob(512 * 1024, 15);
    let meta = swarm.publish(&tls_origin, &data, 64 * 1024).await;

    // A plaintext peer is refused by the TLS origin.
    let plain = swarm.peer(doomed_config(), false).await;
    assert_refused(&plain, &meta).await;

    // A raw plaintext handshake gets no handshake back.
    let mut tcp = TcpStream::connect(tls_origin.engine.local_peer().addr)
        .await
        .unwrap();
    let hello = kraken_p2p::wire::Handshake {
        info_hash: meta.info_hash(),
        digest: *meta.digest(),
        peer_id: kraken_core::PeerId::random(),
        namespace: ns(),
        bitfield: kraken_core::Bitfield::new(meta.piece_count()),
    };
    let _ = write_handshake(&mut tcp, &hello).await;
    let reply = tokio::time::timeout(LIMIT, read_handshake(&mut tcp))
        .await
        .expect("the origin hung up in time");
    assert!(
        reply.is_err(),
        "a tls engine answered a plaintext handshake"
    );

    // A TLS peer is refused by a plaintext origin.
    let plain_swarm = Swarm::new();
    let plain_origin = plain_swarm.peer(fast_config(), true).await;
    let plain_meta = plain_swarm.publish(&plain_origin, &data, 64 * 1024).await;
    let tls_leecher = plain_swarm
        .peer_with_options(engine_options(
            doomed_config(),
            false,
            Some(ca.peer_options("l")),
        ))
        .await;
    assert_refused(&tls_leecher, &plain_meta).await;
    assert_eq!(plain_origin.engine.stats().bytes_out, 0);

    // Neither engine was harmed: a proper TLS peer still gets the blob.
    let tls = Some(ca.peer_options("l2"));
    let good = swarm
        .peer_with_options(engine_options(fast_config(), false, tls))
        .await;
    assert_exact(&[good], &meta, &data).await;
}

/// Starts an engine with `tls` and returns the error it fails with.
async fn start_error(dir: &Path, tls: TlsOptions) -> TlsError {
    let store = kraken_core::disk::DiskStore::open(kraken_core::disk::DiskStoreOptions::new(
        dir.join("store"),
    ))
    .await
    .unwrap();
    let swarm = Swarm::new();
    let options = engine_options(fast_config(), false, Some(tls));
    let err = kraken_p2p::scheduler::Engine::start(options, Arc::new(store), swarm.tracker)
        .await
        .expect_err("engine started with bad tls material");
    let kraken_core::Error::Io(io) = err else {
        panic!("expected an i/o error, got {err}");
    };
    *io.into_inner()
        .expect("the error carries its cause")
        .downcast::<TlsError>()
        .expect("the cause is a tls error")
}

#[tokio::test]
async fn bad_tls_material_stops_the_engine_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let good = ca.peer_options("good");
    let other = ca.peer_options("other");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let truncated = dir.path().join("truncated.pem");
    let pem = std::fs::read_to_string(&good.cert).unwrap();
    std::fs::write(&truncated, &pem[..pem.len() / 2]).unwrap();
    let missing = dir.path().join("missing.pem");
    let with = |f: &dyn Fn(&mut TlsOptions)| {
        let mut options = good.clone();
        f(&mut options);
        options
    };

    let err = start_error(dir.path(), with(&|o| o.cert = missing.clone())).await;
    assert!(
        matches!(&err, TlsError::Read { path, .. } if *path == missing),
        "{err}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let err = start_error(dir.path(), with(&|o| o.ca = garbage.clone())).await;
    assert!(
        matches!(&err, TlsError::NoCertificate { what: "ca", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    let err = start_error(dir.path(), with(&|o| o.cert = truncated.clone())).await;
    assert!(matches!(&err, TlsError::Pem { .. }), "{err}");
    assert!(err.to_string().contains("truncated.pem"), "{err}");

    let err = start_error(dir.path(), with(&|o| o.key = garbage.clone())).await;
    assert!(matches!(&err, TlsError::NoKey { .. }), "{err}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    let err = start_error(dir.path(), with(&|o| o.key = other.key.clone())).await;
    assert!(matches!(&err, TlsError::KeyMismatch { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("other.key") && message.contains("good.crt"),
        "{message}"
    );

    let err = start_error(
        dir.path(),
        with(&|o| o.server_name = Some("no such!".into())),
    )
    .await;
    assert!(matches!(&err, TlsError::ServerName(_)), "{err}");

    PeerTls::load(&good).expect("the good material loads");
}

/// Moves `total` bytes of `piece`-sized piece frames over one connection,
/// plain or TLS, and returns MiB/s.
async fn frame_throughput(tls: Option<(PeerTls, PeerTls)>, piece: usize, total: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let data = blob(piece, 16);
    let count = total / piece;
    let server_tls = tls.as_ref().map(|(s, _)| s.clone());
    let sender = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let io: Box<dyn PeerStream> = match server_tls {
            Some(tls) => Box::new(tls.accept(tcp).await.unwrap()),
            None => Box::new(tcp),
        };
        let mut writer = FrameWriter::new(io);
        for i in 0..count {
            let frame = Frame::Piece {
                index: PieceIndex(i as u32),
                data: data.clone(),
            };
            writer.send(&frame).await.unwrap();
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let io: Box<dyn PeerStream> = match tls {
        Some((_, client)) => Box::new(client.connect(addr, tcp).await.unwrap()),
        None => Box::new(tcp),
    };
    let started = Instant::now();
    let mut reader = FrameReader::new(io, piece as u32);
    let mut received = 0;
    for _ in 0..count {
        match reader.next().await.unwrap() {
            Some(Frame::Piece { data, .. }) => received += data.len(),
            other => panic!("expected a piece, got {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    sender.await.unwrap();
    assert_eq!(received, count * piece);
    received as f64 / (1 << 20) as f64 / elapsed.as_secs_f64()
}

trait PeerStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> PeerStream for T {}

/// Downloads a `total`-byte blob from an origin to one leecher, plain or
/// TLS, and returns MiB/s.
async fn engine_throughput(ca: Option<&Ca>, total: usize) -> f64 {
    let swarm = Swarm::new();
    let tls = |file: &str| ca.map(|ca| ca.peer_options(file));
    let origin = swarm
        .peer_with_options(engine_options(
            SchedulerConfig::default(),
            true,
            tls("origin"),
        ))
        .await;
    let data = blob(total, 17);
    let meta = swarm.publish(&origin, &data, 4 << 20).await;
    drop(data);
    let leecher = swarm
        .peer_with_options(engine_options(
            SchedulerConfig::default(),
            false,
            tls("leecher"),
        ))
        .await;
    let started = Instant::now();
    leecher.engine.download(&ns(), meta.digest()).await.unwrap();
    total as f64 / (1 << 20) as f64 / started.elapsed().as_secs_f64()
}

/// Prints the cost of TLS on loopback: one connection moving 256 MiB of
/// 4 MiB piece frames, then a whole 256 MiB download through the engine
/// (disk and piece hashing included). Run it optimized:
///
/// `cargo test --release -p kraken-p2p --test tls -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run in release with --nocapture"]
async fn tls_throughput_against_plaintext() {
    const PIECE: usize = 4 << 20;
    const TOTAL: usize = 256 << 20;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "cluster");
    let server = PeerTls::load(&ca.peer_options("server")).unwrap();
    let client = PeerTls::load(&ca.peer_options("client")).unwrap();

    for round in 1..=2 {
        let plain = frame_throughput(None, PIECE, TOTAL).await;
        let tls = frame_throughput(Some((server.clone(), client.clone())), PIECE, TOTAL).await;
        println!(
            "round {round}: one connection, 256 MiB of 4 MiB pieces: plaintext {plain:.0} MiB/s, \
             tls {tls:.0} MiB/s ({:.0} %)",
            100.0 * tls / plain
        );
    }
    let plain = engine_throughput(None, TOTAL).await;
    let tls = engine_throughput(Some(&ca), TOTAL).await;
    println!(
        "engine, origin to one leecher, 256 MiB blob: plaintext {plain:.0} MiB/s, \
         tls {tls:.0} MiB/s ({:.0} %)",
        100.0 * tls / plain
    );
}
