//! Swarms with peers that lie, stall, leave or restart.

mod common;

use std::time::Duration;

use bytesize::ByteSize;
use common::{
    Misbehaviour, Swarm, agents, blob, download_exact, fast_config, ns, read_back, spawn_bad_peer,
};
use kraken_core::{BlobStore, Scheduler};
use kraken_p2p::scheduler::SchedulerConfig;

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_leechers_with_bandwidth_caps_get_exact_bytes_and_spare_the_seed() {
    let capped = SchedulerConfig {
        ingress_limit: Some(ByteSize::mib(16)),
        egress_limit: Some(ByteSize::mib(16)),
        ..fast_config()
    };
    let swarm = Swarm::new();
    let origin = swarm.peer(capped.clone(), true).await;
    let data = blob(64 << 20, 3);
    let meta = swarm.publish(&origin, &data, 1 << 20).await;
    let leechers = agents(&swarm, 20, &capped).await;
    download_exact(&leechers, &meta, &data, LIMIT).await;
    let copies = origin.engine.stats().bytes_out as f64 / data.len() as f64;
    println!("seed uploaded {copies:.2} copies");
    assert!(copies <= 3.0, "the seed uploaded {copies:.2} copies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_peer_is_blacklisted_and_poisons_nothing() {
    let swarm = Swarm::new();
    let origin = swarm.peer(fast_config(), true).await;
    let data = blob(4 << 20, 4);
    let meta = swarm.publish(&origin, &data, 256 * 1024).await;
    let liar = spawn_bad_peer(&swarm, &meta, Misbehaviour::Corrupt).await;
    let leechers = agents(&swarm, 5, &fast_config()).await;
    download_exact(&leechers, &meta, &data, LIMIT).await;
    // Each leecher dropped the liar at its first bad piece: a connection
    // carried at most the requests in flight then, one pipeline's worth.
    let sent = liar.pieces_per_connection.lock().unwrap().clone();
    let pipeline = fast_config().pipeline_limit;
    assert!(
        sent.iter().any(|&n| n > 0),
        "the liar was asked for pieces: {sent:?}"
    );
    assert!(
        sent.iter().all(|&n| n <= pipeline),
        "a liar stayed connected: {sent:?}"
    );
    assert!(
        sent.len() <= 2 * leechers.len(),
        "the liar was blacklisted: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_only_costs_the_request_timeout() {
    let config = SchedulerConfig {
        request_timeout_min: Duration::from_millis(500),
        request_timeout_per_mib: Duration::ZERO,
        ..fast_config()
    };
    let swarm = Swarm::new();
    let origin = swarm.peer(config.clone(), true).await;
    let data = blob(2 << 20, 5);
    let meta = swarm.publish(&origin, &data, 128 * 1024).await;
    spawn_bad_peer(&swarm, &meta, Misbehaviour::Silent).await;
    let agent = swarm.peer(config, false).await;
    let started = tokio::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(20),
        agent.engine.download(&ns(), meta.digest()),
    )
    .await
    .expect("a silent peer must not stall the download")
    .unwrap();
    assert_eq!(read_back(&agent.store, meta.digest()).await, data);
    println!("finished in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leechers_finish_after_the_seed_leaves() {
    let slow = SchedulerConfig {
        egress_limit: Some(ByteSize::mib(8)),
        ..fast_config()
    };
    let swarm = Swarm::new();
    let origin = swarm.peer(fast_config(), true).await;
    let data = blob(8 << 20, 6);
    let meta = swarm.publish(&origin, &data, 256 * 1024).await;
    let leechers = agents(&swarm, 4, &slow).await;
    let watch_union = async {
        loop {
            let mut union = kraken_core::Bitfield::new(meta.piece_count());
            for leecher in &leechers {
                if let Ok(bits) = leecher.store.bitfield(meta.digest()).await {
                    bits.present().for_each(|i| union.set(i));
                }
            }
            if union.is_complete() {
                origin.engine.shutdown();
                swarm.forget_origins();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let downloads = download_exact(&leechers, &meta, &data, LIMIT);
    futures::future::join(downloads, watch_union).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leecher_fetches_only_missing_pieces() {
    let swarm = Swarm::new();
    let origin_config = SchedulerConfig {
        egress_limit: Some(ByteSize::mib(4)),
        ..fast_config()
    };
    let origin = swarm.peer(origin_config, true).await;
    let data = blob(4 << 20, 7);
    let piece = 256 * 1024;
    let meta = swarm.publish(&origin, &data, piece).await;
    let agent = swarm.peer(fast_config(), false).await;
    let root = agent.root.clone();
    let engine = agent.engine.clone();
    let digest = *meta.digest();
    tokio::spawn(async move {
        let _ = engine.download(&ns(), &digest).await;
    });
    let half = meta.piece_count() / 2;
    loop {
        let have = agent
            .store
            .bitfield(meta.digest())
            .await
            .map(|b| b.count())
            .unwrap_or(0);
        if have >= half {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    agent.engine.shutdown();
    drop(agent);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let again = swarm.peer_at(root, fast_config(), false).await;
    let kept = again.store.bitfield(meta.digest()).await.unwrap().count();
    assert!(kept >= half, "pieces survive the restart: {kept}");
    tokio::time::timeout(LIMIT, again.engine.download(&ns(), meta.digest()))
        .await
        .expect("resumed in time")
        .unwrap();
    assert_eq!(read_back(&again.store, meta.digest()).await, data);
    let missing = u64::from(meta.piece_count() - kept) * piece;
    let fetched = again.engine.stats().bytes_in;
    assert!(
        fetched <= missing,
        "fetched {fetched} bytes, only {missing} were missing"
    );
}
