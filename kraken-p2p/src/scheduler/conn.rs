//! One peer connection after the handshake: a reader that stores pieces and
//! queues the peer's requests with the session's uploader, and a writer
//! that owns the socket's sending half.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kraken_core::{Digest, Error, PeerId};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Verdict;
use super::engine::Inner;
use super::session::Event;
use super::upload::Uploads;
use crate::wire::{
    Frame, FrameReader, FrameWriter, Handshake, RejectReason, WireError, write_handshake,
};

/// A byte stream to a peer: TCP or TLS over TCP.
pub(crate) trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> PeerIo for T {}

/// A boxed [`PeerIo`].
pub(crate) type BoxIo = Box<dyn PeerIo>;

/// Frames queued to one peer before the session stops waiting on it.
const SEND_QUEUE: usize = 64;

/// The session's side of a connection: queue frames to the peer. Dropping
/// it closes the connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) id: u64,
    pub(crate) frames: mpsc::Sender<Frame>,
}

impl ConnHandle {
    /// Queues a frame; a full or closed queue means the connection is
    /// hopeless and is ignored here, since the reader reports the close.
    pub(crate) fn send(&self, frame: Frame) {
        let _ = self.frames.try_send(frame);
    }
}

/// What a connection needs to know about its torrent.
#[derive(Debug, Clone)]
pub(crate) struct ConnContext {
    pub(crate) inner: Arc<Inner>,
    pub(crate) digest: Digest,
    pub(crate) piece_length: u32,
    pub(crate) peer: PeerId,
    /// Whether the peer is an origin (only known for peers we dialled;
    /// origins never dial).
    pub(crate) origin: bool,
    pub(crate) events: mpsc::Sender<Event>,
    /// Cancelled when the session drops the peer or ends.
    pub(crate) cancel: CancellationToken,
    /// The session's queue of piece requests to serve.
    pub(crate) uploads: Arc<Uploads>,
}

/// Starts the tasks of a connection whose peer handshake was read. `reply`,
/// our own handshake for an inbound connection, goes out first.
pub(crate) fn start(ctx: ConnContext, io: BoxIo, reply: Option<Handshake>) -> ConnHandle {
    let id = ctx.inner.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (read, write) = tokio::io::split(io);
    let (frames, frame_rx) = mpsc::channel(SEND_QUEUE);
    ctx.uploads.attach(ctx.peer, id, frames.clone());
    let span = tracing::debug_span!("conn", peer = %ctx.peer, digest = %ctx.digest);
    ctx.inner.connections.fetch_add(1, Ordering::Relaxed);
    let cancel = ctx.cancel.clone();
    let writer = write_loop(ctx.clone(), write, reply, frame_rx);
    let writer = cancel.run_until_cancelled_owned(writer);
    tokio::spawn(writer.instrument(span.clone()));
    let reader = read_loop(ctx, id, read, frames.clone());
    tokio::spawn(reader.instrument(span));
    ConnHandle { id, frames }
}

async fn write_loop(
    ctx: ConnContext,
    mut write: WriteHalf<BoxIo>,
    reply: Option<Handshake>,
    mut frames: mpsc::Receiver<Frame>,
) {
    if let Some(handshake) = reply
        && write_handshake(&mut write, &handshake).await.is_err()
    {
        return;
    }
    let mut writer = FrameWriter::new(write);
    while let Some(frame) = frames.recv().await {
        let sent = match &frame {
            Frame::Piece { data, .. } => Some(data.len() as u64),
            _ => None,
        };
        if let Err(e) = writer.send(&frame).await {
            tracing::debug!(error = %e, "send failed");
            return;
        }
        if let Some(bytes) = sent {
            ctx.inner.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        }
    }
}

async fn read_loop(ctx: ConnContext, id: u64, read: ReadHalf<BoxIo>, frames: mpsc::Sender<Frame>) {
    let mut reader = FrameReader::new(read, ctx.piece_length);
    let result = loop {
        let next = tokio::select! {
            next = reader.next() => next,
            () = ctx.cancel.cancelled() => break Ok(()),
        };
        match next {
            Ok(Some(frame)) => {
                if !handle_frame(&ctx, frame, &frames).await {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = result {
        log_wire_error(&e);
    }
    ctx.cancel.cancel();
    ctx.uploads.detach(ctx.peer, id);
    ctx.inner.connections.fetch_sub(1, Ordering::Relaxed);
    let closed = Event::Closed {
        peer: ctx.peer,
        conn: id,
    };
    let _ = ctx.events.send(closed).await;
}

fn log_wire_error(e: &WireError) {
    match e {
        WireError::Io(_) | WireError::UnexpectedEof => tracing::debug!(error = %e, "closed"),
        _ => tracing::warn!(error = %e, "peer broke the protocol"),
    }
}

/// Handles one frame; false ends the connection.
async fn handle_frame(ctx: &ConnContext, frame: Frame, frames: &mpsc::Sender<Frame>) -> bool {
    let event = match frame {
        Frame::Piece { index, data } => {
            let len = data.len();
            ctx.inner.ingress.acquire(len).await;
            let verdict = match ctx.inner.store.write_piece(&ctx.digest, index, data).await {
                Ok(()) => {
                    ctx.inner.bytes_in.fetch_add(len as u64, Ordering::Relaxed);
                    if ctx.origin {
                        let from_origins = &ctx.inner.bytes_in_from_origins;
                        from_origins.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    Verdict::Valid
                }
                Err(Error::PieceMismatch { .. } | Error::PieceOutOfRange { .. }) => {
                    tracing::warn!(%index, "piece failed verification");
                    Verdict::Invalid
                }
                Err(e) => {
                    tracing::warn!(%index, error = %e, "cannot store piece");
                    return false;
                }
            };
            Event::PieceStored {
                peer: ctx.peer,
                index,
                verdict,
            }
        }
        Frame::Request(index) => {
            if !ctx.uploads.request(ctx.peer, index) {
                let busy = Frame::Reject {
                    index,
                    reason: RejectReason::Busy,
                };
                let _ = frames.try_send(busy);
            }
            return true;
        }
        Frame::Cancel(index) => {
            ctx.uploads.cancel(ctx.peer, index);
            return true;
        }
        Frame::Error(message) => {
            tracing::debug!(%message, "peer closed with an error");
            return false;
        }
        Frame::KeepAlive => return true,
        Frame::HavePiece(index) => {
            ctx.uploads.acked(ctx.peer, index);
            Event::Frame {
                peer: ctx.peer,
                frame: Frame::HavePiece(index),
            }
        }
        Frame::Complete => {
            ctx.uploads.acked_all(ctx.peer);
            Event::Frame {
                peer: ctx.peer,
                frame: Frame::Complete,
            }
        }
        other => Event::Frame {
            peer: ctx.peer,
            frame: other,
        },
    };
    ctx.events.send(event).await.is_ok()
}
