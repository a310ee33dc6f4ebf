//! Timers driven by the loop: a heap of deadlines, no thread, no polling.
//!
//! A [`Timers`] holds deadlines with a payload each. The loop that owns it
//! waits at most until [`Timers::next_deadline`] (no timeout at all when it
//! is `None`), then takes what is due with [`Timers::take_due`] and acts on
//! the payloads. Nothing runs on its own: a `Timers` is a plain data
//! structure, so any module of the loop (the reactor's idle timeouts, the
//! Python timers of `call_later`, an HTTP engine's header and keep-alive
//! timeouts, an asyncio loop's `call_at`) can own one with its own payload
//! type and give the loop its next deadline.
//!
//! Cancelling is O(1): the payload is dropped at once and the heap entry
//! left behind is skipped when it surfaces. So that a protocol that sets and
//! cancels a timeout per request cannot grow the heap without bound, the heap
//! is rebuilt from the live timers once stale entries outnumber them.
//!
//! Timers due at the same instant come out in the order they were added.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// Names one timer of one [`Timers`]; never reused, so cancelling a timer
/// that already ran or was cancelled does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

impl TimerId {
    /// The id as a number (for handles given to Python).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The id a number from [`TimerId::as_u64`] stands for.
    pub fn from_u64(n: u64) -> TimerId {
        TimerId(n)
    }
}

/// Stale heap entries allowed beyond the live ones before a rebuild.
const SLACK: usize = 64;

/// Deadlines with a payload of type `T` each.
#[derive(Debug)]
pub struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, TimerId)>>,
    live: HashMap<TimerId, (Instant, T)>,
    next_id: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers::new()
    }
}

impl<T> Timers<T> {
    pub fn new() -> Timers<T> {
        Timers { heap: BinaryHeap::new(), live: HashMap::new(), next_id: 1 }
    }

    /// Adds a timer due at `deadline` (a deadline in the past is due at once).
    pub fn insert(&mut self, deadline: Instant, payload: T) -> TimerId {
        let id = TimerId(self.next_id);
        self.next_id += 1;
        self.heap.push(Reverse((deadline, id)));
        self.live.insert(id, (deadline, payload));
        id
    }

    /// Adds a timer due `delay` from `now`.
    pub fn insert_after(&mut self, now: Instant, delay: Duration, payload: T) -> TimerId {
        let deadline = now.checked_add(delay).unwrap_or_else(|| far_future(now));
        self.insert(deadline, payload)
    }

