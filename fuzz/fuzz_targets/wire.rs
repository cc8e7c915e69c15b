//! Peer wire input: arbitrary bytes read as a handshake and then as frames
//! either fail cleanly or decode to messages that re-encode to an equal
//! message. Peers are untrusted, so nothing here may panic or allocate
//! beyond the protocol's limits.

#![no_main]

use futures::executor::block_on;
use kraken_p2p::wire::{Frame, FrameReader, Handshake, read_handshake};
use libfuzzer_sys::fuzz_target;

/// A small piece length keeps the limit on piece frames within reach.
const PIECE_LENGTH: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let mut input = data;
    if let Ok(handshake) = block_on(read_handshake(&mut input)) {
        let again = block_on(read_handshake(&mut &handshake.to_bytes()[..]));
        assert_eq!(again.expect("re-encoded handshake decodes"), handshake);
    }

    let mut reader = FrameReader::new(data, PIECE_LENGTH);
    while let Ok(Some(frame)) = block_on(reader.next()) {
        if let Frame::Piece { data, .. } = &frame {
            assert!(data.len() <= PIECE_LENGTH as usize);
        }
        let bytes = frame.to_bytes();
        let mut again = FrameReader::new(&bytes[..], u32::MAX - 8);
        assert_eq!(
            block_on(again.next()).expect("re-encoded frame decodes"),
            Some(frame)
        );
    }
    let _ = Handshake::decode_body(data.to_vec().into());
});
