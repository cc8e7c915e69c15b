//! The decisions of one blob's download, free of I/O.
//!
//! [`Torrent`] is a state machine: the engine (or the simulator) feeds it
//! events (a peer connected, a piece arrived and verified, a request was
//! refused, time passed) and carries out the [`Action`]s it returns (send
//! a request, announce a piece, drop a peer). Time is a [`Duration`] since
//! any fixed start, passed with every event, and randomness comes from a
//! seeded generator, so a run is reproducible and the same code serves a
//! real swarm and a simulated one of ten thousand hosts.
//!
//! Piece choice: pieces a streaming reader needs next come first, in
//! order; everything else is rarest first among the connected peers, ties
//! broken at random, so the swarm spreads every piece early and no piece
//! stays held only by the seed. When few pieces remain (endgame), a piece
//! may be requested from several peers at once.
//!
//! Piece choice runs on every request, so it looks at the pieces a peer
//! could give us 64 at a time (its bitfield less ours, less pieces already
//! asked for) rather than testing every piece of the blob one by one.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use kraken_core::{Bitfield, PeerId, PeerInfo, PieceIndex};
use rand::Rng;
use rand::rngs::StdRng;

use super::SchedulerConfig;
use super::pick::{Availability, Picker, Requested};

/// Something the engine must do on the torrent's behalf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Ask `peer` for `piece`.
    Request {
        /// Whom to ask.
        peer: PeerId,
        /// What to ask for.
        piece: PieceIndex,
    },
    /// Withdraw a request to `peer`; another peer delivered the piece.
    Cancel {
        /// Whom to tell.
        peer: PeerId,
        /// The withdrawn piece.
        piece: PieceIndex,
    },
    /// Tell every connected peer that we now hold `piece`.
    Announce(PieceIndex),
    /// Close the connection to `peer`.
    Disconnect {
        /// Whom to drop.
        peer: PeerId,
        /// Why, for logs and metrics.
        reason: DisconnectReason,
    },
}

/// Why the torrent drops a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// It sent a piece that failed verification; it is blacklisted.
    BadPiece,
    /// Neither side moved a piece for the idle timeout.
    Idle,
    /// Both sides hold the whole blob; the connection has no use.
    BothComplete,
}

/// What the engine found when it checked a received piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The piece matched its hash and is stored.
    Valid,
    /// The piece failed its hash or length check; nothing was stored.
    Invalid,
}

#[derive(Debug)]
pub(super) struct Peer {
    pub(super) bitfield: Bitfield,
    pub(super) origin: bool,
    /// Requests sent to this peer and not yet answered, with deadlines.
    pub(super) inflight: Vec<(PieceIndex, Duration)>,
    /// Last time a piece moved on this connection, either way.
    pub(super) last_progress: Duration,
}

impl Peer {
    pub(super) fn asked_for(&self, piece: PieceIndex) -> bool {
        self.inflight.iter().any(|(p, _)| *p == piece)
    }
}

/// The download state and piece policy of one blob.
#[derive(Debug)]
pub struct Torrent {
    config: SchedulerConfig,
    piece_count: u32,
    request_timeout: Duration,
    have: Bitfield,
    /// `have.count()`, kept so completeness and endgame cost nothing.
    held: u32,
    peers: HashMap<PeerId, Peer, PeerOrder>,
    availability: Availability,
    requested: Requested,
    blacklist: HashMap<PeerId, Duration>,
    stream_cursor: Option<u32>,
    rng: StdRng,
}

impl Torrent {
    /// Starts the state of a blob of `piece_count` pieces of `piece_length`
    /// bytes, of which `have` are already stored (a resumed download).
    pub fn new(
        config: SchedulerConfig,
        piece_length: u64,
        have: Bitfield,
        mut rng: StdRng,
    ) -> Self {
        let piece_count = have.len();
        Torrent {
            request_timeout: config.request_timeout(piece_length),
            config,
            piece_count,
            held: have.count(),
            have,
            peers: HashMap::with_hasher(PeerOrder(rng.random())),
            availability: Availability::new(piece_count),
            requested: Requested::new(piece_count),
            blacklist: HashMap::new(),
            stream_cursor: None,
            rng,
        }
    }

    /// Returns the pieces held.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Returns true when every piece is held.
    pub fn is_complete(&self) -> bool {
        self.held == self.piece_count
    }