    /// Removes the timer `id` and returns its payload; `None` when it has
    /// run or was cancelled already.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let (_, payload) = self.live.remove(&id)?;
        if self.heap.len() > 2 * self.live.len() + SLACK {
            self.compact();
        }
        Some(payload)
    }

    /// When the timer `id` is due, while it is pending.
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.live.get(&id).map(|(deadline, _)| *deadline)
    }

    /// The earliest pending deadline: how long the loop may wait.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, id))) = self.heap.peek().copied() {
            if self.live.contains_key(&id) {
                return Some(deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes every timer due at `now` or earlier and appends them to `out`,
    /// earliest first. Timers added while the caller acts on them are not
    /// part of this batch, even if due at once: a callback that sets a timer
    /// of zero delay runs it on the next turn, not in an endless loop.
    pub fn take_due(&mut self, now: Instant, out: &mut Vec<(TimerId, T)>) {
        while let Some(Reverse((deadline, id))) = self.heap.peek().copied() {
            if deadline > now {
                break;
            }
            self.heap.pop();
            if let Some((_, payload)) = self.live.remove(&id) {
                out.push((id, payload));
            }
        }
    }

    /// Pending timers.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Removes every timer, returning the payloads.
    pub fn drain(&mut self) -> Vec<(TimerId, T)> {
        self.heap.clear();
        let mut all: Vec<(TimerId, T)> = self.live.drain().map(|(id, (_, payload))| (id, payload)).collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    fn compact(&mut self) {
        let live = &self.live;
        self.heap.retain(|Reverse((_, id))| live.contains_key(id));
    }
}

/// A deadline no wait reaches, for delays too large for `Instant`.
fn far_future(now: Instant) -> Instant {
    // A century is beyond any timer a protocol means and within `Instant`'s range.
    now + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// How long a loop that last looked at the clock at `now` may wait for
/// `deadline`: `None` (no limit) without a deadline, zero for one already due.
pub fn timeout_until(deadline: Option<Instant>, now: Instant) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(now))
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn due(t: &mut Timers<&'static str>, now: Instant) -> Vec<&'static str> {
        let mut out = Vec::new();
        t.take_due(now, &mut out);
        out.into_iter().map(|(_, p)| p).collect()
    }

    #[test]
    fn nothing_pending_means_no_deadline() {
        let mut t: Timers<()> = Timers::new();
        assert_eq!(t.next_deadline(), None);
        assert_eq!(timeout_until(t.next_deadline(), Instant::now()), None);
        assert!(t.is_empty());
    }

    #[test]
    fn due_timers_come_out_earliest_first_and_only_when_due() {
        let now = Instant::now();
        let mut t = Timers::new();
        t.insert_after(now, ms(30), "c");
        t.insert_after(now, ms(10), "a");
        t.insert_after(now, ms(20), "b");
        assert_eq!(t.next_deadline(), Some(now + ms(10)));
        assert_eq!(due(&mut t, now + ms(5)), Vec::<&str>::new());
        assert_eq!(due(&mut t, now + ms(20)), vec!["a", "b"]);
        assert_eq!(t.next_deadline(), Some(now + ms(30)));
        assert_eq!(due(&mut t, now + ms(100)), vec!["c"]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn equal_deadlines_keep_the_order_they_were_added_in() {
        let now = Instant::now();
        let mut t = Timers::new();
        for name in ["1", "2", "3", "4"] {
            t.insert(now, name);
        }
        assert_eq!(due(&mut t, now), vec!["1", "2", "3", "4"]);
    }

    #[test]
    fn a_cancelled_timer_never_comes_out_and_cancelling_twice_does_nothing() {
        let now = Instant::now();
        let mut t = Timers::new();
        let a = t.insert_after(now, ms(10), "a");
        t.insert_after(now, ms(20), "b");
        assert_eq!(t.cancel(a), Some("a"));
        assert_eq!(t.cancel(a), None);
        assert_eq!(t.deadline(a), None);
        // The stale entry is skipped: the next deadline is b's.
        assert_eq!(t.next_deadline(), Some(now + ms(20)));
        assert_eq!(due(&mut t, now + ms(50)), vec!["b"]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_timer_that_ran_cannot_be_cancelled_and_ids_are_not_reused() {
        let now = Instant::now();
        let mut t = Timers::new();
        let a = t.insert(now, "a");
        assert_eq!(due(&mut t, now), vec!["a"]);
        let b = t.insert(now, "b");
        assert_ne!(a, b);
        assert_eq!(t.cancel(a), None, "a stale id must not cancel a newer timer");
        assert_eq!(t.deadline(b), Some(now));
    }

    #[test]
    fn timers_added_while_acting_on_due_ones_wait_for_the_next_batch() {
        let now = Instant::now();
        let mut t = Timers::new();
        t.insert(now, "first");
        let mut out = Vec::new();
        t.take_due(now, &mut out);
        // What a callback would do: set a timer of zero delay.
        t.insert(now, "again");
        assert_eq!(out.len(), 1);
        assert_eq!(t.next_deadline(), Some(now));
        assert_eq!(due(&mut t, now), vec!["again"]);
    }

    #[test]
    fn setting_and_cancelling_many_timers_keeps_the_heap_small() {
        let now = Instant::now();
        let mut t = Timers::new();
        let keep = t.insert_after(now, ms(1_000), "keep");
        for _ in 0..100_000 {
            let id = t.insert_after(now, ms(30_000), "request timeout");
            t.cancel(id);
        }
        assert_eq!(t.len(), 1);
        assert!(t.heap.len() <= 2 + SLACK, "heap holds {} entries for 1 timer", t.heap.len());
        assert_eq!(t.next_deadline(), t.deadline(keep));
    }

    #[test]
    fn a_huge_delay_saturates_instead_of_panicking() {
        let now = Instant::now();
        let mut t = Timers::new();
        let id = t.insert_after(now, Duration::MAX, "never");
        assert!(t.deadline(id).unwrap() > now + Duration::from_secs(3600 * 24 * 365));
        assert!(due(&mut t, now + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn drain_returns_every_pending_timer_in_order_of_creation() {
        let now = Instant::now();
        let mut t = Timers::new();
        t.insert_after(now, ms(20), "a");
        let b = t.insert_after(now, ms(10), "b");
        t.insert_after(now, ms(5), "c");
        t.cancel(b);
        let drained: Vec<_> = t.drain().into_iter().map(|(_, p)| p).collect();
        assert_eq!(drained, vec!["a", "c"]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn earliest_and_timeout_until() {
        let now = Instant::now();
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(now), None), Some(now));
        assert_eq!(earliest(None, Some(now)), Some(now));
        assert_eq!(earliest(Some(now + ms(2)), Some(now + ms(1))), Some(now + ms(1)));
        assert_eq!(timeout_until(Some(now), now + ms(5)), Some(Duration::ZERO));
        assert_eq!(timeout_until(Some(now + ms(5)), now), Some(ms(5)));
    }
}
