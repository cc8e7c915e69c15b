//! The wire protocol: round trips, hard limits and hostile input.

use bytes::Bytes;
use kraken_core::{Algorithm, Bitfield, Digest, InfoHash, Namespace, PeerId, PieceIndex};
use kraken_p2p::wire::{
    Frame, FrameReader, FrameWriter, Handshake, RejectReason, WireError, read_handshake,
    write_handshake,
};
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

const PIECE: u32 = 64 * 1024;

fn frame_strategy() -> impl Strategy<Value = Frame> {
    let index = any::<u32>().prop_map(PieceIndex);
    let reason = prop_oneof![
        Just(RejectReason::NotAvailable),
        Just(RejectReason::Busy),
        Just(RejectReason::Invalid)
    ];
    prop_oneof![
        Just(Frame::KeepAlive),
        Just(Frame::Complete),
        index.clone().prop_map(Frame::HavePiece),
        index.clone().prop_map(Frame::Request),
        index.clone().prop_map(Frame::Cancel),
        (index.clone(), reason).prop_map(|(index, reason)| Frame::Reject { index, reason }),
        "[a-z ]{0,40}".prop_map(Frame::Error),
        (index, proptest::collection::vec(any::<u8>(), 0..2000)).prop_map(|(index, data)| {
            Frame::Piece {
                index,
                data: data.into(),
            }
        }),
    ]
}

