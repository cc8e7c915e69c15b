//! Which piece request a host serves next, free of I/O.
//!
//! [`ServeQueue`] holds every peer's requests for one blob and answers one
//! question: what to send now. It prefers the piece this host has sent
//! fewest times, then the oldest request, and skips peers whose window of
//! sent-but-unacknowledged pieces is full. Like [`Torrent`](super::Torrent)
//! it takes time as a [`Duration`] since any fixed start, so the engine and
//! a simulator drive the same policy.
//!
//! Why: serving one piece at a time at the full upload rate lets each
//! receiver finish a piece sooner and pass it on sooner; least-sent first
//! spreads distinct pieces before duplicates, which keeps a seed's upload
//! near one copy of the blob; and the window (a receiver acknowledges a
//! piece by announcing it) keeps a sender from pouring its upload into
//! socket buffers behind a receiver whose link is already full.

use std::collections::HashMap;
use std::time::Duration;

use kraken_core::{PeerId, PieceIndex};

use super::SchedulerConfig;

/// Requests one peer may have waiting; more are refused as busy. Peers
/// keep at most a pipeline of requests out, so this only stops floods.
const MAX_PENDING_PER_PEER: usize = 64;

#[derive(Debug)]
struct Queued {
    peer: PeerId,
    piece: PieceIndex,
    seq: u64,
}

/// The pending piece requests of one blob and the upload policy over them.
#[derive(Debug)]
pub struct ServeQueue {
    requests: Vec<Queued>,
    sent: Vec<u32>,
    unacked: HashMap<PeerId, Vec<(PieceIndex, Duration)>>,
    seq: u64,
    window: usize,
    ack_timeout: Duration,
}

impl ServeQueue {
    /// Creates the queue of a blob of `pieces` pieces of `piece_length`
    /// bytes; the window is `config.upload_window` bytes, at least two
    /// pieces.
    pub fn new(pieces: u32, piece_length: u64, config: &SchedulerConfig) -> Self {
        let window = (config.upload_window.as_u64() / piece_length.max(1)).max(2) as usize;
        ServeQueue {
            requests: Vec::new(),
            sent: vec![0; pieces as usize],
            unacked: HashMap::new(),
            seq: 0,
            window,
            ack_timeout: config.upload_ack_timeout,
        }
    }

    /// Queues a request; false when the peer already has too many waiting.
    /// A repeated request for the same piece is kept once.
    pub fn request(&mut self, peer: PeerId, piece: PieceIndex) -> bool {
        let waiting = self.requests.iter().filter(|r| r.peer == peer).count();
        if waiting >= MAX_PENDING_PER_PEER {
            return false;
        }
        if !self
            .requests
            .iter()
            .any(|r| r.peer == peer && r.piece == piece)
        {
            self.seq += 1;
            self.requests.push(Queued {
                peer,
                piece,
                seq: self.seq,
            });
        }
        true
    }

    /// Drops a request the peer withdrew.
    pub fn cancel(&mut self, peer: PeerId, piece: PieceIndex) {
        self.requests
            .retain(|r| !(r.peer == peer && r.piece == piece));
    }

    /// Forgets a peer that went away: its requests and its window.
    pub fn forget(&mut self, peer: PeerId) {
        self.requests.retain(|r| r.peer != peer);
        self.unacked.remove(&peer);
    }

    /// Records that `peer` announced `piece`, acknowledging it.
    pub fn acked(&mut self, peer: PeerId, piece: PieceIndex) {
        if let Some(unacked) = self.unacked.get_mut(&peer) {
            unacked.retain(|(p, _)| *p != piece);
        }
    }

    /// Records that `peer` holds every piece.
    pub fn acked_all(&mut self, peer: PeerId) {
        self.unacked.remove(&peer);
    }

