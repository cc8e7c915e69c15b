//! Tests of the piece policy and its bookkeeping.

use std::time::Duration;

use kraken_core::{Bitfield, PeerId, PeerInfo, PieceIndex};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

const PIECE_LEN: u64 = 1 << 20;

fn torrent(pieces: u32) -> Torrent {
    Torrent::new(
        SchedulerConfig::default(),
        PIECE_LEN,
        Bitfield::new(pieces),
        rng(),
    )
}

/// A torrent that never enters endgame, to test the ordinary policy on
/// blobs of very few pieces.
fn no_endgame(pieces: u32) -> Torrent {
    let config = SchedulerConfig {
        endgame_threshold: 0,
        ..SchedulerConfig::default()
    };
    Torrent::new(config, PIECE_LEN, Bitfield::new(pieces), rng())
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn id(n: u8) -> PeerId {
    PeerId::from_bytes([n; 20])
}

fn bits(pieces: u32, present: &[u32]) -> Bitfield {
    let mut b = Bitfield::new(pieces);
    present.iter().for_each(|&i| b.set(PieceIndex(i)));
    b
}

fn requests(actions: &[Action]) -> Vec<(PeerId, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Request { peer, piece } => Some((*peer, piece.0)),
            _ => None,
        })
        .collect()
}

/// The pieces of the requests among `actions`, whoever they went to.
fn pieces(actions: &[Action]) -> Vec<u32> {
    requests(actions).into_iter().map(|(_, p)| p).collect()
}

const T0: Duration = Duration::ZERO;

#[test]
fn requests_the_rarest_pieces_first_up_to_the_pipeline() {
    let mut t = torrent(6);
    assert!(requests(&t.peer_connected(T0, id(2), bits(6, &[0, 1, 2]), false)).len() == 3);
    // Pieces 3 and 4 are held by one peer each; 0..3 by two once id(3) joins.
    let actions = t.peer_connected(T0, id(3), bits(6, &[0, 1, 2, 3, 4]), false);
    let got = pieces(&actions);
    assert_eq!(got.len(), 2, "only pieces nobody is fetching: {got:?}");
    assert!(got.iter().all(|p| [3, 4].contains(p)), "{got:?}");
}

#[test]
fn origins_get_a_deeper_pipeline() {
    let mut t = torrent(20);
    let actions = t.peer_connected(T0, id(1), Bitfield::full(20), true);
    assert_eq!(
        requests(&actions).len(),
        SchedulerConfig::default().origin_pipeline_limit
    );
}

#[test]
fn valid_piece_is_announced_cancelled_elsewhere_and_refilled() {
    let mut t = torrent(10);
    t.peer_connected(T0, id(1), Bitfield::full(10), false);
    let first = requests(&t.peer_connected(T0, id(2), Bitfield::full(10), false));
    let (_, piece) = first[0];
    let actions = t.piece_received(T0, id(2), PieceIndex(piece), Verdict::Valid);
    assert!(actions.contains(&Action::Announce(PieceIndex(piece))));
    assert_eq!(
        requests(&actions).len(),
        1,
        "one free slot refilled: {actions:?}"
    );
    assert!(t.have().has(PieceIndex(piece)));
}

#[test]
fn corrupt_piece_drops_and_blacklists_the_sender_and_moves_its_requests() {
    let mut t = torrent(4);
    let liar = requests(&t.peer_connected(T0, id(1), Bitfield::full(4), false));
    let honest = requests(&t.peer_connected(T0, id(2), Bitfield::full(4), false));
    assert_eq!((liar.len(), honest.len()), (3, 1));
    let actions = t.piece_received(T0, id(1), PieceIndex(liar[0].1), Verdict::Invalid);
    assert!(actions.contains(&Action::Disconnect {
        peer: id(1),
        reason: DisconnectReason::BadPiece
    }));
    assert!(!t.accepts(&id(1), T0), "a liar is blacklisted");
    assert!(
        t.accepts(&id(1), T0 + Duration::from_secs(31)),
        "for the blacklist duration only"
    );
    let moved = requests(&actions);
    assert_eq!(
        moved.len(),
        2,
        "the honest peer takes over up to its pipeline: {actions:?}"
    );
    assert!(moved.iter().all(|(p, _)| *p == id(2)));
    assert!(!t.have().has(PieceIndex(liar[0].1)));
}

