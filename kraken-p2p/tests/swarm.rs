//! Whole swarms in one process: an origin seeds, agents fetch from it and
//! from each other, every piece verified.

mod common;

use std::time::Duration;

use common::{Swarm, agents, blob, download_exact, fast_config, ns};
use kraken_core::{ByteRange, Scheduler};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leechers_fetch_a_blob_from_an_origin_and_each_other() {
    let swarm = Swarm::new();
    let origin = swarm.peer(fast_config(), true).await;
    let data = blob(3 << 20, 1);
    let meta = swarm.publish(&origin, &data, 128 * 1024).await;
    let leechers = agents(&swarm, 4, &fast_config()).await;
    download_exact(&leechers, &meta, &data, Duration::from_secs(60)).await;
    let served: u64 = leechers.iter().map(|l| l.engine.stats().bytes_out).sum();
    println!(
        "origin sent {} bytes, leechers {served}",
        origin.engine.stats().bytes_out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_range_of_a_blob_not_yet_cached() {
    let swarm = Swarm::new();
    let origin = swarm.peer(fast_config(), true).await;
    let data = blob(2 << 20, 2);
    let meta = swarm.publish(&origin, &data, 64 * 1024).await;
    let agent = swarm.peer(fast_config(), false).await;
    let range = ByteRange::Inclusive {
        start: 100_000,
        end: 1_500_000,
    };
    let stream = agent
        .engine
        .stream(&ns(), meta.digest(), range)
        .await
        .unwrap();
    assert_eq!(stream.length, data.len() as u64);
    assert_eq!(stream.range, 100_000..1_500_001);
    let chunks: Vec<_> = futures::StreamExt::collect::<Vec<_>>(stream.body).await;
    let got: Vec<u8> = chunks.into_iter().flat_map(|c| c.unwrap()).collect();
    assert_eq!(&got[..], &data[100_000..1_500_001]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_blob_is_not_found() {
    let swarm = Swarm::new();
    let agent = swarm.peer(fast_config(), false).await;
    let digest = kraken_core::Digest::sha256_of(b"nobody has this");
    let err = agent.engine.download(&ns(), &digest).await.unwrap_err();
    assert!(matches!(err, kraken_core::Error::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_whose_peers_are_all_unreachable_is_unavailable_not_a_hang() {
    let swarm = Swarm::new();
    let origin = swarm.peer(fast_config(), true).await;
    let data = blob(1 << 20, 9);
    let meta = swarm.publish(&origin, &data, 64 * 1024).await;
    origin.engine.shutdown();
    let config = kraken_p2p::scheduler::SchedulerConfig {
        no_peer_timeout: Duration::from_secs(1),
        ..fast_config()
    };
    let agent = swarm.peer(config, false).await;
    let limit = Duration::from_secs(20);
    let stream = tokio::time::timeout(
        limit,
        agent.engine.stream(&ns(), meta.digest(), ByteRange::Full),
    )
    .await
    .expect("the stream gave up in time");
    assert!(
        matches!(stream, Err(kraken_core::Error::Unavailable(_))),
        "{stream:?}"
    );
    let download = tokio::time::timeout(limit, agent.engine.download(&ns(), meta.digest()))
        .await
        .expect("the download gave up in time");
    assert!(
        matches!(download, Err(kraken_core::Error::Unavailable(_))),
        "{download:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metainfo_of_another_blob_is_a_digest_mismatch() {
    let swarm = Swarm::new();
    let origin = swarm.peer(fast_config(), true).await;
    let meta = swarm.publish(&origin, &blob(100_000, 10), 16 * 1024).await;
    let wanted = kraken_core::Digest::sha256_of(b"some other blob");
    swarm.lie_about(wanted, meta.clone());
    let agent = swarm.peer(fast_config(), false).await;
    let err = agent.engine.download(&ns(), &wanted).await.unwrap_err();
    let kraken_core::Error::DigestMismatch { expected, actual } = err else {
        panic!("expected a digest mismatch, got {err}");
    };
    assert_eq!((expected, actual), (wanted, *meta.digest()));
    let stat = kraken_core::BlobStore::stat(agent.store.as_ref(), &wanted).await;
    assert!(stat.is_err(), "nothing stored");
}