    /// Takes the request to serve now: among peers with room in their
    /// window, the piece sent fewest times, then the oldest request. The
    /// caller reports a piece it did send with [`ServeQueue::sent`].
    pub fn next(&mut self, now: Duration) -> Option<(PeerId, PieceIndex)> {
        let timeout = self.ack_timeout;
        for unacked in self.unacked.values_mut() {
            unacked.retain(|(_, at)| now.saturating_sub(*at) < timeout);
        }
        let room = |peer: &PeerId| self.unacked.get(peer).is_none_or(|u| u.len() < self.window);
        let best = self
            .requests
            .iter()
            .enumerate()
            .filter(|(_, r)| room(&r.peer))
            .min_by_key(|(_, r)| (self.sent.get(r.piece.as_usize()).copied(), r.seq))
            .map(|(i, _)| i)?;
        let taken = self.requests.swap_remove(best);
        Some((taken.peer, taken.piece))
    }

    /// Records that `piece` went to `peer`: it counts against the peer's
    /// window until acknowledged, and as one more copy sent.
    pub fn sent(&mut self, now: Duration, peer: PeerId, piece: PieceIndex) {
        self.unacked.entry(peer).or_default().push((piece, now));
        if let Some(n) = self.sent.get_mut(piece.as_usize()) {
            *n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytesize::ByteSize;

    use super::*;

    fn queue(window_pieces: u64) -> ServeQueue {
        let config = SchedulerConfig {
            upload_window: ByteSize(window_pieces * 1024),
            upload_ack_timeout: Duration::from_secs(10),
            ..SchedulerConfig::default()
        };
        ServeQueue::new(8, 1024, &config)
    }

    fn id(n: u8) -> PeerId {
        PeerId::from_bytes([n; 20])
    }

    const T0: Duration = Duration::ZERO;

    #[test]
    fn serves_the_least_sent_piece_first_then_the_oldest() {
        let mut q = queue(4);
        q.request(id(1), PieceIndex(0));
        let (peer, piece) = q.next(T0).unwrap();
        q.sent(T0, peer, piece);
        q.request(id(2), PieceIndex(0));
        q.request(id(3), PieceIndex(5));
        q.request(id(4), PieceIndex(6));
        assert_eq!(
            q.next(T0),
            Some((id(3), PieceIndex(5))),
            "unsent pieces before copies"
        );
        assert_eq!(q.next(T0), Some((id(4), PieceIndex(6))));
        assert_eq!(q.next(T0), Some((id(2), PieceIndex(0))));
        assert_eq!(q.next(T0), None);
    }

    #[test]
    fn a_full_window_holds_a_peer_back_until_it_acknowledges() {
        let mut q = queue(2);
        for i in 0..4 {
            q.request(id(1), PieceIndex(i));
        }
        for _ in 0..2 {
            let (peer, piece) = q.next(T0).unwrap();
            q.sent(T0, peer, piece);
        }
        assert_eq!(q.next(T0), None, "two pieces unacknowledged");
        q.acked(id(1), PieceIndex(0));
        assert!(q.next(T0).is_some());
        assert_eq!(
            q.next(Duration::from_secs(10)).map(|(p, _)| p),
            Some(id(1)),
            "timed out"
        );
    }

    #[test]
    fn cancels_duplicates_and_departures_are_honoured() {
        let mut q = queue(4);
        assert!(q.request(id(1), PieceIndex(1)));
        assert!(q.request(id(1), PieceIndex(1)));
        q.request(id(1), PieceIndex(2));
        q.request(id(2), PieceIndex(3));
        q.cancel(id(1), PieceIndex(1));
        q.forget(id(2));
        assert_eq!(q.next(T0), Some((id(1), PieceIndex(2))));
        assert_eq!(q.next(T0), None);
        for i in 0..MAX_PENDING_PER_PEER as u32 {
            assert!(q.request(id(5), PieceIndex(i % 8 + 8 * (i / 8))));
        }
        assert!(!q.request(id(5), PieceIndex(999)), "a flood is refused");
    }
}