#[test]
fn expired_requests_move_to_another_peer() {
    let mut t = no_endgame(2);
    let slow = requests(&t.peer_connected(T0, id(1), Bitfield::full(2), false));
    assert_eq!(slow.len(), 2);
    let other = t.peer_connected(T0, id(2), Bitfield::full(2), false);
    assert!(
        requests(&other).is_empty(),
        "both pieces are already being fetched"
    );
    let timeout = SchedulerConfig::default().request_timeout(PIECE_LEN);
    let actions = t.tick(T0 + timeout);
    let cancels = actions
        .iter()
        .filter(|a| matches!(a, Action::Cancel { .. }))
        .count();
    assert_eq!(cancels, 2);
    let moved = requests(&actions);
    assert_eq!(moved.len(), 2, "{actions:?}");
    assert!(
        moved.iter().all(|(p, _)| *p == id(2)),
        "not back to the slow peer: {moved:?}"
    );
}

#[test]
fn endgame_duplicates_requests_to_different_peers() {
    let config = SchedulerConfig {
        endgame_threshold: 2,
        ..SchedulerConfig::default()
    };
    let mut t = Torrent::new(config, PIECE_LEN, Bitfield::new(2), rng());
    let a = requests(&t.peer_connected(T0, id(1), Bitfield::full(2), false));
    let b = requests(&t.peer_connected(T0, id(2), Bitfield::full(2), false));
    assert_eq!(
        (a.len(), b.len()),
        (2, 2),
        "both peers asked for both last pieces"
    );
    let actions = t.piece_received(T0, id(1), PieceIndex(a[0].1), Verdict::Valid);
    assert!(actions.contains(&Action::Cancel {
        peer: id(2),
        piece: PieceIndex(a[0].1)
    }));
}

#[test]
fn idle_connections_are_closed() {
    let mut t = torrent(3);
    t.peer_connected(T0, id(1), Bitfield::new(3), false);
    let idle = SchedulerConfig::default().idle_connection_timeout;
    assert!(t.tick(idle / 2).is_empty());
    t.piece_sent(idle / 2, id(1));
    assert!(t.tick(idle).is_empty(), "sending a piece is progress");
    let actions = t.tick(idle / 2 + idle);
    assert_eq!(
        actions,
        [Action::Disconnect {
            peer: id(1),
            reason: DisconnectReason::Idle
        }]
    );
    assert_eq!(t.connection_count(), 0);
}

#[test]
fn stream_cursor_fetches_the_readers_next_pieces_in_order() {
    let mut t = torrent(50);
    t.set_stream_cursor(Some(10));
    let got = pieces(&t.peer_connected(T0, id(1), Bitfield::full(50), false));
    assert_eq!(got, [10, 11, 12]);
}

#[test]
fn an_origin_is_asked_out_of_turn_only_for_the_readers_next_piece() {
    let mut t = torrent(50);
    t.set_stream_cursor(Some(10));
    let got = pieces(&t.peer_connected(T0, id(1), Bitfield::full(50), true));
    assert_eq!(got[0], 10, "the next piece first");
    assert_ne!(
        got[1..4],
        [11, 12, 13],
        "the rest is rarest first, not the window in order"
    );
}

#[test]
fn past_the_window_the_rarest_piece_near_the_reader_comes_first() {
    let config = SchedulerConfig {
        pipeline_limit: 12,
        stream_window: 2,
        stream_horizon: 8,
        endgame_threshold: 0,
        ..SchedulerConfig::default()
    };
    let mut t = Torrent::new(config.clone(), PIECE_LEN, Bitfield::new(50), rng());
    t.set_stream_cursor(Some(10));
    // Another agent holds 14 and 15 and is asked for them.
    t.peer_connected(T0, id(2), bits(50, &[14, 15]), false);
    let got = pieces(&t.peer_connected(T0, id(1), Bitfield::full(50), false));
    assert_eq!(got[..2], [10, 11], "the window in order");
    let mut near = got[2..6].to_vec();
    near.sort();
    assert_eq!(near, [12, 13, 16, 17], "the rest of the horizon");
    assert!(
        got[6..].iter().all(|p| !(10..18).contains(p)),
        "then beyond"
    );

    let mut off = Torrent::new(
        SchedulerConfig {
            stream_horizon: 0,
            ..config
        },
        PIECE_LEN,
        Bitfield::new(50),
        rng(),
    );
    off.set_stream_cursor(Some(10));
    let got = pieces(&off.peer_connected(T0, id(1), Bitfield::full(50), false));
    assert!(
        got[2..].iter().any(|p| !(10..18).contains(p)),
        "with no horizon, the rarest of the whole blob: {got:?}"
    );
}

