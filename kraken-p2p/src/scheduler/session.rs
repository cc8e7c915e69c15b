//! One blob's task: it owns the blob's [`Torrent`] state machine, its
//! connections and its announces, and turns events from them into actions.
//!
//! A session starts when a host asks for a blob (it resolves the metainfo,
//! then downloads) or when a peer asks us for a blob we hold (it seeds). It
//! ends when its download fails or is cancelled, or after it has seeded
//! with nobody connected for the seed idle timeout.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kraken_core::{Bitfield, Digest, Error, MetaInfo, Namespace, PeerId, PeerInfo, PieceIndex};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::conn::{self, BoxIo, ConnContext, ConnHandle};
use super::engine::Inner;
use super::serve::ServeQueue;
use super::upload::{self, Uploads};
use super::{Action, Torrent, Verdict};
use crate::tracker::{AnnounceRequest, AnnounceResponse};
use crate::wire::{Frame, Handshake};

/// How often time-driven decisions (timeouts, idle peers) are made.
pub(crate) const TICK: Duration = Duration::from_millis(250);

/// Bounds on the announce interval a tracker may ask for.
pub(crate) const MIN_ANNOUNCE: Duration = Duration::from_millis(100);
pub(crate) const MAX_ANNOUNCE: Duration = Duration::from_secs(60);

/// Something that happened to a session, sent to its task.
pub(crate) enum Event {
    /// A peer connected to us and sent its handshake.
    Inbound { handshake: Handshake, io: BoxIo },
    /// A dial finished both handshakes; `sent` is the bitfield we sent.
    Dialed {
        peer: PeerInfo,
        handshake: Handshake,
        io: BoxIo,
        sent: Bitfield,
    },
    /// A dial failed.
    DialFailed { peer: PeerId },
    /// A control frame from a peer.
    Frame { peer: PeerId, frame: Frame },
    /// A piece from a peer was checked and, when valid, stored.
    PieceStored {
        peer: PeerId,
        index: PieceIndex,
        verdict: Verdict,
    },
    /// We sent a piece to a peer.
    PieceSent { peer: PeerId },
    /// A connection ended.
    Closed { peer: PeerId, conn: u64 },
    /// An announce returned.
    Announced(Result<AnnounceResponse, Error>),
    /// A streaming reader moved on (or left, with `None`).
    Cursor { reader: u64, piece: Option<u32> },
    /// A host used the blob; seeding goes on.
    Touch,
    /// The host gave up on the download.
    Cancel,
}

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    Resolving,
    Downloading,
    Complete,
    Failed(Failure),
}

/// Why a session failed, in a form every waiter can hold a copy of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    NotFound,
    Unavailable(String),
    Cancelled,
    Timeout(String),
    /// The bytes or the metainfo the swarm delivered are of another blob.
    Mismatch {
        expected: Digest,
        actual: Digest,
    },
    Store(String),
}

impl Failure {
    pub(crate) fn to_error(&self, digest: &Digest) -> Error {
        match self {
            Failure::NotFound => Error::NotFound(*digest),
            Failure::Unavailable(_) => Error::Unavailable(*digest),
            Failure::Cancelled => Error::Cancelled,
            Failure::Timeout(why) => Error::Timeout(why.clone()),
            Failure::Mismatch { expected, actual } => Error::DigestMismatch {
                expected: *expected,
                actual: *actual,
            },
            Failure::Store(why) => Error::Io(std::io::Error::other(why.clone())),
        }
    }

    fn from_error(e: &Error) -> Self {
        match e {
            Error::NotFound(_) => Failure::NotFound,
            Error::Cancelled => Failure::Cancelled,
            Error::Timeout(why) => Failure::Timeout(why.clone()),
            Error::DigestMismatch { expected, actual } => Failure::Mismatch {
                expected: *expected,
                actual: *actual,
            },
            Error::Unavailable(_) | Error::Backend(_) => Failure::Unavailable(e.to_string()),
            _ => Failure::Store(e.to_string()),
        }
    }
}

/// What waiters and streams see of a session.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) meta: Option<Arc<MetaInfo>>,
    pub(crate) have: Bitfield,
    pub(crate) phase: Phase,
}

