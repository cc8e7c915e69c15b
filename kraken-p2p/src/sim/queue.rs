//! The simulator's agenda: events ordered by virtual time, ties by the
//! order they were scheduled, so a run is deterministic. (Ends of piece
//! transfers keep their own clock in [`super::flow`].)
//!
//! Most events are scheduled a fixed delay ahead (a message takes the
//! latency; a tick comes 250 ms after the last), and since the clock never
//! goes back, the events of one delay arrive in time order. Those go to a
//! plain FIFO lane per delay; only the rest go through a heap. With
//! hundreds of millions of messages in a large run, that keeps the agenda
//! cheap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Virtual time in nanoseconds.
pub(super) type Nanos = u64;

struct Entry<E> {
    at: Nanos,
    seq: u64,
    event: E,
}

impl<E> Entry<E> {
    fn key(&self) -> (Nanos, u64) {
        (self.at, self.seq)
    }
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl<E> Eq for Entry<E> {}

impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Events waiting for their time.
pub(super) struct Agenda<E> {
    now: Nanos,
    seq: u64,
    lanes: Vec<(Nanos, VecDeque<Entry<E>>)>,
    heap: BinaryHeap<Reverse<Entry<E>>>,
}

impl<E> Agenda<E> {
    /// Creates an agenda with a FIFO lane for each of `delays`.
    pub(super) fn new(delays: &[Nanos]) -> Self {
        let mut lanes: Vec<(Nanos, VecDeque<Entry<E>>)> = Vec::new();
        for &d in delays {
            if !lanes.iter().any(|(l, _)| *l == d) {
                lanes.push((d, VecDeque::new()));
            }
        }
        Agenda {
            now: 0,
            seq: 0,
            lanes,
            heap: BinaryHeap::new(),
        }
    }

    /// Returns the time of the event last taken.
    pub(super) fn now(&self) -> Nanos {
        self.now
    }

    /// Schedules `event` at `delay` from now.
    pub(super) fn after(&mut self, delay: Nanos, event: E) {
        self.seq += 1;
        let entry = Entry {
            at: self.now + delay,
            seq: self.seq,
            event,
        };
        match self.lanes.iter_mut().find(|(d, _)| *d == delay) {
            Some((_, lane)) => lane.push_back(entry),
            None => self.heap.push(Reverse(entry)),
        }
    }

    /// Schedules `event` at time `at`, not before now.
    pub(super) fn at(&mut self, at: Nanos, event: E) {
        let delay = at.saturating_sub(self.now);
        self.seq += 1;
        let entry = Entry {
            at: self.now + delay,
            seq: self.seq,
            event,
        };
        self.heap.push(Reverse(entry));
    }

    /// Returns the time of the earliest event.
    pub(super) fn peek(&self) -> Option<Nanos> {
        let lanes = self.lanes.iter().filter_map(|(_, l)| l.front());
        let heap = self.heap.peek().map(|Reverse(e)| e);
        lanes.chain(heap).map(|e| e.at).min()
    }

    /// Moves the clock to `at`, for something that happened outside the
    /// agenda; never back.
    pub(super) fn advance(&mut self, at: Nanos) {
        self.now = self.now.max(at);
    }

    /// Takes the earliest event and moves the clock to its time.
    pub(super) fn pop(&mut self) -> Option<(Nanos, E)> {
        let mut best: Option<((Nanos, u64), Option<usize>)> =
            self.heap.peek().map(|Reverse(e)| (e.key(), None));
        for (i, (_, lane)) in self.lanes.iter().enumerate() {
            if let Some(e) = lane.front()
                && best.is_none_or(|(k, _)| e.key() < k)
            {
                best = Some((e.key(), Some(i)));
            }
        }
        let entry = match best?.1 {
            Some(i) => self.lanes[i].1.pop_front()?,
            None => self.heap.pop()?.0,
        };
        self.now = entry.at;
        Some((entry.at, entry.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_in_time_order_ties_in_scheduling_order() {
        let mut agenda = Agenda::new(&[5, 10]);
        agenda.after(10, "b");
        agenda.after(5, "a");
        agenda.at(10, "c");
        agenda.after(7, "x");
        let (t, e) = agenda.pop().unwrap();
        assert_eq!((t, e), (5, "a"));
        agenda.after(5, "d");
        let order: Vec<_> = std::iter::from_fn(|| agenda.pop()).collect();
        assert_eq!(order, [(7, "x"), (10, "b"), (10, "c"), (10, "d")]);
    }
}