    /// Returns the connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// Returns how many peers are connected.
    pub fn connection_count(&self) -> usize {
        self.peers.len()
    }

    /// Returns true when `peer` may be connected now: not connected
    /// already, not blacklisted, and a connection slot is free.
    pub fn accepts(&self, peer: &PeerId, now: Duration) -> bool {
        !self.peers.contains_key(peer)
            && !self.is_blacklisted(peer, now)
            && self.peers.len() < self.config.max_connections
    }

    /// Picks, in the tracker's order, the peers of a handout to dial now:
    /// not `me`, not connected, not being dialled and not blacklisted,
    /// while connections and dials under way fill less than half of
    /// `max_connections` (the rest is for peers that dial us). A complete
    /// torrent dials nobody; it only seeds to peers that dial it.
    pub fn peers_to_dial<'a>(
        &self,
        now: Duration,
        me: &PeerId,
        handout: &'a [PeerInfo],
        dialing: &HashSet<PeerId>,
    ) -> Vec<&'a PeerInfo> {
        let mut chosen: Vec<&PeerInfo> = Vec::new();
        if self.is_complete() {
            return chosen;
        }
        let dial_room = self.config.max_connections.div_ceil(2);
        for peer in handout {
            let busy = self.peers.len() + dialing.len() + chosen.len();
            if busy >= dial_room {
                break;
            }
            let id = &peer.peer_id;
            let skip = id == me
                || dialing.contains(id)
                || chosen.iter().any(|c| c.peer_id == *id)
                || !self.accepts(id, now);
            if !skip {
                chosen.push(peer);
            }
        }
        chosen
    }

    /// Returns true while `peer` is blacklisted.
    pub fn is_blacklisted(&self, peer: &PeerId, now: Duration) -> bool {
        self.blacklist.get(peer).is_some_and(|until| *until > now)
    }

    /// Keeps `peer` away for the blacklist duration, as after a failed dial.
    pub fn blacklist(&mut self, peer: PeerId, now: Duration) {
        self.blacklist
            .insert(peer, now + self.config.blacklist_duration);
    }

    /// Makes pieces from `piece` on come first, in order, for a streaming
    /// reader; `None` when no reader waits.
    pub fn set_stream_cursor(&mut self, piece: Option<u32>) {
        self.stream_cursor = piece;
    }

    /// Records a new connection and the pieces the peer announced in its
    /// handshake.
    pub fn peer_connected(
        &mut self,
        now: Duration,
        id: PeerId,
        bitfield: Bitfield,
        origin: bool,
    ) -> Vec<Action> {
        if bitfield.len() != self.piece_count || self.peers.contains_key(&id) {
            return vec![Action::Disconnect {
                peer: id,
                reason: DisconnectReason::BadPiece,
            }];
        }
        for piece in bitfield.present() {
            self.availability.add(piece, origin);
        }
        let peer = Peer {
            bitfield,
            origin,
            inflight: Vec::new(),
            last_progress: now,
        };
        self.peers.insert(id, peer);
        let mut actions = Vec::new();
        self.fill(id, now, &mut actions);
        actions
    }

    /// Forgets a closed connection and moves its outstanding requests to
    /// other peers. Unknown peers are ignored, so a peer the torrent
    /// already dropped may be reported again.
    pub fn peer_disconnected(&mut self, now: Duration, id: PeerId) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.remove_peer(id) {
            self.fill_all(now, &mut actions);
        }
        actions
    }

    /// Records that a peer now holds `piece`.
    pub fn peer_has(&mut self, now: Duration, id: PeerId, piece: PieceIndex) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(peer) = self.peers.get_mut(&id) else {
            return actions;
        };
        if piece.0 >= self.piece_count || peer.bitfield.has(piece) {
            return actions;
        }
        peer.bitfield.set(piece);
        self.availability.add(piece, peer.origin);
        if self.have.has(piece) {
            return actions;
        }
        if !peer.origin {
            self.withdraw_from_origins(piece, &mut actions);
        }
        self.fill(id, now, &mut actions);
        actions
    }

    /// Records that a peer holds every piece.
    pub fn peer_complete(&mut self, now: Duration, id: PeerId) -> Vec<Action> {
        let missing: Vec<_> = match self.peers.get(&id) {
            Some(peer) => peer.bitfield.missing().collect(),
            None => return Vec::new(),
        };
        let mut actions = Vec::new();
        for piece in missing {
            actions.extend(self.peer_has(now, id, piece));
        }
        if self.is_complete() {
            self.drop_peer(id, DisconnectReason::BothComplete, &mut actions);
        }
        actions
    }

    /// Records a piece that arrived from `id` and what its check found.
    ///
    /// A valid piece is held from now on, announced, and withdrawn from
    /// every other peer it was requested from. An invalid one gets its
    /// sender dropped and blacklisted.
    pub fn piece_received(
        &mut self,
        now: Duration,
        id: PeerId,
        piece: PieceIndex,
        verdict: Verdict,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if piece.0 >= self.piece_count {
            self.punish(id, now, &mut actions);
            return actions;
        }
        self.forget_request(id, piece);
        if verdict == Verdict::Invalid {
            self.punish(id, now, &mut actions);
            self.fill_all(now, &mut actions);
            return actions;
        }
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.last_progress = now;
        }
        if self.have.has(piece) {
            self.fill(id, now, &mut actions);
            return actions;
        }
        self.have.set(piece);
        self.held += 1;
        actions.push(Action::Announce(piece));
        self.cancel_others(piece, &mut actions);
        if self.is_complete() {
            self.close_complete_peers(&mut actions);
        } else {
            self.fill_all(now, &mut actions);
        }
        actions
    }

    /// Records that a peer refused a request; it is not asked for that
    /// piece again until it announces it anew.
    pub fn request_rejected(
        &mut self,
        now: Duration,
        id: PeerId,
        piece: PieceIndex,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if piece.0 >= self.piece_count {
            return actions;
        }
        self.forget_request(id, piece);
        self.unset(id, piece);
        self.fill_all(now, &mut actions);
        actions
    }

    /// Records that we sent a piece to `id`, which keeps the connection
    /// from counting as idle.
    pub fn piece_sent(&mut self, now: Duration, id: PeerId) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.last_progress = now;
        }
    }

    /// Advances time: expired requests move to other peers, idle
    /// connections close, blacklist entries lapse.
    pub fn tick(&mut self, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        self.blacklist.retain(|_, until| *until > now);
        let mut expired = Vec::new();
        for (id, peer) in &mut self.peers {
            peer.inflight.retain(|&(piece, deadline)| {
                let live = deadline > now;
                if !live {
                    expired.push((*id, piece));
                }
                live
            });
        }
        for (id, piece) in expired {
            self.requested.remove(piece);
            actions.push(Action::Cancel { peer: id, piece });
            // A peer too slow for one piece is not asked for it again.
            self.unset(id, piece);
        }
        let idle = self.config.idle_connection_timeout;
        let stale: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.inflight.is_empty() && now.saturating_sub(p.last_progress) >= idle)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.drop_peer(id, DisconnectReason::Idle, &mut actions);
        }
        self.fill_all(now, &mut actions);
        actions
    }

    /// Stops counting `piece` as held by `id`, until it announces it again.
    fn unset(&mut self, id: PeerId, piece: PieceIndex) {
        if let Some(peer) = self.peers.get_mut(&id)
            && peer.bitfield.has(piece)
        {
            peer.bitfield.clear(piece);
            self.availability.remove(piece, peer.origin);
        }
    }

    fn forget_request(&mut self, id: PeerId, piece: PieceIndex) {
        if let Some(peer) = self.peers.get_mut(&id)
            && let Some(at) = peer.inflight.iter().position(|(p, _)| *p == piece)
        {
            peer.inflight.swap_remove(at);
            self.requested.remove(piece);
        }
    }

    fn punish(&mut self, id: PeerId, now: Duration, actions: &mut Vec<Action>) {
        self.blacklist(id, now);
        self.drop_peer(id, DisconnectReason::BadPiece, actions);
    }

    fn drop_peer(&mut self, id: PeerId, reason: DisconnectReason, actions: &mut Vec<Action>) {
        // Re-requests of its pieces happen in the caller's fill pass.
        if self.remove_peer(id) {
            actions.push(Action::Disconnect { peer: id, reason });
        }
    }

    /// Removes a peer and its share of the counters; false when unknown.
    fn remove_peer(&mut self, id: PeerId) -> bool {
        let Some(peer) = self.peers.remove(&id) else {
            return false;
        };
        for piece in peer.bitfield.present() {
            self.availability.remove(piece, peer.origin);
        }
        for (piece, _) in &peer.inflight {
            self.requested.remove(*piece);
        }
        true
    }

    /// Withdraws requests for `piece` from origins once an agent offers it,
    /// so origins spend their upload on pieces no agent has yet.
    fn withdraw_from_origins(&mut self, piece: PieceIndex, actions: &mut Vec<Action>) {
        if self.in_endgame() {
            return;
        }
        for (id, peer) in self.peers.iter_mut().filter(|(_, p)| p.origin) {
            if let Some(at) = peer.inflight.iter().position(|(p, _)| *p == piece) {
                peer.inflight.swap_remove(at);
                self.requested.remove(piece);
                actions.push(Action::Cancel { peer: *id, piece });
            }
        }
    }

    fn cancel_others(&mut self, piece: PieceIndex, actions: &mut Vec<Action>) {
        for (id, peer) in &mut self.peers {
            if let Some(at) = peer.inflight.iter().position(|(p, _)| *p == piece) {
                peer.inflight.swap_remove(at);
                self.requested.remove(piece);
                actions.push(Action::Cancel { peer: *id, piece });
            }
        }
    }

    fn close_complete_peers(&mut self, actions: &mut Vec<Action>) {
        let done: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.bitfield.is_complete())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.drop_peer(id, DisconnectReason::BothComplete, actions);
        }
        for peer in self.peers.values_mut() {
            peer.inflight.clear();
        }
        self.requested = Requested::new(self.piece_count);
    }

    fn in_endgame(&self) -> bool {
        let missing = (self.piece_count - self.held) as usize;
        missing <= self.config.endgame_threshold
    }

    fn fill_all(&mut self, now: Duration, actions: &mut Vec<Action>) {
        if self.is_complete() {
            return;
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.fill(id, now, actions);
        }
    }

    /// Sends `id` requests until its pipeline is full or it has nothing
    /// we need that nobody else is fetching.
    fn fill(&mut self, id: PeerId, now: Duration, actions: &mut Vec<Action>) {
        let endgame = self.in_endgame();
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        // From an origin only the reader's very next piece jumps the queue:
        // every streaming agent of a swarm waits at about the same place,
        // and a window of several pieces asked of the origin by all of them
        // is the origin's upload spent on copies.
        let (limit, ahead) = match peer.origin {
            true => (
                self.config.origin_pipeline_limit,
                self.config.stream_window.min(1),
            ),
            false => (self.config.pipeline_limit, self.config.stream_window),
        };
        let window = self.stream_cursor.map(|c| c..c.saturating_add(ahead));
        // An empty horizon (0) puts every piece beyond it: rarest of all.
        let horizon = (self.stream_cursor).map(|c| c..c.saturating_add(self.config.stream_horizon));
        while peer.inflight.len() < limit {
            let picker = Picker {
                have: &self.have,
                availability: &self.availability,
                requested: &self.requested,
                peer,
                endgame,
            };
            let Some(piece) = picker.choose(window.clone(), horizon.as_ref(), &mut self.rng) else {
                return;
            };
            self.requested.add(piece);
            peer.inflight.push((piece, now + self.request_timeout));
            actions.push(Action::Request { peer: id, piece });
        }
    }
}

/// Hashes peer ids with a key drawn from the torrent's generator, so the
/// order in which peers are visited (who gets first pick of the rarest
/// pieces) differs from torrent to torrent, favouring no peer id across a
/// swarm, yet is the same for the same seed. The map holds at most
/// `max_connections` entries, so a peer choosing ids to collide gains
/// nothing.
#[derive(Debug, Clone)]
struct PeerOrder(u64);

impl BuildHasher for PeerOrder {
    type Hasher = PeerHasher;

    fn build_hasher(&self) -> PeerHasher {
        PeerHasher(self.0)
    }
}

struct PeerHasher(u64);

impl Hasher for PeerHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            let mixed = (self.0 ^ u64::from_le_bytes(word)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            self.0 = mixed.rotate_left(31);
        }
    }

    fn finish(&self) -> u64 {
        // The finaliser of splitmix64: every input bit reaches every output bit.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[path = "torrent_tests.rs"]
mod tests;