#[test]
fn rejected_pieces_are_asked_elsewhere() {
    let mut t = no_endgame(1);
    let first = requests(&t.peer_connected(T0, id(1), Bitfield::full(1), false));
    assert_eq!(first, [(id(1), 0)]);
    t.peer_connected(T0, id(2), Bitfield::full(1), false);
    let actions = t.request_rejected(T0, id(1), PieceIndex(0));
    assert_eq!(requests(&actions), [(id(2), 0)]);
}

#[test]
fn connection_cap_and_duplicates_are_enforced() {
    let mut t = torrent(1);
    for n in 0..10 {
        assert!(t.accepts(&id(n), T0));
        t.peer_connected(T0, id(n), Bitfield::new(1), false);
    }
    assert!(!t.accepts(&id(10), T0), "cap of 10 reached");
    assert!(!t.accepts(&id(3), T0), "already connected");
    let bad = t.peer_connected(T0, id(11), Bitfield::new(2), false);
    assert!(
        matches!(bad[..], [Action::Disconnect { .. }]),
        "wrong bitfield length"
    );
}

#[test]
fn completing_closes_connections_to_complete_peers() {
    let mut t = torrent(1);
    t.peer_connected(T0, id(1), Bitfield::full(1), false);
    t.peer_connected(T0, id(2), Bitfield::new(1), false);
    let actions = t.piece_received(T0, id(1), PieceIndex(0), Verdict::Valid);
    assert!(t.is_complete());
    assert!(actions.contains(&Action::Disconnect {
        peer: id(1),
        reason: DisconnectReason::BothComplete
    }));
    assert_eq!(
        t.peers().collect::<Vec<_>>(),
        [&id(2)],
        "leechers stay to be seeded"
    );
}

/// One step a fuzzed peer population may take.
#[derive(Debug, Clone)]
enum Step {
    Connect(u8, Vec<bool>, bool),
    Disconnect(u8),
    Have(u8, u32),
    Deliver(u8, bool),
    Reject(u8),
    Tick(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            0u8..6,
            proptest::collection::vec(any::<bool>(), 12),
            any::<bool>()
        )
            .prop_map(|(p, b, o)| Step::Connect(p, b, o)),
        (0u8..6).prop_map(Step::Disconnect),
        (0u8..6, 0u32..12).prop_map(|(p, i)| Step::Have(p, i)),
        (0u8..6, any::<bool>()).prop_map(|(p, ok)| Step::Deliver(p, ok)),
        (0u8..6).prop_map(Step::Reject),
        (0u64..40).prop_map(Step::Tick),
    ]
}

