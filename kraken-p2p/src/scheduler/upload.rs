//! The upload side of a session: every peer's piece requests in one queue,
//! served one piece at a time, the piece sent fewest times first.
//!
//! Serving pieces one after another at the full upload rate, rather than
//! splitting the rate across every connection, lets each receiver finish a
//! piece sooner and pass it on sooner. Preferring the piece this host has
//! sent least spreads distinct pieces into the swarm before duplicates,
//! which keeps a seed's upload close to one copy of the blob.
//!
//! Each connection may have only a small window of pieces sent but not yet
//! acknowledged (the receiver announces every piece it stores, which is the
//! acknowledgement). Pieces written to a socket can sit in kernel buffers
//! for seconds behind a receiver's saturated link; the window keeps a
//! sender from pouring its upload into such a queue and sends it to the
//! peers that actually drain instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kraken_core::{Digest, Error, MetaInfo, PeerId, PieceIndex};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::SchedulerConfig;
use super::engine::Inner;
use super::session::Event;
use crate::wire::{Frame, RejectReason};

/// Requests one peer may have waiting; more are refused as busy. Peers
/// keep at most a pipeline of requests out, so this only stops floods.
const MAX_PENDING_PER_PEER: usize = 64;

/// Where pieces for one connection go, and which of them the receiver has
/// not acknowledged yet.
#[derive(Debug, Clone)]
pub(crate) struct Outlet {
    pub(crate) frames: mpsc::Sender<Frame>,
    unacked: Arc<Mutex<Vec<(PieceIndex, Instant)>>>,
}

impl Outlet {
    pub(crate) fn new(frames: mpsc::Sender<Frame>) -> Self {
        Outlet {
            frames,
            unacked: Arc::default(),
        }
    }

    fn unacked(&self) -> std::sync::MutexGuard<'_, Vec<(PieceIndex, Instant)>> {
        self.unacked.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn has_room(&self, window: usize, ack_timeout: Duration, now: Instant) -> bool {
        let mut unacked = self.unacked();
        unacked.retain(|(_, at)| now.duration_since(*at) < ack_timeout);
        unacked.len() < window
    }
}

#[derive(Debug)]
struct Request {
    peer: PeerId,
    piece: PieceIndex,
    seq: u64,
    outlet: Outlet,
}

#[derive(Debug, Default)]
struct Queue {
    requests: Vec<Request>,
    sent: Vec<u32>,
    seq: u64,
    /// Pieces a connection may have unacknowledged.
    window: usize,
    ack_timeout: Duration,
}

/// The pending piece requests of one blob.
#[derive(Debug, Default)]
pub(crate) struct Uploads {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Uploads {
    /// Creates the queue of a blob of `pieces` pieces of `piece_length`
    /// bytes.
    pub(crate) fn new(pieces: u32, piece_length: u64, config: &SchedulerConfig) -> Arc<Self> {
        let window = (config.upload_window.as_u64() / piece_length.max(1)).max(2) as usize;
        let queue = Queue {
            sent: vec![0; pieces as usize],
            window,
            ack_timeout: config.upload_ack_timeout,
            ..Queue::default()
        };
        Arc::new(Uploads {
            queue: Mutex::new(queue),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a request; false when the peer already has too many waiting.
    pub(crate) fn request(&self, peer: PeerId, piece: PieceIndex, outlet: &Outlet) -> bool {
        let mut queue = self.lock();
        let waiting = queue.requests.iter().filter(|r| r.peer == peer).count();
        if waiting >= MAX_PENDING_PER_PEER {
            return false;
        }
        let duplicate = queue
            .requests
            .iter()
            .any(|r| r.peer == peer && r.piece == piece);
        if !duplicate {
            queue.seq += 1;
            let seq = queue.seq;
            queue.requests.push(Request {
                peer,
                piece,
                seq,
                outlet: outlet.clone(),
            });
        }
        drop(queue);
        self.wake.notify_one();
        true
    }

    /// Drops a request the peer withdrew.
    pub(crate) fn cancel(&self, peer: PeerId, piece: PieceIndex) {
        self.lock()
            .requests
            .retain(|r| !(r.peer == peer && r.piece == piece));
    }

    /// Drops every request of a peer that went away.
    pub(crate) fn forget(&self, peer: PeerId) {
        self.lock().requests.retain(|r| r.peer != peer);
    }

    /// Records that the receiver announced `piece`, acknowledging it.
    pub(crate) fn acked(&self, outlet: &Outlet, piece: PieceIndex) {
        outlet.unacked().retain(|(p, _)| *p != piece);
        self.wake.notify_one();
    }

    /// Records that the receiver holds every piece.
    pub(crate) fn acked_all(&self, outlet: &Outlet) {
        outlet.unacked().clear();
        self.wake.notify_one();
    }

    /// Takes the request to serve next: among connections with room, the
    /// piece sent fewest times, then the oldest request.
    fn take(&self) -> Option<Request> {
        let now = Instant::now();
        let mut queue = self.lock();
        let (sent, window, timeout) = (&queue.sent, queue.window, queue.ack_timeout);
        let best = queue
            .requests
            .iter()
            .enumerate()
            .filter(|(_, r)| r.outlet.has_room(window, timeout, now))
            .min_by_key(|(_, r)| (sent.get(r.piece.as_usize()).copied(), r.seq))
            .map(|(i, _)| i)?;
        Some(queue.requests.swap_remove(best))
    }

    fn count_sent(&self, piece: PieceIndex) {
        if let Some(n) = self.lock().sent.get_mut(piece.as_usize()) {
            *n += 1;
        }
    }

    async fn next(&self) -> Request {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(request) = self.take() {
                return request;
            }
            woken.await;
        }
    }
}

/// Serves a blob's queued requests until the session ends.
pub(crate) async fn serve(
    uploads: Arc<Uploads>,
    inner: Arc<Inner>,
    meta: Arc<MetaInfo>,
    events: mpsc::Sender<Event>,
) {
    let digest = *meta.digest();
    loop {
        let request = uploads.next().await;
        let frame = piece_frame(&inner, &meta, &digest, request.piece).await;
        let is_piece = matches!(frame, Frame::Piece { .. });
        if request.outlet.frames.try_send(frame).is_err() || !is_piece {
            continue;
        }
        request
            .outlet
            .unacked()
            .push((request.piece, Instant::now()));
        uploads.count_sent(request.piece);
        let _ = events.try_send(Event::PieceSent { peer: request.peer });
    }
}

/// Reads a piece and waits until the egress cap allows its bytes, or says
/// why it cannot be served.
async fn piece_frame(inner: &Inner, meta: &MetaInfo, digest: &Digest, index: PieceIndex) -> Frame {
    if index.0 >= meta.piece_count() {
        return Frame::Reject {
            index,
            reason: RejectReason::Invalid,
        };
    }
    match inner.store.read_piece(digest, index).await {
        Ok(data) => {
            inner.egress.acquire(data.len()).await;
            Frame::Piece { index, data }
        }
        Err(Error::PieceOutOfRange { .. }) => Frame::Reject {
            index,
            reason: RejectReason::Invalid,
        },
        Err(e) => {
            tracing::trace!(%index, error = %e, "cannot serve piece");
            Frame::Reject {
                index,
                reason: RejectReason::NotAvailable,
            }
        }
    }
}