/// The engine's handle on a running session.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub(crate) id: u64,
    pub(crate) events: mpsc::Sender<Event>,
    pub(crate) view: watch::Receiver<View>,
}

struct Conn {
    handle: ConnHandle,
    cancel: CancellationToken,
}

struct Session {
    inner: Arc<Inner>,
    id: u64,
    namespace: Namespace,
    digest: Digest,
    meta: Arc<MetaInfo>,
    torrent: Torrent,
    events: mpsc::Sender<Event>,
    view: watch::Sender<View>,
    cancel: CancellationToken,
    uploads: Arc<Uploads>,
    conns: HashMap<PeerId, Conn>,
    dialing: HashSet<PeerId>,
    cursors: HashMap<u64, u32>,
    announcing: bool,
    next_announce: Duration,
    interval: Duration,
    last_progress: Duration,
    last_use: Duration,
    /// Last time the session had a peer connected (or started).
    last_connected: Duration,
}

/// Starts a session for `digest`; with `meta` it seeds a blob the store
/// holds, without it resolves the metainfo and downloads.
pub(crate) fn spawn(
    inner: Arc<Inner>,
    namespace: Namespace,
    digest: Digest,
    meta: Option<Arc<MetaInfo>>,
) -> SessionHandle {
    let id = inner.next_session_id();
    let (events, rx) = mpsc::channel(1024);
    let phase = if meta.is_some() {
        Phase::Complete
    } else {
        Phase::Resolving
    };
    let have = meta
        .as_ref()
        .map(|m| Bitfield::full(m.piece_count()))
        .unwrap_or_default();
    let (view, view_rx) = watch::channel(View {
        meta: meta.clone(),
        have,
        phase,
    });
    let span = tracing::info_span!("blob", %digest, %namespace);
    let task = run(inner, id, namespace, digest, meta, events.clone(), rx, view);
    tokio::spawn(task.instrument(span));
    SessionHandle {
        id,
        events,
        view: view_rx,
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    inner: Arc<Inner>,
    id: u64,
    namespace: Namespace,
    digest: Digest,
    meta: Option<Arc<MetaInfo>>,
    events: mpsc::Sender<Event>,
    mut rx: mpsc::Receiver<Event>,
    view: watch::Sender<View>,
) {
    let cancel = inner.shutdown.child_token();
    let started = match meta {
        Some(meta) => Ok((meta.clone(), Bitfield::full(meta.piece_count()))),
        None => tokio::select! {
            r = resolve(&inner, &namespace, &digest) => r,
            () = cancel.cancelled() => Err(Failure::Cancelled),
        },
    };
    let (meta, have) = match started {
        Ok(started) => started,
        Err(failure) => {
            tracing::debug!(?failure, "cannot start download");
            view.send_modify(|v| v.phase = Phase::Failed(failure));
            inner.remove_session(&digest, id);
            return;
        }
    };
    let rng = StdRng::from_rng(&mut rand::rng());
    let torrent = Torrent::new(inner.config.clone(), meta.piece_length(), have.clone(), rng);
    let now = inner.now();
    let queue = ServeQueue::new(meta.piece_count(), meta.piece_length(), &inner.config);
    let uploads = Uploads::new(queue);
    let uploader = upload::serve(uploads.clone(), inner.clone(), meta.clone(), events.clone());
    tokio::spawn(
        cancel
            .clone()
            .run_until_cancelled_owned(uploader)
            .in_current_span(),
    );
    let mut session = Session {
        uploads,
        interval: inner.config.announce_interval,
        inner,
        id,
        namespace,
        digest,
        meta,
        torrent,
        events,
        view,
        cancel,
        conns: HashMap::new(),
        dialing: HashSet::new(),
        cursors: HashMap::new(),
        announcing: false,
        next_announce: now,
        last_progress: now,
        last_use: now,
        last_connected: now,
    };
    session.view.send_modify(|v| {
        v.meta = Some(session.meta.clone());
        v.have = have;
        if v.phase == Phase::Resolving {
            v.phase = Phase::Downloading;
        }
    });
    session.run(&mut rx).await;
    session.close_all();
    session.inner.remove_session(&session.digest, session.id);
}

/// Fetches the metainfo and creates or resumes the download.
async fn resolve(
    inner: &Inner,
    namespace: &Namespace,
    digest: &Digest,
) -> Result<(Arc<MetaInfo>, Bitfield), Failure> {
    let meta = match inner.store.metainfo(digest).await {
        Ok(meta) => meta,
        Err(_) => fetch_metainfo(inner, namespace, digest).await?,
    };
    if meta.digest() != digest {
        tracing::warn!(actual = %meta.digest(), "tracker returned metainfo of another blob");
        let (expected, actual) = (*digest, *meta.digest());
        return Err(Failure::Mismatch { expected, actual });
    }
    let have = inner
        .store
        .start_download(&meta)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    Ok((Arc::new(meta), have))
}

/// Asks the tracker for metainfo, retrying while the answer is "not yet"
/// (an origin is still reading the blob from its backend).
async fn fetch_metainfo(
    inner: &Inner,
    namespace: &Namespace,
    digest: &Digest,
) -> Result<MetaInfo, Failure> {
    let deadline = inner.now() + inner.config.download_idle_timeout;
    let mut wait = Duration::from_millis(100);
    loop {
        match inner.tracker.metainfo(namespace, digest).await {
            Ok(meta) => return Ok(meta),
            Err(Error::NotFound(_)) => return Err(Failure::NotFound),
            Err(e) if inner.now() + wait >= deadline => {
                return Err(Failure::Unavailable(e.to_string()));
            }
            Err(e) => tracing::debug!(error = %e, "metainfo not ready; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

impl Session {
    async fn run(&mut self, rx: &mut mpsc::Receiver<Event>) {
        self.check_complete().await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = rx.recv() => {
                    let Some(event) = event else { return };
                    if !self.handle(event).await {
                        return;
                    }
                }
                _ = tick.tick() => {
                    if !self.on_tick() {
                        return;
                    }
                }
                () = self.cancel.cancelled() => return,
            }
            self.check_complete().await;
            if matches!(self.phase(), Phase::Failed(_)) {
                return;
            }
        }
    }

    fn phase(&self) -> Phase {
        self.view.borrow().phase.clone()
    }

    fn fail(&mut self, failure: Failure) {
        tracing::info!(?failure, "download failed");
        self.view.send_modify(|v| v.phase = Phase::Failed(failure));
    }

    /// Handles one event; false ends the session.
    async fn handle(&mut self, event: Event) -> bool {
        let now = self.inner.now();
        let actions = match event {
            Event::Inbound { handshake, io } => self.inbound(now, handshake, io),
            Event::Dialed {
                peer,
                handshake,
                io,
                sent,
            } => self.dialed(now, &peer, handshake, io, &sent),
            Event::DialFailed { peer } => {
                self.dialing.remove(&peer);
                self.torrent.blacklist(peer, now);
                Vec::new()
            }
            Event::Frame { peer, frame } => self.frame(now, peer, &frame),
            Event::PieceStored {
                peer,
                index,
                verdict,
            } => {
                if verdict == Verdict::Valid {
                    self.last_progress = now;
                    // A piece we already had is announced to nobody else;
                    // its sender still needs the acknowledgement.
                    if self.torrent.have().has(index) {
                        self.send(peer, Frame::HavePiece(index));
                    }
                }
                self.torrent.piece_received(now, peer, index, verdict)
            }
            Event::PieceSent { peer } => {
                self.last_use = now;
                self.torrent.piece_sent(now, peer);
                Vec::new()
            }
            Event::Closed { peer, conn } => self.closed(now, peer, conn),
            Event::Announced(result) => self.announced(now, result),
            Event::Cursor { reader, piece } => {
                match piece {
                    Some(p) => self.cursors.insert(reader, p),
                    None => self.cursors.remove(&reader),
                };
                self.torrent
                    .set_stream_cursor(self.cursors.values().min().copied());
                Vec::new()
            }
            Event::Touch => {
                self.last_use = now;
                Vec::new()
            }
            Event::Cancel => {
                if self.phase() == Phase::Downloading {
                    self.fail(Failure::Cancelled);
                    return false;
                }
                Vec::new()
            }
        };
        self.apply(actions);
        true
    }

    fn inbound(&mut self, now: Duration, hs: Handshake, io: BoxIo) -> Vec<Action> {
        if hs.info_hash != self.meta.info_hash() || !self.torrent.accepts(&hs.peer_id, now) {
            tracing::debug!(peer = %hs.peer_id, "inbound connection refused");
            return Vec::new();
        }
        self.last_use = now;
        let reply = self.handshake();
        self.connect(now, hs, io, Some(reply), false)
    }

    fn dialed(
        &mut self,
        now: Duration,
        peer: &PeerInfo,
        hs: Handshake,
        io: BoxIo,
        sent: &Bitfield,
    ) -> Vec<Action> {
        self.dialing.remove(&peer.peer_id);
        let same = hs.info_hash == self.meta.info_hash() && hs.peer_id == peer.peer_id;
        if !same {
            tracing::warn!(peer = %peer.peer_id, "peer answered for another torrent or identity");
            self.torrent.blacklist(peer.peer_id, now);
            return Vec::new();
        }
        if !self.torrent.accepts(&peer.peer_id, now) {
            return Vec::new();
        }
        let catch_up: Vec<_> = self
            .torrent
            .have()
            .present()
            .filter(|&i| !sent.has(i))
            .collect();
        let actions = self.connect(now, hs, io, None, peer.origin);
        if let Some(conn) = self.conns.get(&peer.peer_id) {
            catch_up
                .into_iter()
                .for_each(|i| conn.handle.send(Frame::HavePiece(i)));
        }
        actions
    }

    fn connect(
        &mut self,
        now: Duration,
        hs: Handshake,
        io: BoxIo,
        reply: Option<Handshake>,
        origin: bool,
    ) -> Vec<Action> {
        let cancel = self.cancel.child_token();
        let ctx = ConnContext {
            inner: self.inner.clone(),
            digest: self.digest,
            piece_length: self.meta.piece_length() as u32,
            peer: hs.peer_id,
            origin,
            events: self.events.clone(),
            cancel: cancel.clone(),
            uploads: self.uploads.clone(),
        };
        let handle = conn::start(ctx, io, reply);
        tracing::debug!(peer = %hs.peer_id, origin, "connected");
        if self.torrent.is_complete() {
            handle.send(Frame::Complete);
        }
        self.conns.insert(hs.peer_id, Conn { handle, cancel });
        self.torrent
            .peer_connected(now, hs.peer_id, hs.bitfield, origin)
    }

    fn frame(&mut self, now: Duration, peer: PeerId, frame: &Frame) -> Vec<Action> {
        match *frame {
            Frame::HavePiece(i) => self.torrent.peer_has(now, peer, i),
            Frame::Complete => self.torrent.peer_complete(now, peer),
            Frame::Reject { index, .. } => self.torrent.request_rejected(now, peer, index),
            _ => Vec::new(),
        }
    }

    fn closed(&mut self, now: Duration, peer: PeerId, conn: u64) -> Vec<Action> {
        match self.conns.get(&peer) {
            Some(c) if c.handle.id == conn => {
                self.conns.remove(&peer);
                self.torrent.peer_disconnected(now, peer)
            }
            _ => Vec::new(),
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Request { peer, piece } => self.send(peer, Frame::Request(piece)),
                Action::Cancel { peer, piece } => self.send(peer, Frame::Cancel(piece)),
                Action::Announce(piece) => {
                    self.view.send_modify(|v| v.have.set(piece));
                    self.conns
                        .values()
                        .for_each(|c| c.handle.send(Frame::HavePiece(piece)));
                }
                Action::Disconnect { peer, reason } => {
                    tracing::debug!(%peer, ?reason, "disconnecting");
                    if let Some(conn) = self.conns.remove(&peer) {
                        conn.cancel.cancel();
                    }
                }
            }
        }
    }

    fn send(&self, peer: PeerId, frame: Frame) {
        if let Some(conn) = self.conns.get(&peer) {
            conn.handle.send(frame);
        }
    }

    /// Publishes the blob once every piece is in.
    async fn check_complete(&mut self) {
        if !self.torrent.is_complete() || self.phase() == Phase::Complete {
            return;
        }
        match self.inner.store.commit_download(&self.digest).await {
            Ok(()) => {
                tracing::info!(length = self.meta.length(), "blob complete");
                self.view.send_modify(|v| v.phase = Phase::Complete);
                self.conns
                    .values()
                    .for_each(|c| c.handle.send(Frame::Complete));
                self.next_announce = self.inner.now();
            }
            Err(e) => self.fail(Failure::from_error(&e)),
        }
    }

    /// Runs time-driven work; false ends the session.
    fn on_tick(&mut self) -> bool {
        let now = self.inner.now();
        let actions = self.torrent.tick(now);
        self.apply(actions);
        match self.phase() {
            Phase::Downloading => {
                if !self.conns.is_empty() {
                    self.last_connected = now;
                }
                let alone = now.saturating_sub(self.last_connected);
                if alone >= self.inner.config.no_peer_timeout {
                    let why = format!("no peer could be reached for {alone:?}");
                    self.fail(Failure::Unavailable(why));
                    return false;
                }
                let idle = now.saturating_sub(self.last_progress);
                if idle >= self.inner.config.download_idle_timeout {
                    self.fail(Failure::Timeout(format!("no piece arrived for {idle:?}")));
                    return false;
                }
            }
            Phase::Complete => {
                let unused = now.saturating_sub(self.last_use);
                if self.conns.is_empty() && unused >= self.inner.config.seed_idle_timeout {
                    tracing::debug!("stopped seeding");
                    return false;
                }
            }
            _ => {}
        }
        if !self.announcing && now >= self.next_announce && !self.inner.local.origin {
            self.announce();
        }
        true
    }

    fn announce(&mut self) {
        self.announcing = true;
        let mut peer = self.inner.local.clone();
        peer.complete = self.torrent.is_complete();
        let request = AnnounceRequest {
            info_hash: self.meta.info_hash(),
            digest: self.digest,
            namespace: self.namespace.clone(),
            peer,
        };
        let tracker = self.inner.tracker.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let result = tracker.announce(&request).await;
            let _ = events.send(Event::Announced(result)).await;
        });
    }

    fn announced(&mut self, now: Duration, result: Result<AnnounceResponse, Error>) -> Vec<Action> {
        self.announcing = false;
        let peers = match result {
            Ok(response) => {
                self.interval = response.interval.clamp(MIN_ANNOUNCE, MAX_ANNOUNCE);
                response.peers
            }
            Err(e) => {
                tracing::warn!(error = %e, "announce failed");
                Vec::new()
            }
        };
        self.next_announce = now + self.interval;
        let me = &self.inner.local.peer_id;
        let chosen = self.torrent.peers_to_dial(now, me, &peers, &self.dialing);
        let chosen: Vec<PeerInfo> = chosen.into_iter().cloned().collect();
        for peer in chosen {
            self.dial(peer);
        }
        Vec::new()
    }

    fn dial(&mut self, peer: PeerInfo) {
        self.dialing.insert(peer.peer_id);
        let hello = self.handshake();
        let inner = self.inner.clone();
        let events = self.events.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            let dialed = tokio::select! {
                r = inner.dial(&peer, &hello) => r,
                () = cancel.cancelled() => return,
            };
            let event = match dialed {
                Ok((handshake, io)) => Event::Dialed {
                    peer,
                    handshake,
                    io,
                    sent: hello.bitfield,
                },
                Err(e) => {
                    tracing::debug!(peer = %peer.peer_id, addr = %peer.addr, error = %e, "dial failed");
                    Event::DialFailed { peer: peer.peer_id }
                }
            };
            let _ = events.send(event).await;
        });
    }

    fn handshake(&self) -> Handshake {
        Handshake {
            info_hash: self.meta.info_hash(),
            digest: self.digest,
            peer_id: self.inner.local.peer_id,
            namespace: self.namespace.clone(),
            bitfield: self.torrent.have().clone(),
        }
    }

    fn close_all(&mut self) {
        self.cancel.cancel();
        self.conns.clear();
    }
}
