//! Simulates one blob's swarm at a scale no test machine reaches and prints
//! one JSON line of results.
//!
//! The real `Torrent`, `ServeQueue` and tracker handout make every
//! decision; the network is simulated (see `kraken_p2p::sim`).
//!
//! ```text
//! cargo run --release -p kraken-p2p --example swarm_sim -- \
//!     --hosts 10000 --size-gib 10 --rate-mbit 1000 --origins 3 --latency-ms 1
//! ```

use std::io::Write;
use std::time::Duration;

use kraken_core::PieceLengths;
use kraken_p2p::sim::{SenderModel, SimOptions, SimReport, simulate};

const USAGE: &str = "usage: swarm_sim [options]
  --hosts N             agents downloading the blob (default 100)
  --origins N           origins seeding it (default 1)
  --size-mib N          blob size in MiB (default 1024)
  --size-gib N          blob size in GiB, instead of --size-mib
  --piece-kib N         piece length in KiB (default: what the default
                        piece length table picks for the size)
  --rate-mbit R         each agent's upload and download rate (default 1000)
  --origin-rate-mbit R  each origin's upload rate (default: --rate-mbit)
  --latency-ms L        one-way latency of every message (default 1)
  --stagger-ms S        agents start at random over [0, S] ms (default 0)
  --announce-ms A       announce interval of agents and tracker (default 3000)
  --blacklist-ms B      how long a refused peer is not dialled (default 30000)
  --max-conns C         connections per agent (default 10)
  --origin-conns C      connections per origin (default: --max-conns)
  --seed N              seed of every random choice (default 1)
  --time-limit-s T      stop after T virtual seconds (default 86400)
  --sender MODEL        buffered (default: a sender takes its next piece once
                        it has pushed the last out at its rate) or blocking
                        (once the receiver has it all)
  --times-out FILE      write each agent's start and download time as CSV
  -h, --help            this text
Prints one JSON line; line_rate_fraction is ideal_s / last_s.";

#[derive(Debug)]
struct Args {
    options: SimOptions,
    times_out: Option<String>,
}

fn number(flag: &str, value: Option<&str>) -> Result<f64, String> {
    value
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{flag} needs a non-negative number"))
}

fn whole(flag: &str, value: Option<&str>) -> Result<u64, String> {
    value
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| format!("{flag} needs a whole number"))
}

fn positive(flag: &str, value: Option<&str>) -> Result<u64, String> {
    whole(flag, value)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{flag} needs a positive whole number"))
}

fn millis(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1e3)
}

/// Parses the flags; `Ok(None)` when usage was asked for.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    const MIB: u64 = 1 << 20;
    let mut o = SimOptions::new(100, 1024 * MIB, 0, 125e6);
    let (mut size, mut piece, mut origin_rate, mut origin_conns) = (None, None, None, None);
    let mut times_out = None;
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let owned = it.next();
        let value = owned.as_deref();
        let f = flag.as_str();
        match f {
            "-h" | "--help" => return Ok(None),
            "--hosts" => o.hosts = to_u32(f, positive(f, value)?)?,
            "--origins" => o.origins = to_u32(f, positive(f, value)?)?,
            "--size-mib" => size = Some(positive(f, value)?.saturating_mul(MIB)),
            "--size-gib" => size = Some(positive(f, value)?.saturating_mul(1024 * MIB)),
            "--piece-kib" => piece = Some(positive(f, value)?.saturating_mul(1024)),
            "--rate-mbit" => o.host_rate = mbit(f, number(f, value)?)?,
            "--origin-rate-mbit" => origin_rate = Some(mbit(f, number(f, value)?)?),
            "--latency-ms" => o.latency = millis(number(f, value)?),
            "--stagger-ms" => o.arrival_spread = millis(number(f, value)?),
            "--announce-ms" => {
                let interval = millis(positive(f, value)? as f64);
                o.scheduler.announce_interval = interval;
                o.tracker.announce_interval = interval;
            }
            "--blacklist-ms" => o.scheduler.blacklist_duration = millis(number(f, value)?),
            "--max-conns" => o.scheduler.max_connections = positive(f, value)? as usize,
            "--origin-conns" => origin_conns = Some(positive(f, value)? as usize),
            "--seed" => o.seed = whole(f, value)?,
            "--time-limit-s" => o.time_limit = Duration::from_secs(positive(f, value)?),
            "--sender" => {
                o.sender = match value {
                    Some("buffered") => SenderModel::Buffered,
                    Some("blocking") => SenderModel::Blocking,
                    _ => return Err("--sender needs buffered or blocking".into()),
                }
            }
            "--times-out" => times_out = Some(owned.ok_or("--times-out needs a file name")?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if let Some(size) = size {
        o.blob_size = size;
    }
    o.piece_length = piece.unwrap_or_else(|| PieceLengths::default().piece_length_for(o.blob_size));
    o.origin_rate = origin_rate.unwrap_or(o.host_rate);
    o.origin_connections = origin_conns.unwrap_or(o.scheduler.max_connections);
    o.validate().map_err(|e| e.to_string())?;
    Ok(Some(Args {
        options: o,
        times_out,
    }))
}

fn to_u32(flag: &str, v: u64) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("{flag} is too large"))
}

fn mbit(flag: &str, v: f64) -> Result<f64, String> {
    if v > 0.0 {
        Ok(v * 1e6 / 8.0)
    } else {
        Err(format!("{flag} must be positive"))
    }
}

fn write_times(path: &str, report: &SimReport) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "agent,start_s,download_s")?;
    for (i, a) in report.agents.iter().enumerate() {
        let done = a.download_s.map(|d| format!("{d:.6}")).unwrap_or_default();
        writeln!(out, "{i},{:.6},{done}", a.start_s)?;
    }
    out.flush()
}

fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(why) => {
            eprintln!("swarm_sim: {why}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let report = match simulate(&args.options) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("swarm_sim: {e}");
            std::process::exit(2);
        }
    };
    if let Some(path) = &args.times_out
        && let Err(e) = write_times(path, &report)
    {
        eprintln!("swarm_sim: cannot write {path}: {e}");
        std::process::exit(1);
    }
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report serializes")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Option<Args>, String> {
        parse_args(line.split_whitespace().map(String::from))
    }

    #[test]
    fn flags_set_options_and_defaults_follow_the_piece_table() {
        let args = parse("--hosts 20 --size-mib 200 --rate-mbit 50 --times-out t.csv")
            .unwrap()
            .unwrap();
        assert_eq!(args.options.hosts, 20);
        assert_eq!(args.options.piece_length, 128 << 10);
        assert_eq!(args.options.origin_rate, args.options.host_rate);
        assert_eq!(args.times_out.as_deref(), Some("t.csv"));
        let args = parse("--size-gib 10").unwrap().unwrap();
        assert_eq!(args.options.piece_length, 8 << 20);
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(parse("--help").unwrap().is_none());
        for bad in [
            "--hosts",
            "--hosts 0",
            "--hosts ten",
            "--rate-mbit 0",
            "--latency-ms -1",
            "--bogus 1",
            "--sender fast",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad.split(' ').next().unwrap()), "{bad}: {err}");
        }
    }
}
