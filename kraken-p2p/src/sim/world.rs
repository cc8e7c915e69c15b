//! The hosts of a run and the handlers that do, in virtual time, what the
//! engine's session, connections and upload task do around the state
//! machines: the same events reach `Torrent` and `ServeQueue` in the same
//! order, and their actions are carried out as messages.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use kraken_core::{Bitfield, Digest, InfoHash, Namespace, PeerId, PeerInfo, PieceIndex};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::flow::Network;
use super::queue::{Agenda, Nanos};
use super::tracker::SimTracker;
use super::{AgentTimes, SenderModel, SimOptions, SimReport};
use crate::scheduler::{
    Action, MAX_ANNOUNCE, MIN_ANNOUNCE, SchedulerConfig, ServeQueue, TICK, Torrent, Verdict,
};
use crate::tracker::AnnounceRequest;

/// A frame between two connected hosts.
#[derive(Debug, Clone, Copy)]
enum Msg {
    Request(u32),
    Cancel(u32),
    Have(u32),
    Complete,
    Reject(u32),
    /// The sender closed the connection.
    Close,
}

#[derive(Debug, Clone, Copy)]
enum Event {
    /// An agent asks for the blob (an origin starts seeding).
    Start(u32),
    Tick(u32),
    /// An announce reaches the tracker.
    Announce {
        host: u32,
        complete: bool,
    },
    /// The tracker's answer reaches the host.
    Handout(u32),
    /// A dialler's handshake reaches the dialled host.
    Hello {
        conn: u32,
        from: u32,
        to: u32,
    },
    /// The dialled host's handshake reaches the dialler.
    Welcome {
        conn: u32,
        from: u32,
        to: u32,
    },
    /// The dialled host closed the connection without a handshake.
    Refused {
        from: u32,
        to: u32,
    },
    Message {
        conn: u32,
        from: u32,
        to: u32,
        msg: Msg,
    },
    /// A buffered sender has pushed its current piece out at its full
    /// rate and may serve the next.
    Pushed {
        host: u32,
        push: u64,
    },
    /// A whole piece reached its receiver.
    Arrived {
        conn: u32,
        from: u32,
        to: u32,
        piece: u32,
    },
}

/// The bitfields of a connection's two handshakes.
struct Dial {
    hello: Bitfield,
    reply: Option<Bitfield>,
}

struct Host {
    info: PeerInfo,
    torrent: Torrent,
    queue: ServeQueue,
    /// Open connections: the other host and the connection's id.
    conns: Vec<(u32, u32)>,
    dialing: HashSet<PeerId>,
    handout: Vec<PeerInfo>,
    announcing: bool,
    next_announce: Nanos,
    interval: Nanos,
    start: Nanos,
    done: Option<Nanos>,
    sent_bytes: u64,
    /// Upload bytes per second.
    rate: f64,
    /// Transfers sent at once (blocking senders).
    slots: usize,
    /// The transfer being pushed out and its number (buffered senders).
    pushing: Option<(u32, u64)>,
    pushes: u64,
}

/// One run: hosts, network, agenda and tracker.
pub(super) struct World<'a> {
    options: &'a SimOptions,
    hosts: Vec<Host>,
    origins: u32,
    net: Network,
    agenda: Agenda<Event>,
    tracker: SimTracker,
    dials: HashMap<u32, Dial>,
    next_conn: u32,
    latency: Nanos,
    /// Agents still downloading.
    waiting: u32,
    events: u64,
    namespace: Namespace,
    digest: Digest,
    info_hash: InfoHash,
}

fn time(now: Nanos) -> Duration {
    Duration::from_nanos(now)
}

fn nanos(d: Duration) -> Nanos {
    d.as_nanos().try_into().unwrap_or(Nanos::MAX)
}

/// The peer id of host `i`; the index is its first four bytes.
fn peer_id(i: u32) -> PeerId {
    let mut bytes = [0x5a; PeerId::LEN];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    PeerId::from_bytes(bytes)
}

