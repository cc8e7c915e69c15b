//! `RedisPeerStore` against a real `redis-server` on loopback: the peer
//! store behaviour suite, trackers sharing one Redis, and a dead Redis.
//!
//! Each test starts its own throwaway server (no persistence, random free
//! port) and kills it through its own child handle when done. Without
//! `redis-server` on `PATH` the tests skip, except under CI, where they
//! fail.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kraken_core::testkit::peer_store_suite;
use kraken_core::{
    Digest, Error, InfoHash, MetaInfo, Namespace, PeerId, PeerInfo, PeerStore, Result,
};
use kraken_p2p::tracker::{
    AnnounceRequest, OriginDirectory, RedisPeerStore, RedisPeerStoreConfig, Tracker, TrackerConfig,
    TrackerService,
};

/// A `redis-server` child process, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server, or returns `None` (after saying why) when
    /// `redis-server` is not installed and this is not CI.
    fn start() -> Option<RedisServer> {
        for _ in 0..3 {
            match Self::try_start() {
                Ok(Some(server)) => return Some(server),
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if std::env::var_os("CI").is_some() {
                        panic!(
                            "redis-server is not on PATH; CI must install the redis-server package"
                        );
                    }
                    eprintln!(
                        "skipping: redis-server is not on PATH (apt-get install redis-server)"
                    );
                    return None;
                }
                Err(e) => panic!("starting redis-server: {e}"),
            }
        }
        panic!("redis-server did not come up on three free ports");
    }

    /// Starts a server on a port that was free a moment ago; `Ok(None)`
    /// when it did not answer, as when another process took the port.
    fn try_start() -> std::io::Result<Option<RedisServer>> {
        let port = free_port();
        let dir = tempfile::tempdir()?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.child.try_wait()?.is_some() {
                return Ok(None);
            }
            if ping(port) {
                return Ok(Some(server));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server now, as when Redis crashes.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Checks that a Redis answers `PING` on `port`.
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    if tcp.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(tcp).read_line(&mut line).is_ok() && line.starts_with("+PONG")
}

/// Settings for a test store: a key prefix of its own so stores built by
/// one test never see another's keys.
fn config(server: &RedisServer) -> RedisPeerStoreConfig {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    RedisPeerStoreConfig {
        url: server.url(),
        key_prefix: format!("test{}:", NEXT.fetch_add(1, Ordering::Relaxed)),
        operation_timeout: Duration::from_secs(2),
        ..RedisPeerStoreConfig::default()
    }
}

async fn connect(config: &RedisPeerStoreConfig, ttl: Duration) -> RedisPeerStore {
    RedisPeerStore::connect(config, ttl)
        .await
        .expect("connect to the test redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_peer_store_suite() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    peer_store_suite(|ttl| {
        let config = config(&server);
        async move { Arc::new(connect(&config, ttl).await) as Arc<dyn PeerStore> }
    })
    .await;
}

/// Origins nobody has: the shared-state test only exercises the peer store.
#[derive(Debug)]
struct NoOrigins;

#[async_trait]
impl OriginDirectory for NoOrigins {
    async fn origins(&self, _: &Namespace, _: &Digest) -> Result<Vec<PeerInfo>> {
        Ok(Vec::new())
    }

    async fn metainfo(&self, _: &Namespace, digest: &Digest) -> Result<MetaInfo> {
        Err(Error::NotFound(*digest))
    }
}

fn tracker(store: RedisPeerStore) -> TrackerService {
    TrackerService::new(
        TrackerConfig::default(),
        Arc::new(store),
        Arc::new(NoOrigins),
    )
}

