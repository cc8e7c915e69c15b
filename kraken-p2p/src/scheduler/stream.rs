//! Streaming reads: a blob's bytes in order while the swarm still fetches
//! it, so a consumer (a registry client decompressing a layer) works while
//! the download goes on.
//!
//! A stream tells its session which piece it waits for; the torrent fetches
//! that piece and the next few first, and everything else rarest first.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream;
use kraken_core::{BlobStream, ByteRange, Digest, Error, MetaInfo, Namespace, PieceIndex, Result};
use tokio::sync::{mpsc, watch};

use super::engine::Inner;
use super::session::{Event, Phase, View};

/// Bytes per chunk when streaming a blob already cached.
const CHUNK: usize = 256 * 1024;

/// Opens a stream of `range` of a blob, downloading it as needed.
pub(crate) async fn open(
    inner: &Arc<Inner>,
    namespace: &Namespace,
    digest: &Digest,
    range: ByteRange,
) -> Result<BlobStream> {
    if let Ok(reader) = inner.store.open(digest).await {
        let length = reader.len();
        let range = resolve(range, length)?;
        let body = kraken_core::read_range(reader, range.clone(), CHUNK);
        return Ok(BlobStream {
            length,
            range,
            body,
        });
    }
    let handle = inner.download_session(namespace, digest);
    let _ = handle.events.send(Event::Touch).await;
    let mut view = handle.view.clone();
    let meta = {
        let ready = |v: &View| v.meta.is_some() || matches!(v.phase, Phase::Failed(_));
        let v = view
            .wait_for(ready)
            .await
            .map_err(|_| Error::Unavailable(*digest))?;
        if let Phase::Failed(failure) = &v.phase {
            return Err(failure.to_error(digest));
        }
        v.meta.clone().expect("waited for metainfo")
    };
    let length = meta.length();
    let range = resolve(range, length)?;
    let cursor = Cursor {
        events: handle.events,
        id: inner.next_session_id(),
    };
    let reader = Reader {
        inner: inner.clone(),
        meta,
        view,
        cursor,
        next: range.start,
    };
    let end = range.end;
    // Wait for the first bytes before answering, so a blob nobody can
    // serve is an error the caller can still report (a 503, not a 200
    // whose body never comes).
    let mut reader = reader;
    let first = match range.start < end {
        true => Some(reader.read_next(end).await?),
        false => None,
    };
    let rest = stream::unfold(reader, move |mut r| async move {
        if r.next >= end {
            return None;
        }
        let item = r.read_next(end).await;
        if item.is_err() {
            r.next = end;
        }
        Some((item, r))
    });
    let body = stream::iter(first.map(Ok)).chain(rest);
    Ok(BlobStream {
        length,
        range,
        body: body.boxed(),
    })
}

fn resolve(range: ByteRange, length: u64) -> Result<std::ops::Range<u64>> {
    range.resolve(length).ok_or_else(|| {
        let (start, end) = match range {
            ByteRange::From(s) => (s, length),
            ByteRange::Inclusive { start, end } => (start, end.saturating_add(1)),
            ByteRange::Suffix(_) | ByteRange::Full => (0, 0),
        };
        Error::RangeNotSatisfiable { start, end, length }
    })
}

struct Reader {
    inner: Arc<Inner>,
    meta: Arc<MetaInfo>,
    view: watch::Receiver<View>,
    cursor: Cursor,
    next: u64,
}

impl Reader {
    /// Waits for the piece holding `next`, then yields its bytes up to `end`.
    async fn read_next(&mut self, end: u64) -> Result<Bytes> {
        let piece = PieceIndex((self.next / self.meta.piece_length()) as u32);
        self.cursor.at(piece.0);
        let digest = *self.meta.digest();
        let ready = |v: &View| v.have.has(piece) || v.phase != Phase::Downloading;
        let phase = self.view.wait_for(ready).await.map(|v| v.phase.clone());
        if let Ok(Phase::Failed(failure)) = phase {
            return Err(failure.to_error(&digest));
        }
        let data = self.inner.store.read_piece(&digest, piece).await?;
        let start = self
            .meta
            .piece_range(piece)
            .expect("piece within the blob")
            .start;
        let from = (self.next - start) as usize;
        let to = (end.min(start + data.len() as u64) - start) as usize;
        self.next = start + to as u64;
        Ok(data.slice(from..to))
    }
}

/// Tells the session where a reader is, and that it left when dropped.
struct Cursor {
    events: mpsc::Sender<Event>,
    id: u64,
}

impl Cursor {
    fn at(&self, piece: u32) {
        let _ = self.events.try_send(Event::Cursor {
            reader: self.id,
            piece: Some(piece),
        });
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        let _ = self.events.try_send(Event::Cursor {
            reader: self.id,
            piece: None,
        });
    }
}
