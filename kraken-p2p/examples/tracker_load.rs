//! Load generator for a running tracker: real `POST /announce` requests
//! over many keep-alive HTTP/1.1 connections, for a bounded time, counting
//! answers and failures.
//!
//! Each connection cycles through announces of `--blobs` blobs by
//! `--peers` peers each, all incomplete (the path a downloading agent
//! takes: the announce is recorded, peers are sampled and the blob's
//! origins are looked up), unless `--complete-percent` makes some of them
//! seeders. It prints one JSON object on stdout:
//!
//! ```text
//! cargo run --release -p kraken-p2p --example tracker_load -- \
//!     --url http://127.0.0.1:18300 --connections 64 --seconds 10
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use kraken_core::{Digest, InfoHash, Namespace, PeerId, PeerInfo};
use kraken_p2p::tracker::AnnounceRequest;
use tokio::net::TcpStream;

const USAGE: &str = "usage: tracker_load --url http://HOST:PORT [--connections N] [--seconds S]
    [--blobs B] [--peers P] [--complete-percent C] [--threads T] [--max-requests M]
  defaults: 64 connections, 10 s, 100 blobs x 50 peers, 0 % complete, 2 threads,
  at most 10,000,000 requests; the run ends at whichever limit comes first";

/// The flags.
struct Args {
    addr: SocketAddr,
    connections: u64,
    seconds: u64,
    blobs: u64,
    peers: u64,
    complete_percent: u64,
    threads: u64,
    max_requests: u64,
}

/// Parses the flags; `Ok(None)` when usage was asked for.
fn parse_args() -> Result<Option<Args>, String> {
    let mut addr = None;
    let mut numbers = [64, 10, 100, 50, 0, 2, 10_000_000];
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next();
        let slot = match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => {
                let url = value.ok_or("--url needs a value")?;
                let host = url.strip_prefix("http://").ok_or("--url must be http://")?;
                let host = host.trim_end_matches('/');
                addr = Some(host.parse().map_err(|e| format!("--url {url}: {e}"))?);
                continue;
            }
            "--connections" => 0,
            "--seconds" => 1,
            "--blobs" => 2,
            "--peers" => 3,
            "--complete-percent" => 4,
            "--threads" => 5,
            "--max-requests" => 6,
            other => return Err(format!("unknown flag {other}")),
        };
        let number = value.and_then(|v| v.parse::<u64>().ok());
        numbers[slot] = number.ok_or_else(|| format!("{flag} needs a whole number"))?;
    }
    let [
        connections,
        seconds,
        blobs,
        peers,
        complete_percent,
        threads,
        max_requests,
    ] = numbers;
    let positive = [connections, seconds, blobs, peers, threads, max_requests];
    if positive.contains(&0) || complete_percent > 100 || connections > 10_000 || seconds > 600 {
        return Err("out of range: counts above 0, at most 10,000 connections, 600 s".into());
    }
    let addr = addr.ok_or("--url is required")?;
    Ok(Some(Args {
        addr,
        connections,
        seconds,
        blobs,
        peers,
        complete_percent,
        threads,
        max_requests,
    }))
}

/// The announce bodies every connection cycles through: blob-major, so
/// consecutive requests of a connection touch different swarms.
fn bodies(args: &Args) -> Vec<Bytes> {
    let namespace = Namespace::new("bench/tracker-load").expect("a valid namespace");
    let mut out = Vec::with_capacity((args.blobs * args.peers) as usize);
    for peer in 0..args.peers {
        for blob in 0..args.blobs {
            let digest = Digest::sha256_of(format!("tracker-load blob {blob}").as_bytes());
            // Any fixed bytes do: the tracker keys swarms by info hash and
            // does not check it against the digest.
            let mut hash = [0u8; InfoHash::LEN];
            hash.copy_from_slice(&digest.as_bytes()[..InfoHash::LEN]);
            let mut id = [0u8; PeerId::LEN];
            id[..8].copy_from_slice(&peer.to_be_bytes());
            id[8..16].copy_from_slice(&blob.to_be_bytes());
            let port = 20_000 + (peer % 40_000) as u16;
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let complete = (peer * 100 / args.peers) < args.complete_percent;
            let request = AnnounceRequest {
                info_hash: InfoHash::from_bytes(hash),
                digest,
                namespace: namespace.clone(),
                peer: PeerInfo {
                    complete,
                    ..PeerInfo::new(PeerId::from_bytes(id), addr)
                },
            };
            let json = serde_json::to_vec(&request).expect("announces serialize");
            out.push(Bytes::from(json));
        }
    }
    out
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: u64,
    reconnects: u64,
    latencies_us: Vec<u32>,
}

/// Sends announces on one keep-alive connection (reconnecting after a
/// failure) until `stop` is set or `budget` requests were sent.
async fn connection(
    addr: SocketAddr,
    bodies: Arc<Vec<Bytes>>,
    first: usize,
    budget: u64,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut tally = Tally::default();
    let host = addr.to_string();
    let mut next = first;
    let mut sender = None;
    while !stop.load(Ordering::Relaxed) && tally.ok + tally.errors < budget {
        if sender.is_none() {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    tally.errors += 1;
                    tally.reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("connected above");
        let body = bodies[next % bodies.len()].clone();
        next += 1;
        let request = Request::post("/announce")
            .header("host", &host)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a valid request");
        let started = Instant::now();
        let answered = async {
            s.ready().await?;
            let response = s.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        };
        match answered.await {
            Ok(status) if status.is_success() => {
                tally.ok += 1;
                let us = started.elapsed().as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Ok(_) => tally.errors += 1,
            Err(_) => {
                tally.errors += 1;
                tally.reconnects += 1;
                sender = None;
            }
        }
    }
    tally
}

async fn connect(addr: SocketAddr) -> Result<http1::SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[rank]) / 1000.0
}

async fn run(args: Args) {
    let bodies = Arc::new(bodies(&args));
    let stop = Arc::new(AtomicBool::new(false));
    let budget = args.max_requests.div_ceil(args.connections);
    let spread = bodies.len() / args.connections as usize;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.connections as usize)
        .map(|i| {
            let task = connection(
                args.addr,
                bodies.clone(),
                i * spread.max(1),
                budget,
                stop.clone(),
            );
            tokio::spawn(task)
        })
        .collect();
    let deadline = Duration::from_secs(args.seconds);
    let watcher = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        watcher.store(true, Ordering::Relaxed);
    });
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("connection tasks do not panic");
        total.ok += tally.ok;
        total.errors += tally.errors;
        total.reconnects += tally.reconnects;
        total.latencies_us.extend(tally.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    let report = serde_json::json!({
        "connections": args.connections,
        "threads": args.threads,
        "blobs": args.blobs,
        "peers_per_blob": args.peers,
        "complete_percent": args.complete_percent,
        "seconds": (elapsed * 1000.0).round() / 1000.0,
        "announces_ok": total.ok,
        "errors": total.errors,
        "reconnects": total.reconnects,
        "announces_per_s": (total.ok as f64 / elapsed).round(),
        "latency_ms": {
            "p50": percentile(&total.latencies_us, 0.50),
            "p99": percentile(&total.latencies_us, 0.99),
            "max": percentile(&total.latencies_us, 1.0),
        },
    });
    println!("{report}");
}

fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(why) => {
            eprintln!("tracker_load: {why}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(args));
}
