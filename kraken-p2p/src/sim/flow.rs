//! Piece transfers as fluid flows over the hosts' links.
//!
//! A transfer runs from a sender to a receiver. Its rate is the
//! receiver's max-min fair share of its download link among the transfers
//! coming in, each capped by what its sender gives it (a sender serves one
//! piece at a time per slot, so the cap is the only constraint on the
//! sending side; a transfer whose bytes have all left the sender and wait
//! in buffers has no cap). Shares change only when a transfer at that
//! receiver starts, ends or loses its cap, so each change touches one
//! receiver's few transfers.

use super::queue::Nanos;

const NANOS_PER_SEC: f64 = 1e9;

/// One piece on its way.
#[derive(Debug, Clone)]
pub(super) struct Transfer {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) conn: u32,
    pub(super) piece: u32,
    remaining: f64,
    cap: f64,
    rate: f64,
    since: Nanos,
    /// Bumped whenever the end moves, so a stale end event is ignored.
    version: u32,
    live: bool,
}

/// A transfer's new end: `(transfer, version, time)`.
pub(super) type Reschedule = (u32, u32, Nanos);

/// Every host's links and the transfers on them.
pub(super) struct Network {
    transfers: Vec<Transfer>,
    free: Vec<u32>,
    incoming: Vec<Vec<u32>>,
    outgoing: Vec<Vec<u32>>,
    down: Vec<f64>,
    scratch: Vec<(f64, u32)>,
}

impl Network {
    /// Creates the links of hosts with the given download rates, in bytes
    /// per second.
    pub(super) fn new(down: Vec<f64>) -> Self {
        let hosts = down.len();
        Network {
            transfers: Vec::new(),
            free: Vec::new(),
            incoming: vec![Vec::new(); hosts],
            outgoing: vec![Vec::new(); hosts],
            down,
            scratch: Vec::new(),
        }
    }

    /// Returns how many transfers `host` is sending.
    pub(super) fn sending(&self, host: u32) -> usize {
        self.outgoing[host as usize].len()
    }

