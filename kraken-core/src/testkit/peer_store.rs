//! The behaviour suite every `PeerStore` implementation runs.
//!
//! Expiry is checked with real sleeps against a short time to live, since
//! external stores such as Redis expire by the wall clock and would ignore
//! paused tokio time. Sleeps only ever overshoot, so a check that needs an
//! entry still alive measures how long it really waited and retries when
//! the machine was too slow to tell.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ok;
use crate::{InfoHash, PeerId, PeerInfo, PeerStore};

/// The time to live of the store the expiry checks build.
const SHORT_TTL: Duration = Duration::from_millis(400);

/// The time to live of the store every other check builds: long enough
/// that nothing expires while they run.
const LONG_TTL: Duration = Duration::from_secs(300);

/// Checks stores built by `make` against the contract of [`PeerStore`].
///
/// `make` receives the time to live to build the store with; it is called
/// once with a long one and once with a short one (400 ms).
///
/// - an announced peer is sampled back with its address and flags; an
///   unknown torrent samples empty;
/// - `n` caps the sample, and peers in a sample are distinct;
/// - re-announcing a peer id replaces its address and flags rather than
///   adding a second entry;
/// - torrents are isolated from each other; IPv6 addresses round-trip;
/// - entries expire after the time to live, and re-announcing restarts it;
/// - samples are random: with 50 peers and `n = 5`, repeated samples
///   differ and reach most peers; with `n` above 50, every peer comes back,
///   in a different order each time.
///
/// # Panics
///
/// On the first broken contract, with a message naming the check.
pub async fn peer_store_suite<F, Fut>(make: F)
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = Arc<dyn PeerStore>>,
{
    let store = make(LONG_TTL).await;
    let store = store.as_ref();
    announce_then_sample(store).await;
    caps_and_distinct(store).await;
    reannounce_replaces(store).await;
    isolation(store).await;
    ipv6(store).await;
    randomness(store).await;
    expiry(make(SHORT_TTL).await.as_ref()).await;
}

fn torrent() -> InfoHash {
    InfoHash::from_bytes(rand::random())
}

/// A peer with a fresh id on a loopback port.
fn peer(port: u16) -> PeerInfo {
    PeerInfo::new(PeerId::random(), SocketAddr::from(([127, 0, 0, 1], port)))
}

async fn announce(check: &str, store: &dyn PeerStore, hash: &InfoHash, peer: &PeerInfo) {
    ok(
        &format!("{check}: announce"),
        store.announce(hash, peer).await,
    );
}

async fn sample(check: &str, store: &dyn PeerStore, hash: &InfoHash, n: usize) -> Vec<PeerInfo> {
    let peers = ok(&format!("{check}: sample"), store.sample(hash, n).await);
    assert!(
        peers.len() <= n,
        "{check}: sample of {n} returned {} peers",
        peers.len()
    );
    let ids: HashSet<_> = peers.iter().map(|p| p.peer_id).collect();
    assert_eq!(
        ids.len(),
        peers.len(),
        "{check}: a sample repeats a peer id"
    );
    peers
}

async fn announce_then_sample(store: &dyn PeerStore) {
    let check = "peer_store_suite/announce then sample";
    let hash = torrent();
    let p = PeerInfo {
        complete: true,
        ..peer(15001)
    };
    announce(check, store, &hash, &p).await;
    assert_eq!(sample(check, store, &hash, 10).await, [p], "{check}");

    let check = "peer_store_suite/unknown torrent";
    assert!(
        sample(check, store, &torrent(), 10).await.is_empty(),
        "{check}: not empty"
    );
}

async fn caps_and_distinct(store: &dyn PeerStore) {
    let check = "peer_store_suite/n caps the sample";
    let hash = torrent();
    let peers: Vec<_> = (0..10).map(|i| peer(16000 + i)).collect();
    for p in &peers {
        announce(check, store, &hash, p).await;
    }
    assert_eq!(
        sample(check, store, &hash, 5).await.len(),
        5,
        "{check}: n = 5 of 10"
    );
    assert!(
        sample(check, store, &hash, 0).await.is_empty(),
        "{check}: n = 0"
    );
    let all: BTreeSet<_> = sample(check, store, &hash, 100)
        .await
        .iter()
        .map(key)
        .collect();
    let expected: BTreeSet<_> = peers.iter().map(key).collect();
    assert_eq!(
        all, expected,
        "{check}: n above the count returns every peer"
    );
}

/// Orders peers for set comparisons; `PeerInfo` is not `Ord`.
fn key(p: &PeerInfo) -> (PeerId, String, bool, bool) {
    (p.peer_id, p.addr.to_string(), p.origin, p.complete)
}

async fn reannounce_replaces(store: &dyn PeerStore) {
    let check = "peer_store_suite/re-announce replaces";
    let hash = torrent();
    let first = peer(17001);
    announce(check, store, &hash, &first).await;
    let moved = PeerInfo {
        addr: SocketAddr::from(([10, 1, 2, 3], 17002)),
        complete: true,
        origin: true,
        ..first.clone()
    };
    announce(check, store, &hash, &moved).await;
    assert_eq!(
        sample(check, store, &hash, 10).await,
        std::slice::from_ref(&moved),
        "{check}: latest wins"
    );
    let back = PeerInfo {
        complete: false,
        origin: false,
        ..moved
    };
    announce(check, store, &hash, &back).await;
    assert_eq!(
        sample(check, store, &hash, 10).await,
        [back],
        "{check}: flags can clear"
    );
}