fn announce_of(info_hash: InfoHash, peer: PeerInfo) -> AnnounceRequest {
    AnnounceRequest {
        info_hash,
        digest: Digest::sha256_of(info_hash.as_bytes()),
        namespace: Namespace::new("library/ubuntu").unwrap(),
        peer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trackers_sharing_one_redis_see_the_same_peers() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let shared = config(&server);
    let ttl = Duration::from_secs(60);
    let a = tracker(connect(&shared, ttl).await);
    let b = tracker(connect(&shared, ttl).await);
    let hash = InfoHash::from_bytes(rand::random());
    let seeder = PeerInfo {
        complete: true,
        ..PeerInfo::new(PeerId::random(), "10.0.0.1:16001".parse().unwrap())
    };
    a.announce(&announce_of(hash, seeder.clone()))
        .await
        .unwrap();

    let leecher = PeerInfo::new(PeerId::random(), "10.0.0.2:16001".parse().unwrap());
    let answer = b
        .announce(&announce_of(hash, leecher.clone()))
        .await
        .unwrap();
    assert_eq!(
        answer.peers,
        std::slice::from_ref(&seeder),
        "b hands out a's seeder"
    );
    let answer = a.announce(&announce_of(hash, leecher)).await.unwrap();
    assert_eq!(
        answer.peers,
        [seeder],
        "a's answer is unchanged by b's announce"
    );

    // A cluster with another prefix shares the server but not the peers.
    let other = connect(&config(&server), ttl).await;
    assert!(other.sample(&hash, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_peers_and_flags_survive_the_round_trip() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let store = connect(&config(&server), Duration::from_secs(60)).await;
    let hash = InfoHash::from_bytes(rand::random());
    let peers: Vec<PeerInfo> = [
        ("[::1]:1", false, false),
        ("[2001:db8::ffff:1.2.3.4]:65535", true, true),
        ("[fe80::1:2:3:4]:16001", false, true),
        ("192.0.2.7:16001", true, false),
    ]
    .into_iter()
    .map(|(addr, origin, complete)| PeerInfo {
        origin,
        complete,
        ..PeerInfo::new(PeerId::random(), addr.parse().unwrap())
    })
    .collect();
    for p in &peers {
        store.announce(&hash, p).await.unwrap();
    }
    let mut got = store.sample(&hash, 10).await.unwrap();
    got.sort_by_key(|p| p.peer_id);
    let mut want = peers;
    want.sort_by_key(|p| p.peer_id);
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_is_a_clear_error_not_a_hang() {
    let dead = RedisPeerStoreConfig {
        url: format!("redis://127.0.0.1:{}", free_port()),
        connect_timeout: Duration::from_millis(500),
        operation_timeout: Duration::from_secs(1),
        ..RedisPeerStoreConfig::default()
    };
    let started = Instant::now();
    let err = RedisPeerStore::connect(&dead, Duration::from_secs(60))
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("redis"), "{err}");

    // A "Redis" that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("redis://{}", silent.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept() {
            held.push(tcp);
        }
    });
    let mute = RedisPeerStoreConfig {
        url: silent_url,
        ..dead
    };
    let started = Instant::now();
    match RedisPeerStore::connect(&mute, Duration::from_secs(60)).await {
        Err(err) => assert!(err.to_string().contains("redis"), "{err}"),
        Ok(store) => {
            let hash = InfoHash::from_bytes(rand::random());
            let err = store.sample(&hash, 1).await.expect_err("nothing answers");
            assert!(matches!(err, Error::Timeout(_)), "{err}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let config = RedisPeerStoreConfig {
        operation_timeout: Duration::from_secs(1),
        ..config(&server)
    };
    let store = connect(&config, Duration::from_secs(60)).await;
    let hash = InfoHash::from_bytes(rand::random());
    let peer = PeerInfo::new(PeerId::random(), "127.0.0.1:16001".parse().unwrap());
    store.announce(&hash, &peer).await.unwrap();

    server.kill();
    for _ in 0..2 {
        let started = Instant::now();
        let err = store.sample(&hash, 5).await.expect_err("redis is gone");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.to_string().contains("redis"), "{err}");
        let err = store
            .announce(&hash, &peer)
            .await
            .expect_err("redis is gone");
        assert!(err.to_string().contains("redis"), "{err}");
    }
}
