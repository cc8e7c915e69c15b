//! The upload task of a session: serves the requests a [`ServeQueue`]
//! picks, one piece at a time, within the host's egress cap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kraken_core::{Digest, Error, MetaInfo, PeerId, PieceIndex};
use tokio::sync::{Notify, mpsc};

use super::engine::Inner;
use super::serve::ServeQueue;
use super::session::Event;
use crate::wire::{Frame, RejectReason};

/// Where pieces for a peer go: its current connection's frame queue.
#[derive(Debug)]
struct Outlet {
    conn: u64,
    frames: mpsc::Sender<Frame>,
}

/// A blob's serve queue, shared by its connections and its upload task.
#[derive(Debug)]
pub(crate) struct Uploads {
    queue: Mutex<ServeQueue>,
    outlets: Mutex<HashMap<PeerId, Outlet>>,
    wake: Notify,
}

impl Uploads {
    pub(crate) fn new(queue: ServeQueue) -> Arc<Self> {
        Arc::new(Uploads {
            queue: Mutex::new(queue),
            outlets: Mutex::default(),
            wake: Notify::new(),
        })
    }

    fn queue(&self) -> MutexGuard<'_, ServeQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn outlets(&self) -> MutexGuard<'_, HashMap<PeerId, Outlet>> {
        self.outlets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends pieces for `peer` to connection `conn` from now on.
    pub(crate) fn attach(&self, peer: PeerId, conn: u64, frames: mpsc::Sender<Frame>) {
        self.outlets().insert(peer, Outlet { conn, frames });
    }

    /// Forgets connection `conn` of `peer` and everything it asked for,
    /// unless a newer connection of the peer took its place.
    pub(crate) fn detach(&self, peer: PeerId, conn: u64) {
        let mut outlets = self.outlets();
        if outlets.get(&peer).is_some_and(|o| o.conn == conn) {
            outlets.remove(&peer);
            self.queue().forget(peer);
        }
    }

    /// Queues a request; false when the peer has too many waiting.
    pub(crate) fn request(&self, peer: PeerId, piece: PieceIndex) -> bool {
        let queued = self.queue().request(peer, piece);
        self.wake.notify_one();
        queued
    }

    /// Drops a request the peer withdrew.
    pub(crate) fn cancel(&self, peer: PeerId, piece: PieceIndex) {
        self.queue().cancel(peer, piece);
    }

    /// Records the peer's acknowledgement of a piece (its announce).
    pub(crate) fn acked(&self, peer: PeerId, piece: PieceIndex) {
        self.queue().acked(peer, piece);
        self.wake.notify_one();
    }

    /// Records that the peer holds every piece.
    pub(crate) fn acked_all(&self, peer: PeerId) {
        self.queue().acked_all(peer);
        self.wake.notify_one();
    }

    async fn next(&self, inner: &Inner) -> (PeerId, PieceIndex) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some(next) = self.queue().next(inner.now()) {
                return next;
            }
            // Windows also reopen when acknowledgements time out.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), woken).await;
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
        let (peer, piece) = uploads.next(&inner).await;
        let frame = piece_frame(&inner, &meta, &digest, piece).await;
        let is_piece = matches!(frame, Frame::Piece { .. });
        let delivered = match uploads.outlets().get(&peer) {
            Some(outlet) => outlet.frames.try_send(frame).is_ok(),
            None => false,
        };
        if delivered && is_piece {
            uploads.queue().sent(inner.now(), peer, piece);
            let _ = events.try_send(Event::PieceSent { peer });
        }
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
