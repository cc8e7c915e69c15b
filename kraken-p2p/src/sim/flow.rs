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
    live: bool,
}

/// Every host's links and the transfers on them.
pub(super) struct Network {
    transfers: Vec<Transfer>,
    free: Vec<u32>,
    incoming: Vec<Vec<u32>>,
    outgoing: Vec<Vec<u32>>,
    down: Vec<f64>,
    ends: Clock,
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
            ends: Clock::default(),
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
        self.reshare(now, to);
        id
    }

    /// Returns the transfer that ends first, and when.
    pub(super) fn next_end(&self) -> Option<(Nanos, u32)> {
        self.ends.first()
    }

    /// Lifts the cap of transfer `id`: its sender has sent every byte.
    pub(super) fn uncap(&mut self, now: Nanos, id: u32) {
        let t = &mut self.transfers[id as usize];
        if t.live {
            t.cap = f64::INFINITY;
            let to = t.to;
            self.reshare(now, to);
        }
    }

    /// Ends transfer `id`, which [`Network::next_end`] named, returning it.
    pub(super) fn finish(&mut self, now: Nanos, id: u32) -> Transfer {
        let done = self.remove(id);
        self.reshare(now, done.to);
        done
    }

    /// Drops every transfer between `a` and `b`, either way; returns the
    /// dropped transfers and their senders.
    pub(super) fn abort_between(&mut self, now: Nanos, a: u32, b: u32) -> Vec<(u32, u32)> {
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
            self.reshare(now, to);
        }
        dropped
    }

    fn remove(&mut self, id: u32) -> Transfer {
        let t = &mut self.transfers[id as usize];
        t.live = false;
        let (from, to) = (t.from as usize, t.to as usize);
        self.outgoing[from].retain(|&x| x != id);
        self.incoming[to].retain(|&x| x != id);
        self.ends.remove(id);
        self.free.push(id);
        self.transfers[id as usize].clone()
    }

    /// Recomputes the shares of `host`'s download link by water-filling:
    /// the transfers with the lowest caps get their cap, the rest split
    /// what is left evenly.
    fn reshare(&mut self, now: Nanos, host: u32) {
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
            self.set_rate(now, id, rate);
        }
        self.scratch = caps;
    }

    fn set_rate(&mut self, now: Nanos, id: u32, rate: f64) {
        let t = &mut self.transfers[id as usize];
        let elapsed = now.saturating_sub(t.since) as f64 / NANOS_PER_SEC;
        t.remaining = (t.remaining - t.rate * elapsed).max(0.0);
        t.since = now;
        if t.rate == rate {
            return;
        }
        t.rate = rate;
        let left = (t.remaining / rate * NANOS_PER_SEC).ceil() as Nanos;
        self.ends.set(id, now + left);
    }
}

/// When each transfer ends: a binary heap that knows where each transfer
/// sits, so a new end replaces the old one instead of leaving a stale
/// entry behind (shares change far more often than transfers end).
#[derive(Default)]
struct Clock {
    heap: Vec<(Nanos, u32)>,
    /// Position in `heap` by transfer id; `ABSENT` when not scheduled.
    at: Vec<usize>,
}

const ABSENT: usize = usize::MAX;

impl Clock {
    fn first(&self) -> Option<(Nanos, u32)> {
        self.heap.first().copied()
    }

    fn set(&mut self, id: u32, end: Nanos) {
        let i = id as usize;
        if self.at.len() <= i {
            self.at.resize(i + 1, ABSENT);
        }
        match self.at[i] {
            ABSENT => {
                self.heap.push((end, id));
                self.at[i] = self.heap.len() - 1;
                self.up(self.heap.len() - 1);
            }
            pos => {
                self.heap[pos].0 = end;
                self.up(pos);
                self.down(self.at[i]);
            }
        }
    }

    fn remove(&mut self, id: u32) {
        let Some(&pos) = self.at.get(id as usize) else {
            return;
        };
        if pos == ABSENT {
            return;
        }
        self.at[id as usize] = ABSENT;
        let last = self.heap.pop().expect("scheduled transfer in the heap");
        if pos < self.heap.len() {
            self.heap[pos] = last;
            self.at[last.1 as usize] = pos;
            self.up(pos);
            self.down(self.at[last.1 as usize]);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.at[self.heap[a].1 as usize] = a;
        self.at[self.heap[b].1 as usize] = b;
    }

    fn up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[i] >= self.heap[parent] {
                return;
            }
            self.swap(i, parent);
            i = parent;
        }
    }

    fn down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < self.heap.len() && self.heap[l] < self.heap[least] {
                least = l;
            }
            if r < self.heap.len() && self.heap[r] < self.heap[least] {
                least = r;
            }
            if least == i {
                return;
            }
            self.swap(i, least);
            i = least;
        }
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
        let slow = net.start(0, (1, 0, 0), (0, 200), 20.0);
        assert_eq!(
            net.next_end(),
            Some((10 * SEC, slow)),
            "capped by its sender"
        );
        net.start(0, (2, 0, 0), (1, 400), 100.0);
        net.start(0, (3, 0, 0), (2, 400), 100.0);
        // 20 to the slow sender, 40 to each of the others: all end at 10 s.
        assert_eq!(net.ends.heap.len(), 3);
        assert!(net.ends.heap.iter().all(|e| e.0 == 10 * SEC));
        let done = net.finish(10 * SEC, slow);
        assert_eq!((done.from, done.piece), (1, 0));
        assert_eq!(net.sending(1), 0);
        assert_eq!(net.ends.heap.len(), 2);
    }

    #[test]
    fn aborting_frees_the_senders_and_speeds_up_the_rest() {
        let mut net = Network::new(vec![100.0; 3]);
        net.start(0, (1, 0, 0), (0, 100), 100.0);
        let second = net.start(0, (2, 0, 0), (1, 200), 100.0);
        assert_eq!(net.abort_between(SEC, 0, 1), [(0, 1)]);
        // Host 2 sent 50 bytes at 50 B/s; the other 150 go at 100 B/s.
        assert_eq!(net.next_end(), Some((2 * SEC + SEC / 2, second)));
        let third = net.start(2 * SEC, (1, 0, 0), (2, 100), 10.0);
        net.uncap(2 * SEC, third);
        // Its bytes wait in buffers now: it splits the link evenly, 50 B/s,
        // until the other one's last 50 bytes are in; then it has it all.
        assert_eq!(net.next_end(), Some((3 * SEC, second)));
        net.finish(3 * SEC, second);
        assert_eq!(net.next_end(), Some((3 * SEC + SEC / 2, third)));
    }

    #[test]
    fn the_clock_keeps_one_end_per_transfer_in_order() {
        let mut clock = Clock::default();
        for (id, end) in [(0, 50), (1, 10), (2, 30), (3, 20)] {
            clock.set(id, end);
        }
        clock.set(1, 40);
        clock.remove(3);
        clock.set(2, 5);
        let mut order = Vec::new();
        while let Some((end, id)) = clock.first() {
            order.push((end, id));
            clock.remove(id);
        }
        assert_eq!(order, [(5, 2), (40, 1), (50, 0)]);
    }
}
