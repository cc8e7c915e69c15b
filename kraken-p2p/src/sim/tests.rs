//! Small swarms whose outcome is known.

use std::time::Duration;

use super::*;

const MIB: u64 = 1 << 20;

/// 100 Mbit/s in bytes per second.
const RATE: f64 = 12.5e6;

#[test]
fn one_agent_from_one_origin_takes_size_over_rate_plus_latency() {
    let options = SimOptions::new(1, 16 * MIB, 256 << 10, RATE);
    let report = simulate(&options).unwrap();
    let last = report.last_s.unwrap();
    // Announce, dial and the first request cost a few latencies, and each
    // piece's last byte a latency more than its transfer; little else.
    assert!(last > report.ideal_s, "{report:?}");
    assert!(last < report.ideal_s + 0.05, "{report:?}");
    assert!((report.seed_upload_copies - 1.0).abs() < 1e-9, "{report:?}");
    assert_eq!(report.unfinished, 0);
}

#[test]
fn a_swarm_stays_near_line_rate_and_the_origin_near_one_copy() {
    // The lab's swarm (20 agents at 50 Mbit/s) on a blob of a third the
    // size, so the 3 s announce interval weighs more.
    let mut options = SimOptions::new(20, 64 * MIB, 128 << 10, 50e6 / 8.0);
    let buffered = simulate(&options).unwrap();
    let fraction = buffered.line_rate_fraction.unwrap();
    assert!(fraction > 0.6 && fraction <= 1.0, "{buffered:?}");
    assert!(buffered.median_fraction.unwrap() > 0.85, "{buffered:?}");
    assert!(buffered.seed_upload_copies < 1.5, "{buffered:?}");
    options.sender = SenderModel::Blocking;
    let blocking = simulate(&options).unwrap();
    assert!(
        blocking.line_rate_fraction.unwrap() < fraction,
        "{blocking:?}"
    );
    assert!(blocking.seed_upload_copies < 1.5, "{blocking:?}");
}

#[test]
fn the_same_seed_gives_the_same_run_and_another_seed_another() {
    let mut options = SimOptions::new(12, 8 * MIB, 128 << 10, RATE);
    options.arrival_spread = Duration::from_millis(300);
    let a = simulate(&options).unwrap();
    let b = simulate(&options).unwrap();
    assert_eq!(a.events, b.events);
    assert_eq!(a.agents, b.agents);
    options.seed = 2;
    let c = simulate(&options).unwrap();
    assert_ne!(a.agents, c.agents);
}

#[test]
fn a_time_limit_stops_the_run_with_agents_unfinished() {
    let mut options = SimOptions::new(4, 64 * MIB, MIB, RATE);
    options.time_limit = Duration::from_secs(1);
    let report = simulate(&options).unwrap();
    assert_eq!(report.unfinished, 4);
    assert_eq!(report.last_s, None);
    assert!(report.virtual_s <= 1.0);
}

#[test]
fn bad_options_are_named() {
    let mut options = SimOptions::new(0, MIB, MIB, RATE);
    let err = simulate(&options).unwrap_err();
    assert!(err.to_string().contains("hosts"), "{err}");
    options.hosts = 1;
    options.host_rate = f64::NAN;
    assert!(simulate(&options).is_err());
}