async fn isolation(store: &dyn PeerStore) {
    let check = "peer_store_suite/torrents isolated";
    let (a, b) = (torrent(), torrent());
    let (pa, pb) = (peer(18001), peer(18002));
    announce(check, store, &a, &pa).await;
    announce(check, store, &b, &pb).await;
    assert_eq!(
        sample(check, store, &a, 10).await,
        std::slice::from_ref(&pa),
        "{check}: torrent a"
    );
    assert_eq!(
        sample(check, store, &b, 10).await,
        [pb],
        "{check}: torrent b"
    );

    // One peer in two torrents is two independent entries.
    let both = PeerInfo {
        complete: true,
        ..pa.clone()
    };
    announce(check, store, &b, &both).await;
    assert_eq!(
        sample(check, store, &a, 10).await,
        [pa],
        "{check}: announce in b left a alone"
    );
}

async fn ipv6(store: &dyn PeerStore) {
    let check = "peer_store_suite/ipv6 address";
    let hash = torrent();
    let addr: SocketAddr = "[2001:db8::1:2]:15001".parse().expect("valid address");
    let p = PeerInfo {
        origin: true,
        ..PeerInfo::new(PeerId::random(), addr)
    };
    announce(check, store, &hash, &p).await;
    assert_eq!(
        sample(check, store, &hash, 3).await,
        [p],
        "{check}: round-trip"
    );
}

async fn randomness(store: &dyn PeerStore) {
    let check = "peer_store_suite/sampling is random";
    let hash = torrent();
    for i in 0..50 {
        announce(check, store, &hash, &peer(19000 + i)).await;
    }
    let mut samples = BTreeSet::new();
    let mut reached = HashSet::new();
    for _ in 0..40 {
        let drawn = sample(check, store, &hash, 5).await;
        assert_eq!(drawn.len(), 5, "{check}: n = 5 of 50");
        let ids: BTreeSet<_> = drawn.iter().map(|p| p.peer_id).collect();
        reached.extend(ids.iter().copied());
        samples.insert(ids);
    }
    assert!(
        samples.len() > 1,
        "{check}: 40 samples were all the same five peers"
    );
    // 40 uniform draws of 5 reach about 49 of 50 peers; 20 is far below
    // what any fair sampler misses by chance.
    assert!(
        reached.len() >= 20,
        "{check}: 40 samples reached only {} of 50",
        reached.len()
    );

    // Asked for more than there are, a store returns them all, and in an
    // order of its own each time: agents dial a handout from the front.
    let check = "peer_store_suite/a whole sample comes in random order";
    let mut firsts = HashSet::new();
    for _ in 0..20 {
        let drawn = sample(check, store, &hash, 80).await;
        assert_eq!(drawn.len(), 50, "{check}: n = 80 of 50");
        firsts.insert(drawn[0].peer_id);
    }
    // 20 shuffles of 50 put the same peer first every time with a
    // probability of 50^-19.
    assert!(
        firsts.len() > 1,
        "{check}: 20 samples of all 50 peers all began with the same peer"
    );
}

async fn expiry(store: &dyn PeerStore) {
    let check = "peer_store_suite/expiry";
    for _ in 0..3 {
        if expiry_attempt(check, store).await {
            return;
        }
    }
    panic!("{check}: the machine was too slow to check expiry three times in a row");
}

/// Runs one expiry round; returns false when sleeps overshot so far that
/// the round proved nothing.
async fn expiry_attempt(check: &str, store: &dyn PeerStore) -> bool {
    let hash = torrent();
    let (stale, renewed) = (peer(20001), peer(20002));
    announce(check, store, &hash, &stale).await;
    announce(check, store, &hash, &renewed).await;
    tokio::time::sleep(SHORT_TTL * 6 / 10).await;
    announce(check, store, &hash, &renewed).await;
    let renewed_at = Instant::now();
    tokio::time::sleep(SHORT_TTL * 6 / 10).await;

    // `stale` is now 1.2 TTL old whatever the overshoot; `renewed` is
    // only known to be alive if less than a TTL passed since its renewal.
    let got: Vec<_> = sample(check, store, &hash, 10).await;
    if renewed_at.elapsed() >= SHORT_TTL * 9 / 10 {
        return false;
    }
    let ids: Vec<_> = got.iter().map(|p| p.peer_id).collect();
    assert_eq!(
        ids,
        [renewed.peer_id],
        "{check}: only the renewed peer is alive after 1.2 TTL"
    );

    tokio::time::sleep(SHORT_TTL + SHORT_TTL / 4).await;
    let left = sample(check, store, &hash, 10).await;
    assert!(
        left.is_empty(),
        "{check}: {} peers alive after their TTL",
        left.len()
    );
    true
}
