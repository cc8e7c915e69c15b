//! Pieces: the fixed-size slices of a blob that peers exchange and verify.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The position of a piece within its blob, counted from zero.
///
/// A `PieceIndex` says nothing about whether a blob has that many pieces;
/// APIs taking one check it against the blob's [`MetaInfo`](crate::MetaInfo).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct PieceIndex(pub u32);

impl PieceIndex {
    /// Returns the index as a `usize`, for indexing slices.
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PieceIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for PieceIndex {
    fn from(i: u32) -> Self {
        PieceIndex(i)
    }
}

/// Which pieces of a blob are present: one bit per piece, most significant
/// bit of the first byte for piece 0, as on the wire.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Bitfield {
    len: u32,
    bits: Vec<u8>,
}

impl Bitfield {
    /// Creates a bitfield of `len` pieces, none present.
    pub fn new(len: u32) -> Self {
        Bitfield {
            len,
            bits: vec![0; byte_len(len)],
        }
    }

    /// Creates a bitfield of `len` pieces, all present.
    pub fn full(len: u32) -> Self {
        let mut field = Bitfield::new(len);
        for i in 0..len {
            field.set(PieceIndex(i));
        }
        field
    }

    /// Rebuilds a bitfield from its packed bytes.
    ///
    /// Returns `None` when `bits` has the wrong length for `len` pieces or
    /// sets a bit past the last piece, so a peer cannot smuggle garbage in.
    pub fn from_bytes(len: u32, bits: &[u8]) -> Option<Self> {
        if bits.len() != byte_len(len) {
            return None;
        }
        let spare = (bits.len() * 8) as u64 - u64::from(len);
        if let Some(last) = bits.last() {
            let mask = (1u16 << spare) as u8 - 1;
            if spare > 0 && last & mask != 0 {
                return None;
            }
        }
        Some(Bitfield {
            len,
            bits: bits.to_vec(),
        })
    }

    /// Returns the packed bytes, as sent on the wire and kept on disk.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Returns the number of pieces the field describes.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Returns true when the blob has no pieces (a zero-length blob).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns whether piece `i` is present; false when out of range.
    pub fn has(&self, i: PieceIndex) -> bool {
        i.0 < self.len && self.bits[i.as_usize() / 8] & mask(i) != 0
    }

    /// Marks piece `i` present.
    ///
    /// # Panics
    ///
    /// When `i` is out of range: callers validate indexes first.
    pub fn set(&mut self, i: PieceIndex) {
        assert!(
            i.0 < self.len,
            "piece {i} out of range for {} pieces",
            self.len
        );
        self.bits[i.as_usize() / 8] |= mask(i);
    }

    /// Marks piece `i` missing; does nothing when out of range.
    pub fn clear(&mut self, i: PieceIndex) {
        if i.0 < self.len {
            self.bits[i.as_usize() / 8] &= !mask(i);
        }
    }

    /// Returns how many pieces are present.
    pub fn count(&self) -> u32 {
        self.bits.iter().map(|b| b.count_ones()).sum()
    }

    /// Returns true when every piece is present.
    pub fn is_complete(&self) -> bool {
        self.count() == self.len
    }

    /// Iterates over the indexes of present pieces, in order.
    pub fn present(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        (0..self.len).map(PieceIndex).filter(|&i| self.has(i))
    }

    /// Iterates over the indexes of missing pieces, in order.
    pub fn missing(&self) -> impl Iterator<Item = PieceIndex> + '_ {
        (0..self.len).map(PieceIndex).filter(|&i| !self.has(i))
    }
}

fn byte_len(len: u32) -> usize {
    (len as usize).div_ceil(8)
}

fn mask(i: PieceIndex) -> u8 {
    0x80 >> (i.0 % 8)
}

impl fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bitfield({}/{})", self.count(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_has_clear_count() {
        let mut b = Bitfield::new(10);
        assert_eq!(b.as_bytes().len(), 2);
        b.set(PieceIndex(0));
        b.set(PieceIndex(9));
        assert!(b.has(PieceIndex(0)) && b.has(PieceIndex(9)) && !b.has(PieceIndex(5)));
        assert!(!b.has(PieceIndex(10)));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count(), 2);
        b.clear(PieceIndex(0));
        assert_eq!(b.present().collect::<Vec<_>>(), [PieceIndex(9)]);
        assert_eq!(b.missing().count(), 9);
        assert!(Bitfield::full(10).is_complete());
        assert!(Bitfield::new(0).is_complete());
    }

    #[test]
    fn from_bytes_rejects_bad_lengths_and_spare_bits() {
        assert!(Bitfield::from_bytes(10, &[0xff]).is_none());
        assert!(Bitfield::from_bytes(10, &[0xff, 0xc0]).is_some());
        assert!(Bitfield::from_bytes(10, &[0xff, 0xe0]).is_none());
        assert!(Bitfield::from_bytes(8, &[0xff]).is_some());
        assert!(Bitfield::from_bytes(0, &[]).is_some());
    }
}