fn index(id: &PeerId) -> u32 {
    let b = id.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl<'a> World<'a> {
    pub(super) fn new(options: &'a SimOptions) -> Self {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let pieces = options.blob_size.div_ceil(options.piece_length) as u32;
        let origin_slots = match options.sender {
            SenderModel::Buffered => 1.0,
            SenderModel::Blocking => (options.origin_rate / options.host_rate).ceil().max(1.0),
        };
        let origin_config = SchedulerConfig {
            max_connections: options.origin_connections,
            ..options.scheduler.clone()
        };
        let total = options.origins + options.hosts;
        let mut hosts = Vec::with_capacity(total as usize);
        let mut down = Vec::new();
        for i in 0..total {
            let origin = i < options.origins;
            let (config, have, slots) = match origin {
                true => (&origin_config, Bitfield::full(pieces), origin_slots),
                false => (&options.scheduler, Bitfield::new(pieces), 1.0),
            };
            let rate = if origin {
                options.origin_rate
            } else {
                options.host_rate
            };
            down.push(options.host_rate);
            let addr = SocketAddr::from((Ipv4Addr::from(0x0a00_0000 | i), 16001));
            let info = PeerInfo {
                origin,
                complete: origin,
                ..PeerInfo::new(peer_id(i), addr)
            };
            let torrent_rng = StdRng::from_rng(&mut rng);
            let torrent = Torrent::new(config.clone(), options.piece_length, have, torrent_rng);
            let spread = nanos(options.arrival_spread);
            let start = match origin || spread == 0 {
                true => 0,
                false => rng.random_range(0..=spread),
            };
            hosts.push(Host {
                info,
                torrent,
                queue: ServeQueue::new(pieces, options.piece_length, config),
                conns: Vec::new(),
                dialing: HashSet::new(),
                handout: Vec::new(),
                announcing: false,
                next_announce: start,
                interval: nanos(options.scheduler.announce_interval),
                start,
                done: None,
                sent_bytes: 0,
                rate,
                slots: slots as usize,
                pushing: None,
                pushes: 0,
            });
        }
        let origins: Vec<PeerInfo> = hosts[..options.origins as usize]
            .iter()
            .map(|h| h.info.clone())
            .collect();
        let tracker = SimTracker::new(options.tracker.clone(), origins, StdRng::from_rng(&mut rng));
        let latency = nanos(options.latency);
        let mut agenda = Agenda::new(&[latency, 3 * latency, nanos(TICK)]);
        for (i, h) in hosts.iter().enumerate() {
            agenda.at(h.start, Event::Start(i as u32));
        }
        World {
            options,
            hosts,
            origins: options.origins,
            net: Network::new(down),
            agenda,
            tracker,
            dials: HashMap::new(),
            next_conn: 0,
            latency,
            waiting: options.hosts,
            events: 0,
            namespace: Namespace::new("sim").expect("valid namespace"),
            digest: Digest::sha256_of(b"kraken simulated blob"),
            info_hash: InfoHash::from_bytes([1; InfoHash::LEN]),
        }
    }

    /// Processes events until every agent is done or time runs out.
    pub(super) fn run(mut self) -> SimReport {
        let wall = Instant::now();
        let limit = nanos(self.options.time_limit);
        while self.waiting > 0 {
            let transfer = self.net.next_end();
            let event = self.agenda.peek();
            let now = match (transfer, event) {
                (Some((end, id)), e) if e.is_none_or(|e| end < e) => {
                    if end > limit {
                        break;
                    }
                    self.agenda.advance(end);
                    self.sent(id, end);
                    end
                }
                _ => {
                    let Some((now, event)) = self.agenda.pop() else {
                        break;
                    };
                    if now > limit {
                        break;
                    }
                    self.handle(now, event);
                    now
                }
            };
            self.events += 1;
            debug_assert!(now <= self.agenda.now());
        }
        let end = self.agenda.now().min(limit);
        self.report(end, wall.elapsed())
    }

    fn handle(&mut self, now: Nanos, event: Event) {
        match event {
            Event::Start(h) | Event::Tick(h) => self.tick(h, now),
            Event::Announce { host, complete } => self.announce(host, complete),
            Event::Handout(h) => self.handout(h, now),
            Event::Hello { conn, from, to } => self.hello(conn, from, to, now),
            Event::Welcome { conn, from, to } => self.welcome(conn, from, to, now),
            Event::Refused { from, to } => {
                let host = &mut self.hosts[to as usize];
                host.dialing.remove(&peer_id(from));
                host.torrent.blacklist(peer_id(from), time(now));
            }
            Event::Message {
                conn,
                from,
                to,
                msg,
            } => self.message(conn, from, to, msg, now),
            Event::Pushed { host, push } => self.pushed(host, push, now),
            Event::Arrived {
                conn,
                from,
                to,
                piece,
            } => self.arrived(conn, from, to, piece, now),
        }
    }

    fn is_origin(&self, h: u32) -> bool {
        h < self.origins
    }

    fn conn_of(&self, h: u32, peer: u32) -> Option<u32> {
        let conns = &self.hosts[h as usize].conns;
        conns.iter().find(|(p, _)| *p == peer).map(|(_, c)| *c)
    }

    fn send(&mut self, from: u32, to: u32, msg: Msg) {
        if let Some(conn) = self.conn_of(from, to) {
            let event = Event::Message {
                conn,
                from,
                to,
                msg,
            };
            self.agenda.after(self.latency, event);
        }
    }

    /// The session's tick: timeouts, an announce when due, and the upload
    /// task's periodic look at windows that reopened by timing out.
    fn tick(&mut self, h: u32, now: Nanos) {
        let actions = self.hosts[h as usize].torrent.tick(time(now));
        self.apply(h, actions);
        let origin = self.is_origin(h);
        let host = &mut self.hosts[h as usize];
        if !origin && !host.announcing && now >= host.next_announce {
            host.announcing = true;
            let complete = host.torrent.is_complete();
            let event = Event::Announce { host: h, complete };
            self.agenda.after(self.latency, event);
        }
        self.serve(h);
        self.agenda.after(nanos(TICK), Event::Tick(h));
    }

    fn announce(&mut self, h: u32, complete: bool) {
        let host = &mut self.hosts[h as usize];
        let request = AnnounceRequest {
            info_hash: self.info_hash,
            digest: self.digest,
            namespace: self.namespace.clone(),
            peer: PeerInfo {
                complete,
                ..host.info.clone()
            },
        };
        let response = self.tracker.announce(&request);
        host.interval = nanos(response.interval.clamp(MIN_ANNOUNCE, MAX_ANNOUNCE));
        host.handout = response.peers;
        self.agenda.after(self.latency, Event::Handout(h));
    }

    fn handout(&mut self, h: u32, now: Nanos) {
        let host = &mut self.hosts[h as usize];
        host.announcing = false;
        host.next_announce = now + host.interval;
        let peers = std::mem::take(&mut host.handout);
        let me = host.info.peer_id;
        let chosen: Vec<u32> = host
            .torrent
            .peers_to_dial(time(now), &me, &peers, &host.dialing)
            .into_iter()
            .map(|p| index(&p.peer_id))
            .collect();
        for to in chosen {
            self.dial(h, to);
        }
    }

    /// Dials `to`: a TCP round trip, then our handshake, one way.
    fn dial(&mut self, h: u32, to: u32) {
        let host = &mut self.hosts[h as usize];
        host.dialing.insert(peer_id(to));
        let conn = self.next_conn;
        self.next_conn += 1;
        let hello = host.torrent.have().clone();
        self.dials.insert(conn, Dial { hello, reply: None });
        let event = Event::Hello { conn, from: h, to };
        self.agenda.after(3 * self.latency, event);
    }

    /// The engine's inbound path: accept when a slot is free, reply with
    /// our handshake, say we are complete, then the torrent's first
    /// requests.
    fn hello(&mut self, conn: u32, a: u32, b: u32, now: Nanos) {
        let host = &mut self.hosts[b as usize];
        if !host.torrent.accepts(&peer_id(a), time(now)) {
            self.dials.remove(&conn);
            self.agenda
                .after(self.latency, Event::Refused { from: b, to: a });
            return;
        }
        let Some(dial) = self.dials.get_mut(&conn) else {
            return;
        };
        let hello = dial.hello.clone();
        dial.reply = Some(host.torrent.have().clone());
        host.conns.push((a, conn));
        let event = Event::Welcome {
            conn,
            from: b,
            to: a,
        };
        self.agenda.after(self.latency, event);
        if self.hosts[b as usize].torrent.is_complete() {
            self.send(b, a, Msg::Complete);
        }
        let torrent = &mut self.hosts[b as usize].torrent;
        let actions = torrent.peer_connected(time(now), peer_id(a), hello, false);
        self.apply(b, actions);
    }

    /// The engine's dialled path: keep the connection if a slot is still
    /// free, say we are complete, catch the peer up on pieces that arrived
    /// during the dial, then the torrent's first requests.
    fn welcome(&mut self, conn: u32, b: u32, a: u32, now: Nanos) {
        let origin = self.is_origin(b);
        let host = &mut self.hosts[a as usize];
        host.dialing.remove(&peer_id(b));
        let Some(Dial {
            hello,
            reply: Some(reply),
        }) = self.dials.remove(&conn)
        else {
            return;
        };
        if !host.torrent.accepts(&peer_id(b), time(now)) {
            let close = Event::Message {
                conn,
                from: a,
                to: b,
                msg: Msg::Close,
            };
            self.agenda.after(self.latency, close);
            return;
        }
        let have = host.torrent.have();
        let catch_up: Vec<u32> = have
            .present()
            .filter(|&i| !hello.has(i))
            .map(|i| i.0)
            .collect();
        host.conns.push((b, conn));
        if host.torrent.is_complete() {
            self.send(a, b, Msg::Complete);
        }
        let torrent = &mut self.hosts[a as usize].torrent;
        let actions = torrent.peer_connected(time(now), peer_id(b), reply, origin);
        for piece in catch_up {
            self.send(a, b, Msg::Have(piece));
        }
        self.apply(a, actions);
    }

    /// The engine's connection reader: frames go to the serve queue and
    /// the torrent.
    fn message(&mut self, conn: u32, from: u32, to: u32, msg: Msg, now: Nanos) {
        if self.conn_of(to, from) != Some(conn) {
            return;
        }
        let (id, t) = (peer_id(from), time(now));
        let host = &mut self.hosts[to as usize];
        let actions = match msg {
            Msg::Request(p) => {
                if !host.queue.request(id, PieceIndex(p)) {
                    self.send(to, from, Msg::Reject(p));
                }
                Vec::new()
            }
            Msg::Cancel(p) => {
                host.queue.cancel(id, PieceIndex(p));
                Vec::new()
            }
            Msg::Have(p) => {
                host.queue.acked(id, PieceIndex(p));
                host.torrent.peer_has(t, id, PieceIndex(p))
            }
            Msg::Complete => {
                host.queue.acked_all(id);
                host.torrent.peer_complete(t, id)
            }
            Msg::Reject(p) => host.torrent.request_rejected(t, id, PieceIndex(p)),
            Msg::Close => {
                self.drop_conn(to, from);
                self.hosts[to as usize].torrent.peer_disconnected(t, id)
            }
        };
        self.apply(to, actions);
        self.serve(to);
    }

    /// Forgets the connection of `h` to `peer` and whatever moved on it.
    fn drop_conn(&mut self, h: u32, peer: u32) -> bool {
        let host = &mut self.hosts[h as usize];
        let Some(at) = host.conns.iter().position(|(p, _)| *p == peer) else {
            return false;
        };
        host.conns.swap_remove(at);
        host.queue.forget(peer_id(peer));
        let now = self.agenda.now();
        let dropped = self.net.abort_between(now, h, peer);
        for (transfer, sender) in dropped {
            let host = &mut self.hosts[sender as usize];
            if host.pushing.is_some_and(|(t, _)| t == transfer) {
                host.pushing = None;
            }
            self.serve(sender);
        }
        true
    }

    fn apply(&mut self, h: u32, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Request { peer, piece } => {
                    self.send(h, index(&peer), Msg::Request(piece.0))
                }
                Action::Cancel { peer, piece } => self.send(h, index(&peer), Msg::Cancel(piece.0)),
                Action::Announce(piece) => {
                    for i in 0..self.hosts[h as usize].conns.len() {
                        let to = self.hosts[h as usize].conns[i].0;
                        self.send(h, to, Msg::Have(piece.0));
                    }
                }
                Action::Disconnect { peer, .. } => {
                    let to = index(&peer);
                    let conn = self.conn_of(h, to);
                    if let Some(conn) = conn
                        && self.drop_conn(h, to)
                    {
                        let msg = Msg::Close;
                        let close = Event::Message {
                            conn,
                            from: h,
                            to,
                            msg,
                        };
                        self.agenda.after(self.latency, close);
                    }
                }
            }
        }
    }

    fn can_send(&self, h: u32) -> bool {
        let host = &self.hosts[h as usize];
        match self.options.sender {
            SenderModel::Buffered => host.pushing.is_none(),
            SenderModel::Blocking => self.net.sending(h) < host.slots,
        }
    }

    /// The engine's upload task: while a slot is free, serve what the
    /// queue picks; a request whose connection is gone is dropped unsent.
    fn serve(&mut self, h: u32) {
        let now = self.agenda.now();
        while self.can_send(h) {
            let Some((id, piece)) = self.hosts[h as usize].queue.next(time(now)) else {
                return;
            };
            let to = index(&id);
            let Some(conn) = self.conn_of(h, to) else {
                continue;
            };
            if self.conn_of(to, h) != Some(conn) {
                continue;
            }
            let bytes = self.piece_bytes(piece.0);
            let host = &mut self.hosts[h as usize];
            host.queue.sent(time(now), id, piece);
            host.torrent.piece_sent(time(now), id);
            host.sent_bytes += bytes;
            let (route, cap) = ((h, to, conn), host.rate / host.slots as f64);
            let transfer = self.net.start(now, route, (piece.0, bytes), cap);
            if self.options.sender == SenderModel::Buffered {
                let host = &mut self.hosts[h as usize];
                host.pushes += 1;
                host.pushing = Some((transfer, host.pushes));
                let push = host.pushes;
                let took = (bytes as f64 / host.rate * 1e9).ceil() as Nanos;
                self.agenda.at(now + took, Event::Pushed { host: h, push });
            }
        }
    }

    /// A buffered sender's piece has left at its full rate: what remains
    /// of it waits in buffers, limited by the receiver's link alone.
    fn pushed(&mut self, h: u32, push: u64, now: Nanos) {
        let host = &mut self.hosts[h as usize];
        let Some((transfer, current)) = host.pushing else {
            return;
        };
        if current != push {
            return;
        }
        host.pushing = None;
        self.net.uncap(now, transfer);
        self.serve(h);
    }

    fn piece_bytes(&self, piece: u32) -> u64 {
        let start = u64::from(piece) * self.options.piece_length;
        self.options
            .piece_length
            .min(self.options.blob_size - start)
    }

    /// The last byte of a transfer reached its receiver's side of the
    /// link; the piece is there one latency later.
    fn sent(&mut self, transfer: u32, now: Nanos) {
        let t = self.net.finish(now, transfer);
        let event = Event::Arrived {
            conn: t.conn,
            from: t.from,
            to: t.to,
            piece: t.piece,
        };
        self.agenda.after(self.latency, event);
        self.serve(t.from);
    }

    /// The engine's piece-stored path: acknowledge a duplicate, let the
    /// torrent announce and refill, and publish the blob when complete.
    fn arrived(&mut self, conn: u32, from: u32, to: u32, piece: u32, now: Nanos) {
        if self.conn_of(to, from) != Some(conn) {
            return;
        }
        let index = PieceIndex(piece);
        if self.hosts[to as usize].torrent.have().has(index) {
            self.send(to, from, Msg::Have(piece));
        }
        let torrent = &mut self.hosts[to as usize].torrent;
        let actions = torrent.piece_received(time(now), peer_id(from), index, Verdict::Valid);
        self.apply(to, actions);
        let origin = self.is_origin(to);
        let host = &mut self.hosts[to as usize];
        if host.torrent.is_complete() && host.done.is_none() && !origin {
            host.done = Some(now);
            host.next_announce = now;
            self.waiting -= 1;
            for i in 0..host.conns.len() {
                let peer = self.hosts[to as usize].conns[i].0;
                self.send(to, peer, Msg::Complete);
            }
        }
    }

    fn report(&self, end: Nanos, wall: Duration) -> SimReport {
        let secs = |n: Nanos| n as f64 / 1e9;
        let agents: Vec<AgentTimes> = self.hosts[self.origins as usize..]
            .iter()
            .map(|h| AgentTimes {
                start_s: secs(h.start),
                download_s: h.done.map(|d| secs(d - h.start)),
            })
            .collect();
        let mut times: Vec<f64> = agents.iter().filter_map(|a| a.download_s).collect();
        times.sort_by(f64::total_cmp);
        let unfinished = (agents.len() - times.len()) as u32;
        let ideal = self.options.ideal();
        let origin_bytes: u64 = self.hosts[..self.origins as usize]
            .iter()
            .map(|h| h.sent_bytes)
            .sum();
        let mbit = |rate: f64| rate * 8.0 / 1e6;
        let median = times.get(times.len() / 2).copied();
        let last = times.last().copied().filter(|_| unfinished == 0);
        SimReport {
            hosts: self.options.hosts,
            origins: self.origins,
            blob_bytes: self.options.blob_size,
            piece_length: self.options.piece_length,
            pieces: self.options.blob_size.div_ceil(self.options.piece_length) as u32,
            rate_mbit: mbit(self.options.host_rate),
            origin_rate_mbit: mbit(self.options.origin_rate),
            sender: match self.options.sender {
                SenderModel::Buffered => "buffered",
                SenderModel::Blocking => "blocking",
            },
            latency_ms: self.options.latency.as_secs_f64() * 1e3,
            seed: self.options.seed,
            ideal_s: ideal,
            first_s: times.first().copied(),
            median_s: median,
            last_s: last,
            line_rate_fraction: last.map(|l| ideal / l),
            median_fraction: median.map(|m| ideal / m),
            seed_upload_copies: origin_bytes as f64 / self.options.blob_size as f64,
            unfinished,
            announces: self.tracker.announces(),
            events: self.events,
            virtual_s: secs(end),
            wall_s: wall.as_secs_f64(),
            agents,
        }
    }
}
