//! Piece choice for one peer, and the per-piece counters it reads.
//!
//! [`Torrent`](super::Torrent) asks for a piece on every free pipeline
//! slot, and a host of a large swarm does that hundreds of thousands of
//! times per blob. Testing each of a blob's 1,024 to 2,048 pieces one by one
//! made that the costliest step of a download's bookkeeping, so the picker
//! first narrows the field 64 pieces at a time: the peer's bitfield, less
//! the pieces we hold, less (outside endgame) the pieces already asked for.
//! Only the pieces left are weighed, in index order, so the choice is the
//! same as a scan of every piece.

use std::ops::Range;

use kraken_core::{Bitfield, PieceIndex};
use rand::Rng;
use rand::rngs::StdRng;

use super::torrent::Peer;

/// How many connected peers hold each piece, and how many of them are
/// origins.
#[derive(Debug)]
pub(super) struct Availability {
    pub(super) all: Vec<u32>,
    origins: Vec<u32>,
}

impl Availability {
    pub(super) fn new(pieces: u32) -> Self {
        Availability {
            all: vec![0; pieces as usize],
            origins: vec![0; pieces as usize],
        }
    }

    pub(super) fn add(&mut self, piece: PieceIndex, origin: bool) {
        self.all[piece.as_usize()] += 1;
        self.origins[piece.as_usize()] += u32::from(origin);
    }

    pub(super) fn remove(&mut self, piece: PieceIndex, origin: bool) {
        self.all[piece.as_usize()] -= 1;
        self.origins[piece.as_usize()] -= u32::from(origin);
    }

    fn agents(&self, i: u32) -> u32 {
        self.all[i as usize] - self.origins[i as usize]
    }
}

/// How many requests are in flight for each piece, with a bitfield of the
/// pieces that have any, so the picker can skip them a word at a time.
#[derive(Debug)]
pub(super) struct Requested {
    counts: Vec<u32>,
    any: Bitfield,
}

impl Requested {
    pub(super) fn new(pieces: u32) -> Self {
        Requested {
            counts: vec![0; pieces as usize],
            any: Bitfield::new(pieces),
        }
    }

    pub(super) fn add(&mut self, piece: PieceIndex) {
        self.counts[piece.as_usize()] += 1;
        self.any.set(piece);
    }

    pub(super) fn remove(&mut self, piece: PieceIndex) {
        let count = &mut self.counts[piece.as_usize()];
        *count -= 1;
        if *count == 0 {
            self.any.clear(piece);
        }
    }

    fn count(&self, i: u32) -> u32 {
        self.counts[i as usize]
    }
}

/// Piece choice for one peer, over borrowed torrent state.
pub(super) struct Picker<'a> {
    pub(super) have: &'a Bitfield,
    pub(super) availability: &'a Availability,
    pub(super) requested: &'a Requested,
    pub(super) peer: &'a Peer,
    pub(super) endgame: bool,
}

