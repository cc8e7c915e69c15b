//! Measures how close an in-process swarm gets to line rate.
//!
//! One origin seeds a blob; N agents fetch it at once. Every peer, origin
//! included, is capped at the same rate in each direction by the engine's
//! token buckets. The line-rate fraction is the ideal time (size / rate)
//! over the time until the last agent holds the verified blob.
//!
//! ```text
//! cargo run --release -p kraken-p2p --example swarm_bench -- \
//!     --peers 20 --rate-mbit 50 --size-mib 200 --piece-kib 4096
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytesize::ByteSize;
use common::{Swarm, blob, fast_config, ns};
use kraken_core::Scheduler;
use kraken_p2p::scheduler::SchedulerConfig;

struct Args {
    peers: u64,
    rate_mbit: u64,
    size_mib: u64,
    piece_kib: u64,
}

const USAGE: &str = "usage: swarm_bench [--peers N] [--rate-mbit R] [--size-mib S] [--piece-kib P]
  every value a positive whole number, peers at most 200; defaults 20, 50, 200, 4096";

/// More peers than this would each open a store and sockets in one
/// process; the simulator of issue 8 is the tool for larger swarms.
const MAX_PEERS: u64 = 200;

/// Parses the flags; `Ok(None)` when usage was asked for.
fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        peers: 20,
        rate_mbit: 50,
        size_mib: 200,
        piece_kib: 4096,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let field = match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--peers" => &mut args.peers,
            "--rate-mbit" => &mut args.rate_mbit,
            "--size-mib" => &mut args.size_mib,
            "--piece-kib" => &mut args.piece_kib,
            other => return Err(format!("unknown flag {other}")),
        };
        let value = it
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|v| *v > 0);
        *field = value.ok_or_else(|| format!("{flag} needs a positive whole number"))?;
    }
    if args.peers > MAX_PEERS {
        return Err(format!("--peers is at most {MAX_PEERS} in one process"));
    }
    Ok(Some(args))
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(why) => {
            eprintln!("swarm_bench: {why}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let rate = args.rate_mbit * 1_000_000 / 8;
    let config = SchedulerConfig {
        ingress_limit: Some(ByteSize(rate)),
        egress_limit: Some(ByteSize(rate)),
        ..fast_config()
    };
    let swarm = Swarm::new();
    let origin_conns: usize = std::env::var("ORIGIN_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let origin_config = SchedulerConfig {
        max_connections: origin_conns,
        ..config.clone()
    };
    let origin = swarm.peer(origin_config, true).await;
    let size = args.size_mib << 20;
    let data = blob(size as usize, 42);
    let meta = swarm.publish(&origin, &data, args.piece_kib << 10).await;
    drop(data);
    let mut agents = Vec::new();
    for _ in 0..args.peers {
        agents.push(swarm.peer(config.clone(), false).await);
    }
    let ns = ns();
    let start = Instant::now();
    let mut done: Vec<Duration> = futures::future::join_all(agents.iter().map(|a| async {
        a.engine
            .download(&ns, meta.digest())
            .await
            .expect("download");
        start.elapsed()
    }))
    .await;
    done.sort();
    let ideal = size as f64 / rate as f64;
    let last = done.last().expect("at least one agent").as_secs_f64();
    let median = done[done.len() / 2].as_secs_f64();
    let copies = origin.engine.stats().bytes_out as f64 / size as f64;
    println!(
        "peers={} rate={}Mbit/s size={}MiB piece={}KiB pieces={}",
        args.peers,
        args.rate_mbit,
        args.size_mib,
        args.piece_kib,
        meta.piece_count()
    );
    println!(
        "ideal={ideal:.2}s first={:.2}s median={median:.2}s last={last:.2}s",
        done[0].as_secs_f64()
    );
    println!(
        "line_rate_fraction last={:.3} median={:.3}",
        ideal / last,
        ideal / median
    );
    println!("seed_upload_copies={copies:.2}");
}