proptest! {
    /// Whatever peers do, the torrent's requests stay consistent: never for
    /// a piece it holds or the peer lacks, never over a pipeline, never the
    /// same piece twice outside endgame.
    #[test]
    fn requests_stay_consistent(steps in proptest::collection::vec(step(), 1..80)) {
        let mut t = torrent(12);
        let mut now = T0;
        let mut inflight: std::collections::HashMap<PeerId, Vec<u32>> = Default::default();
        let mut peer_bits: std::collections::HashMap<PeerId, Bitfield> = Default::default();
        for s in steps {
            let actions = match s {
                Step::Connect(p, b, origin) => {
                    let field = bits(12, &(0..12).filter(|&i| b[i as usize]).collect::<Vec<_>>());
                    if !t.accepts(&id(p), now) { continue; }
                    peer_bits.insert(id(p), field.clone());
                    t.peer_connected(now, id(p), field, origin)
                }
                Step::Disconnect(p) => {
                    inflight.remove(&id(p));
                    peer_bits.remove(&id(p));
                    t.peer_disconnected(now, id(p))
                }
                Step::Have(p, i) => {
                    if let Some(b) = peer_bits.get_mut(&id(p)) { b.set(PieceIndex(i)); }
                    t.peer_has(now, id(p), PieceIndex(i))
                }
                Step::Deliver(p, ok) => {
                    let Some(piece) = inflight.get_mut(&id(p)).and_then(|v| v.pop()) else { continue };
                    let verdict = if ok { Verdict::Valid } else { Verdict::Invalid };
                    t.piece_received(now, id(p), PieceIndex(piece), verdict)
                }
                Step::Reject(p) => {
                    let Some(piece) = inflight.get_mut(&id(p)).and_then(|v| v.pop()) else { continue };
                    if let Some(b) = peer_bits.get_mut(&id(p)) { b.clear(PieceIndex(piece)); }
                    t.request_rejected(now, id(p), PieceIndex(piece))
                }
                Step::Tick(s) => {
                    now += Duration::from_secs(s);
                    t.tick(now)
                }
            };
            for a in actions {
                match a {
                    Action::Request { peer, piece } => {
                        prop_assert!(!t.have().has(piece), "requested a held piece");
                        prop_assert!(peer_bits[&peer].has(piece), "requested from a peer without it");
                        let list = inflight.entry(peer).or_default();
                        prop_assert!(!list.contains(&piece.0), "same piece twice to one peer");
                        list.push(piece.0);
                    }
                    Action::Cancel { peer, piece } => {
                        // The peer's bit may or may not be dropped too (after a
                        // timeout it is); the model keeps it, a superset.
                        if let Some(v) = inflight.get_mut(&peer) { v.retain(|&p| p != piece.0); }
                    }
                    Action::Disconnect { peer, .. } => {
                        inflight.remove(&peer);
                        peer_bits.remove(&peer);
                    }
                    Action::Announce(_) => {}
                }
            }
            if t.is_complete() {
                inflight.values_mut().for_each(Vec::clear);
            }
            for list in inflight.values() {
                prop_assert!(list.len() <= SchedulerConfig::default().origin_pipeline_limit);
            }
            let missing = 12 - t.have().count() as usize;
            if missing > SchedulerConfig::default().endgame_threshold {
                let mut all: Vec<u32> = inflight.values().flatten().copied().collect();
                let n = all.len();
                all.sort_unstable();
                all.dedup();
                prop_assert_eq!(all.len(), n, "duplicate requests outside endgame");
            }
        }
    }
}

#[test]
fn dials_handout_peers_in_order_while_slots_are_free() {
    let config = SchedulerConfig {
        max_connections: 5,
        ..SchedulerConfig::default()
    };
    let mut t = Torrent::new(config, PIECE_LEN, Bitfield::new(4), rng());
    t.peer_connected(T0, id(1), Bitfield::new(4), false);
    t.blacklist(id(3), T0);
    let addr = "127.0.0.1:1".parse().unwrap();
    let handout: Vec<PeerInfo> = [0, 1, 2, 3, 4, 5, 6]
        .into_iter()
        .map(|n| PeerInfo::new(id(n), addr))
        .collect();
    let dialing = [id(2)].into_iter().collect();
    let chosen: Vec<_> = t
        .peers_to_dial(T0, &id(0), &handout, &dialing)
        .into_iter()
        .map(|p| p.peer_id)
        .collect();
    // Three of five slots are ours to dial: one connected, one dialling,
    // one left, and not for ourselves, a connected, a dialled or a
    // blacklisted peer.
    assert_eq!(chosen, [id(4)]);
    let done = Torrent::new(
        SchedulerConfig::default(),
        PIECE_LEN,
        Bitfield::full(4),
        rng(),
    );
    let none = done.peers_to_dial(T0, &id(0), &handout, &Default::default());
    assert!(none.is_empty(), "a complete torrent only seeds");
}

#[test]
fn half_the_slots_are_left_for_peers_that_dial_us() {
    let mut t = torrent(4);
    let addr = "127.0.0.1:1".parse().unwrap();
    let handout: Vec<PeerInfo> = (1..=30).map(|n| PeerInfo::new(id(n), addr)).collect();
    let chosen = t.peers_to_dial(T0, &id(0), &handout, &Default::default());
    let max = SchedulerConfig::default().max_connections;
    assert_eq!(chosen.len(), max.div_ceil(2));
    for n in 100..100 + max as u8 {
        assert!(t.accepts(&id(n), T0), "inbound peers fill every slot");
        t.peer_connected(T0, id(n), Bitfield::new(4), false);
    }
    assert!(!t.accepts(&id(99), T0));
}