    /// Starts sending `bytes` of `piece` from `from` to `to` over
    /// connection `conn`, at most at `cap` bytes per second; returns the
    /// transfer's id.
    pub(super) fn start(
        &mut self,
        now: Nanos,
        (from, to, conn): (u32, u32, u32),
        (piece, bytes): (u32, u64),
        cap: f64,
        out: &mut Vec<Reschedule>,
    ) -> u32 {
        let transfer = Transfer {
            from,
            to,
            conn,
            piece,
            remaining: bytes as f64,
            cap,
            rate: 0.0,
            since: now,
            version: 0,
            live: true,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.transfers[id as usize] = transfer;
                id
            }
            None => {
                self.transfers.push(transfer);
                (self.transfers.len() - 1) as u32
            }
        };
        self.outgoing[from as usize].push(id);
        self.incoming[to as usize].push(id);
        self.reshare(now, to, out);
        id
    }

    /// Lifts the cap of transfer `id`: its sender has sent every byte.
    pub(super) fn uncap(&mut self, now: Nanos, id: u32, out: &mut Vec<Reschedule>) {
        let t = &mut self.transfers[id as usize];
        if t.live {
            t.cap = f64::INFINITY;
            let to = t.to;
            self.reshare(now, to, out);
        }
    }

    /// Ends transfer `id` when `version` is its latest end, returning it.
    pub(super) fn finish(
        &mut self,
        now: Nanos,
        id: u32,
        version: u32,
        out: &mut Vec<Reschedule>,
    ) -> Option<Transfer> {
        let t = self.transfers.get(id as usize)?;
        if !t.live || t.version != version {
            return None;
        }
        let done = self.remove(id);
        self.reshare(now, done.to, out);
        Some(done)
    }

    /// Drops every transfer between `a` and `b`, either way; returns the
    /// dropped transfers and their senders.
    pub(super) fn abort_between(
        &mut self,
        now: Nanos,
        a: u32,
        b: u32,
        out: &mut Vec<Reschedule>,
    ) -> Vec<(u32, u32)> {
        let mut dropped = Vec::new();
        for (from, to) in [(a, b), (b, a)] {
            let doomed: Vec<u32> = self.outgoing[from as usize]
                .iter()
                .copied()
                .filter(|&id| self.transfers[id as usize].to == to)
                .collect();
            if doomed.is_empty() {
                continue;
            }
            for id in doomed {
                self.remove(id);
                dropped.push((id, from));
            }
            self.reshare(now, to, out);
        }
        dropped
    }

    fn remove(&mut self, id: u32) -> Transfer {
        let t = &mut self.transfers[id as usize];
        t.live = false;
        let (from, to) = (t.from as usize, t.to as usize);
        self.outgoing[from].retain(|&x| x != id);
        self.incoming[to].retain(|&x| x != id);
        self.free.push(id);
        self.transfers[id as usize].clone()
    }

    /// Recomputes the shares of `host`'s download link by water-filling:
    /// the transfers with the lowest caps get their cap, the rest split
    /// what is left evenly.
    fn reshare(&mut self, now: Nanos, host: u32, out: &mut Vec<Reschedule>) {
        let mut caps = std::mem::take(&mut self.scratch);
        caps.clear();
        for &id in &self.incoming[host as usize] {
            caps.push((self.transfers[id as usize].cap, id));
        }
        caps.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut capacity = self.down[host as usize];
        let mut left = caps.len();
        for &(cap, id) in &caps {
            let rate = cap.min(capacity / left as f64);
            capacity -= rate;
            left -= 1;
            self.set_rate(now, id, rate, out);
        }
        self.scratch = caps;
    }

    fn set_rate(&mut self, now: Nanos, id: u32, rate: f64, out: &mut Vec<Reschedule>) {
        let t = &mut self.transfers[id as usize];
        let elapsed = now.saturating_sub(t.since) as f64 / NANOS_PER_SEC;
        t.remaining = (t.remaining - t.rate * elapsed).max(0.0);
        t.since = now;
        if t.rate == rate && t.version > 0 {
            return;
        }
        t.rate = rate;
        t.version += 1;
        let left = (t.remaining / rate * NANOS_PER_SEC).ceil() as Nanos;
        out.push((id, t.version, now + left));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;

    #[test]
    fn a_receiver_shares_its_link_max_min_fairly() {
        // Host 0 receives at 100 B/s; host 1 sends at 20, hosts 2 and 3 at 100.
        let mut net = Network::new(vec![100.0; 4]);
        let mut out = Vec::new();
        net.start(0, (1, 0, 0), (0, 200), 20.0, &mut out);
        assert_eq!(out, [(0, 1, 10 * SEC)], "capped by its sender");
        out.clear();
        net.start(0, (2, 0, 0), (1, 400), 100.0, &mut out);
        net.start(0, (3, 0, 0), (2, 400), 100.0, &mut out);
        let last: Vec<_> = out.iter().filter(|r| r.0 != 0).collect();
        // 20 to the slow sender, 40 to each of the others.
        assert_eq!(last.last().unwrap().2, 10 * SEC);
        out.clear();
        let done = net.finish(10 * SEC, 0, 1, &mut out).unwrap();
        assert_eq!((done.from, done.piece), (1, 0));
        assert_eq!(net.sending(1), 0);
        assert!(net.finish(10 * SEC, 0, 1, &mut out).is_none(), "only once");
    }

    #[test]
    fn aborting_frees_the_senders_and_speeds_up_the_rest() {
        let mut net = Network::new(vec![100.0; 3]);
        let mut out = Vec::new();
        net.start(0, (1, 0, 0), (0, 100), 100.0, &mut out);
        let second = net.start(0, (2, 0, 0), (1, 200), 100.0, &mut out);
        out.clear();
        assert_eq!(net.abort_between(SEC, 0, 1, &mut out), [(0, 1)]);
        // Host 2 sent 50 bytes at 50 B/s; the other 150 go at 100 B/s.
        assert_eq!(out, [(second, 2, 2 * SEC + SEC / 2)]);
        out.clear();
        let third = net.start(2 * SEC, (1, 0, 0), (2, 100), 10.0, &mut out);
        out.clear();
        net.uncap(2 * SEC, third, &mut out);
        // Its bytes wait in buffers now: it splits the link evenly, 50 B/s.
        assert!(out.contains(&(third, 2, 4 * SEC)), "{out:?}");
    }
}