fn handshake_strategy() -> impl Strategy<Value = Handshake> {
    (
        any::<[u8; 32]>(),
        any::<[u8; 20]>(),
        any::<bool>(),
        "[a-z]{1,8}(/[a-z0-9][a-z0-9._-]{0,7}){0,3}",
        0u32..300,
    )
        .prop_map(|(info, peer, sha512, ns, pieces)| {
            let algorithm = if sha512 {
                Algorithm::Sha512
            } else {
                Algorithm::Sha256
            };
            let mut bitfield = Bitfield::new(pieces);
            for i in (0..pieces).step_by(3) {
                bitfield.set(PieceIndex(i));
            }
            Handshake {
                info_hash: InfoHash::from_bytes(info),
                digest: Digest::of(algorithm, &info),
                peer_id: PeerId::from_bytes(peer),
                namespace: Namespace::new(ns).unwrap(),
                bitfield,
            }
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #[test]
    fn frames_round_trip_through_a_stream(frames in proptest::collection::vec(frame_strategy(), 0..20)) {
        runtime().block_on(async {
            let (a, b) = tokio::io::duplex(4096);
            let sent = frames.clone();
            let writer = tokio::spawn(async move {
                let mut w = FrameWriter::new(a);
                for f in &sent {
                    w.send(f).await.unwrap();
                }
            });
            let mut r = FrameReader::new(b, PIECE);
            let mut got = Vec::new();
            while let Some(f) = r.next().await.unwrap() {
                got.push(f);
            }
            writer.await.unwrap();
            assert_eq!(got, frames);
        });
    }

    #[test]
    fn handshakes_round_trip(h in handshake_strategy()) {
        let bytes = h.to_bytes();
        let decoded = runtime().block_on(read_handshake(&mut &bytes[..])).unwrap();
        prop_assert_eq!(decoded, h);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        runtime().block_on(async {
            let _ = read_handshake(&mut &bytes[..]).await;
            let mut r = FrameReader::new(&bytes[..], PIECE);
            while let Ok(Some(_)) = r.next().await {}
        });
    }
}

async fn first_frame(bytes: &[u8]) -> Result<Option<Frame>, WireError> {
    FrameReader::new(bytes, PIECE).next().await
}

#[tokio::test]
async fn oversized_piece_frames_are_refused_before_allocation() {
    let mut header = (PIECE + 6).to_be_bytes().to_vec();
    header.extend_from_slice(&[3, 0, 0, 0, 1]);
    let err = first_frame(&header).await.unwrap_err();
    assert!(
        matches!(err, WireError::TooLong { what: "frame", .. }),
        "{err}"
    );
    let mut control = u32::MAX.to_be_bytes().to_vec();
    control.push(1);
    assert!(matches!(
        first_frame(&control).await,
        Err(WireError::TooLong { .. })
    ));
    let exact = Frame::Piece {
        index: PieceIndex(0),
        data: Bytes::from(vec![7; PIECE as usize]),
    };
    assert_eq!(first_frame(&exact.to_bytes()).await.unwrap(), Some(exact));
}

#[tokio::test]
async fn malformed_frames_are_errors() {
    let cases: &[(&[u8], &str)] = &[
        (&[0, 0, 0, 1, 99], "unknown kind"),
        (&[0, 0, 0, 0, 1], "zero length"),
        (&[0, 0, 0, 3, 1, 0, 0], "short index"),
        (&[0, 0, 0, 6, 1, 0, 0, 0, 1, 9], "trailing byte"),
        (&[0, 0, 0, 6, 4, 0, 0, 0, 1, 9], "bad reject reason"),
        (
            &[0, 0, 0, 5, 7, 0, 9, b'h', b'i'],
            "message longer than frame",
        ),
        (&[0, 0, 0, 5, 7, 0, 2, 0xff, 0xfe], "message not utf-8"),
        (&[0, 0, 0, 9, 2, 0], "eof mid-frame"),
    ];
    for (bytes, what) in cases {
        assert!(first_frame(bytes).await.is_err(), "{what} must be rejected");
    }
    assert!(matches!(
        first_frame(&[0, 0, 0, 1, 200]).await,
        Err(WireError::UnknownKind(200))
    ));
    assert!(matches!(
        first_frame(&[0, 0]).await,
        Err(WireError::UnexpectedEof)
    ));
    assert_eq!(first_frame(&[]).await.unwrap(), None);
}

#[tokio::test]
async fn long_error_messages_are_truncated_not_rejected() {
    let frame = Frame::Error("é".repeat(1000));
    match first_frame(&frame.to_bytes()).await.unwrap() {
        Some(Frame::Error(m)) => assert!(m.len() <= 512 && m.chars().all(|c| c == 'é')),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn bad_handshakes_are_errors() {
    let good = Handshake {
        info_hash: InfoHash::from_bytes([1; 32]),
        digest: Digest::sha256_of(b"x"),
        peer_id: PeerId::from_bytes([2; 20]),
        namespace: Namespace::new("library/ubuntu").unwrap(),
        bitfield: Bitfield::full(10),
    }
    .to_bytes();
    let mut magic = good.to_vec();
    magic[0] = b'X';
    assert!(matches!(
        read_handshake(&mut &magic[..]).await,
        Err(WireError::BadMagic)
    ));
    let mut version = good.to_vec();
    version[4] = 2;
    assert!(matches!(
        read_handshake(&mut &version[..]).await,
        Err(WireError::UnsupportedVersion(2))
    ));
    let mut huge = good.to_vec();
    huge[5..9].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        read_handshake(&mut &huge[..]).await,
        Err(WireError::TooLong { .. })
    ));
    let truncated = &good[..good.len() - 1];
    assert!(matches!(
        read_handshake(&mut &truncated[..]).await,
        Err(WireError::UnexpectedEof)
    ));
    let mut spare_bits = good.to_vec();
    *spare_bits.last_mut().unwrap() |= 0x01;
    assert!(matches!(
        read_handshake(&mut &spare_bits[..]).await,
        Err(WireError::Malformed("bitfield"))
    ));
    let ns_at = 9 + 32 + 20 + 1 + 32 + 1;
    let mut bad_ns = good.to_vec();
    bad_ns[ns_at..ns_at + 3].copy_from_slice(b"../");
    assert!(matches!(
        read_handshake(&mut &bad_ns[..]).await,
        Err(WireError::Malformed("namespace"))
    ));
}

#[tokio::test]
async fn handshake_then_frames_on_one_stream() {
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let hs = Handshake {
        info_hash: InfoHash::from_bytes([3; 32]),
        digest: Digest::sha256_of(b"y"),
        peer_id: PeerId::random(),
        namespace: Namespace::new("ns").unwrap(),
        bitfield: Bitfield::new(3),
    };
    write_handshake(&mut a, &hs).await.unwrap();
    let mut w = FrameWriter::new(a);
    w.send(&Frame::Request(PieceIndex(2))).await.unwrap();
    w.into_inner().shutdown().await.unwrap();
    let mut b = b;
    assert_eq!(read_handshake(&mut b).await.unwrap(), hs);
    let mut r = FrameReader::new(b, PIECE);
    assert_eq!(r.next().await.unwrap(), Some(Frame::Request(PieceIndex(2))));
    assert_eq!(r.next().await.unwrap(), None);
}
