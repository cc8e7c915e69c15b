//! Metainfo decoding: arbitrary bytes either fail cleanly or decode to a
//! metainfo whose canonical encoding is exactly those bytes.
//!
//! Peers agree on a torrent by the hash of that encoding, so if two byte
//! strings decoded to the same metainfo, one blob could have two identities.

#![no_main]

use kraken_core::{Digest, InfoHash, MetaInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = MetaInfo::from_bytes(data) else {
        return;
    };
    assert_eq!(info.to_bytes(), data);

    let expected = Digest::sha256_of(data);
    let expected: [u8; 32] = expected.as_bytes().try_into().expect("sha256 is 32 bytes");
    assert_eq!(info.info_hash(), InfoHash::from_bytes(expected));
    assert!(info.piece_count() == 0 || info.piece_length() > 0);
});