impl Picker<'_> {
    /// Returns whether to ask this peer for piece `i`. Origins are asked
    /// only for pieces no connected agent holds: every byte agents trade
    /// among themselves is a byte the origins need not send, which keeps a
    /// few origins enough for a large swarm.
    pub(super) fn wanted(&self, i: u32) -> bool {
        let piece = PieceIndex(i);
        !self.have.has(piece)
            && self.peer.bitfield.has(piece)
            && !self.peer.asked_for(piece)
            && (self.endgame || self.requested.count(i) == 0)
            && (!self.peer.origin || self.endgame || self.availability.agents(i) == 0)
    }

    /// Iterates, in index order, over exactly the pieces [`Picker::wanted`]
    /// accepts.
    pub(super) fn candidates(&self) -> impl Iterator<Item = u32> + '_ {
        let theirs = self.peer.bitfield.as_bytes();
        let ours = self.have.as_bytes();
        let asked = self.requested.any.as_bytes();
        let words = theirs.len().div_ceil(8);
        (0..words)
            .flat_map(move |w| {
                let mut open = word(theirs, w) & !word(ours, w);
                if !self.endgame {
                    open &= !word(asked, w);
                }
                Ones(open).map(move |bit| (w * 64) as u32 + bit)
            })
            .filter(|&i| self.wanted(i))
    }

    /// Picks the streaming reader's next wanted piece within `window`, or
    /// else the rarest wanted piece, those within `horizon` (the pieces not
    /// far ahead of the reader) before any other; ties are broken at random.
    pub(super) fn choose(
        &self,
        window: Option<Range<u32>>,
        horizon: Option<&Range<u32>>,
        rng: &mut StdRng,
    ) -> Option<PieceIndex> {
        if let Some(i) = window.into_iter().flatten().find(|&i| self.wanted(i)) {
            return Some(PieceIndex(i));
        }
        let beyond = |i: u32| horizon.is_some_and(|h| !h.contains(&i));
        let mut best: Option<((bool, u32), u32)> = None;
        let mut ties = 0u32;
        for i in self.candidates() {
            // In endgame, prefer pieces with the fewest requests out.
            let rarity = self.availability.all[i as usize] + self.requested.count(i) * 1024;
            let key = (beyond(i), rarity);
            match best {
                Some((k, _)) if key > k => {}
                Some((k, _)) if key == k => {
                    ties += 1;
                    if rng.random_range(0..=ties) == 0 {
                        best = Some((key, i));
                    }
                }
                _ => {
                    best = Some((key, i));
                    ties = 0;
                }
            }
        }
        best.map(|(_, i)| PieceIndex(i))
    }
}

/// Returns the `w`th 64-piece word of a bitfield's bytes, piece `64 * w`
/// in the most significant bit; missing bytes past the end read as zero.
fn word(bytes: &[u8], w: usize) -> u64 {
    let start = (w * 8).min(bytes.len());
    let end = (start + 8).min(bytes.len());
    let mut buf = [0; 8];
    buf[..end - start].copy_from_slice(&bytes[start..end]);
    u64::from_be_bytes(buf)
}

/// The positions of the set bits of a word, most significant first.
struct Ones(u64);

impl Iterator for Ones {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.leading_zeros();
        self.0 &= !(1 << (63 - bit));
        Some(bit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn field(pieces: u32, bits: &[bool]) -> Bitfield {
        let mut field = Bitfield::new(pieces);
        (0..pieces)
            .filter(|&i| bits[i as usize])
            .for_each(|i| field.set(PieceIndex(i)));
        field
    }

    proptest! {
        /// The word-wise candidates are exactly the pieces a one-by-one
        /// scan with `wanted` finds, in the same order.
        #[test]
        fn candidates_match_a_scan_of_every_piece(
            pieces in 1u32..200,
            bits in proptest::collection::vec(0u8..16, 200),
            asked in proptest::collection::vec(0u32..200, 0..4),
            origin: bool,
            endgame: bool,
        ) {
            let bit = |k: u8| bits.iter().map(move |b| b & k != 0).collect::<Vec<_>>();
            let have = field(pieces, &bit(1));
            let theirs = field(pieces, &bit(2));
            let mut availability = Availability::new(pieces);
            let mut requested = Requested::new(pieces);
            for i in 0..pieces {
                if bits[i as usize] & 4 != 0 {
                    availability.add(PieceIndex(i), false);
                }
                if bits[i as usize] & 8 != 0 {
                    requested.add(PieceIndex(i));
                }
            }
            let inflight = asked
                .iter()
                .filter(|&&i| i < pieces)
                .map(|&i| (PieceIndex(i), Duration::ZERO))
                .collect();
            let peer = Peer { bitfield: theirs, origin, inflight, last_progress: Duration::ZERO };
            let picker = Picker {
                have: &have,
                availability: &availability,
                requested: &requested,
                peer: &peer,
                endgame,
            };
            let fast: Vec<u32> = picker.candidates().collect();
            let slow: Vec<u32> = (0..pieces).filter(|&i| picker.wanted(i)).collect();
            prop_assert_eq!(fast, slow);
        }
    }
}
