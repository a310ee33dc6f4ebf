//! `enif_select` emulation on the `polling` crate.
//!
//! Interest is one-shot per direction, as with `enif_select`: selecting read
//! (or write) delivers one readiness event for that direction, after which the
//! direction is disarmed until selected again.
//!
//! The one-shot part lives here, not in the kernel. Descriptors are
//! registered in `polling`'s level-triggered mode, and a direction that has
//! been delivered stays watched until it fires again unwanted: a protocol
//! that reads, answers and reads again (the common case) costs no
//! re-registration at all, only the wait, `read` and `write` an event loop
//! cannot do without. `polling`'s own one-shot mode needs a `modify` (one
//! `epoll_ctl`) after every event, which the port once paid (see
//! `docs/performance.md`, "Readiness on `polling`"). An unwanted event (readable while nothing asked
//! to read, a lasting hang-up) narrows what the poller watches to what is
//! armed, so it is reported at most once; write interest, which a socket
//! nearly always satisfies, is narrowed as soon as the event that used it
//! has been served ([`Selector::settle`]).
//!
//! Nothing here is specific to one kernel interface: `polling` picks epoll,
//! kqueue or event ports. Its `wait` re-arms its notifier on every call, and
//! a timeout costs a timer of its own, so the loop passes no timeout when
//! no deadline is due.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};

/// Directions of interest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const NONE: Interest = Interest { read: false, write: false };
    pub const READ: Interest = Interest { read: true, write: false };
    pub const WRITE: Interest = Interest { read: false, write: true };

    pub fn is_none(self) -> bool {
        !self.read && !self.write
    }

    fn union(self, other: Interest) -> Interest {
        Interest { read: self.read || other.read, write: self.write || other.write }
    }

    fn intersection(self, other: Interest) -> Interest {
        Interest { read: self.read && other.read, write: self.write && other.write }
    }

    fn minus(self, other: Interest) -> Interest {
        Interest { read: self.read && !other.read, write: self.write && !other.write }
    }

    fn contains(self, other: Interest) -> bool {
        other.minus(self).is_none()
    }

    /// The directions a poller event reports. `polling` counts an error or
    /// hang-up as both readable and writable: the next read or write is what
    /// tells the protocol about it.
    fn of_event(event: &Event) -> Interest {
        Interest { read: event.readable, write: event.writable }
    }

    fn event(self, key: usize) -> Event {
        match (self.read, self.write) {
            (true, true) => Event::all(key),
            (true, false) => Event::readable(key),
            (false, true) => Event::writable(key),
            (false, false) => Event::none(key),
        }
    }
}

/// One delivered readiness event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub key: usize,
    pub interest: Interest,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    fd: RawFd,
    /// What the owner asked for and has not been delivered yet.
    armed: Interest,
    /// What the poller watches (a superset of `armed`); `None` when the
    /// descriptor is out of the poller altogether.
    watched: Option<Interest>,
}

/// Wakes a [`Selector`] blocked in [`Selector::wait`] from another thread.
#[derive(Debug)]
pub struct Waker {
    poller: Arc<Poller>,
}

impl Waker {
    /// Makes the current or next wait return.
    pub fn wake(&self) -> io::Result<()> {
        self.poller.notify()
    }
}

/// Events taken from the kernel in one wait; more wait for the next turn.
const EVENTS_PER_WAIT: usize = 256;

/// The registration mode: level-triggered, one-shot kept in user space.
const MODE: PollMode = PollMode::Level;

/// Registered descriptors and what is armed on each, by key.
#[derive(Debug)]
pub struct Selector {
    poller: Arc<Poller>,
    slots: Vec<Option<Slot>>,
    events: Events,
    /// The last wait's events as (key, directions), reused from turn to turn.
    fired: Vec<(usize, Interest)>,
}

impl Selector {
    pub fn new() -> io::Result<Selector> {
        let capacity = std::num::NonZeroUsize::new(EVENTS_PER_WAIT).expect("nonzero");
        Ok(Selector {
            poller: Arc::new(Poller::new()?),
            slots: Vec::new(),
            events: Events::with_capacity(capacity),
            fired: Vec::with_capacity(EVENTS_PER_WAIT),
        })
    }

    /// What wakes the loop from another thread.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::new(Waker { poller: Arc::clone(&self.poller) })
    }

    /// Registers `fd` under `key` with nothing armed.
    ///
    /// # Safety
    /// `fd` must stay open until [`Selector::deregister`] is called for `key`:
    /// the poller tracks the open file description, not the number.
    pub unsafe fn register(&mut self, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
        // Added at once, watching nothing, so that a descriptor the poller
        // cannot watch (a regular file, say) is refused here rather than later.
        // SAFETY: the caller deregisters before closing.
        unsafe { self.poller.add_with_mode(&fd, Event::none(key), MODE)? };
        if self.slots.len() <= key {
            self.slots.resize(key + 1, None);
        }
        self.slots[key] = Some(Slot {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            armed: Interest::NONE,
            watched: Some(Interest::NONE),
        });
        Ok(())
    }

    /// Arms `interest` on `key` in addition to what is armed.
    pub fn select(&mut self, key: usize, interest: Interest) -> io::Result<()> {
        let slot = self.slot_mut(key)?;
        slot.armed = slot.armed.union(interest);
        let watched = slot.watched.unwrap_or(Interest::NONE);
        if slot.watched.is_some() && watched.contains(slot.armed) {
            return Ok(());
        }
        let want = watched.union(slot.armed);
        self.watch(key, Some(want))
    }

    /// Disarms `interest` on `key`. The poller is told lazily, if the
    /// direction fires.
    pub fn cancel(&mut self, key: usize, interest: Interest) -> io::Result<()> {
        let slot = self.slot_mut(key)?;
        slot.armed = slot.armed.minus(interest);
        Ok(())
    }

    /// What is armed on `key`.
    pub fn armed(&self, key: usize) -> Interest {
        self.slots.get(key).copied().flatten().map(|s| s.armed).unwrap_or_default()
    }

    /// Stops watching write readiness on `key` unless it is armed. Called once
    /// the event that used write interest has been served: a writable socket
    /// would otherwise be reported again at once, for nothing.
    pub fn settle(&mut self, key: usize) -> io::Result<()> {
        let Some(slot) = self.slots.get(key).copied().flatten() else { return Ok(()) };
        match slot.watched {
            Some(watched) if watched.write && !slot.armed.write => {
                let keep = Interest { read: watched.read, write: false };
                self.watch(key, (!keep.is_none()).then_some(keep))
            }
            _ => Ok(()),
        }
    }

    /// Stops watching `key`. Call before closing its descriptor.
    pub fn deregister(&mut self, key: usize) -> io::Result<()> {
        let slot = self.slot_mut(key)?;
        let (fd, watched) = (slot.fd, slot.watched);
        self.slots[key] = None;
        if watched.is_none() {
            return Ok(());
        }
        // SAFETY: registered descriptors are open until deregistered.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        self.poller.delete(fd)
    }

    /// Waits for events and appends the delivered ones to `out`. Each
    /// delivered direction is disarmed; the other stays armed. `None` waits
    /// without a timeout, which spares `polling` arming a timer of its own.
    pub fn wait(&mut self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        self.poll(timeout)?;
        self.deliver_polled(out)
    }

    /// The first half of [`Selector::wait`]: waits for events and keeps
    /// them, undelivered, for [`Selector::deliver_polled`]. Between the two
    /// the caller may arm what it knows it wants (a connection a worker
    /// finished with), so that an event that came for it meanwhile is
    /// delivered, not taken for unwanted and the descriptor narrowed only to
    /// be widened again: two `epoll_ctl` calls for nothing.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.events.clear();
        match self.poller.wait(&mut self.events, round_up(timeout)) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The second half of [`Selector::wait`]: delivers the events of the
    /// last [`Selector::poll`] as armed now, appending them to `out`.
    pub fn deliver_polled(&mut self, out: &mut Vec<Ready>) -> io::Result<()> {
        let mut events = std::mem::take(&mut self.fired);
        events.clear();
        events.extend(self.events.iter().map(|e| (e.key, Interest::of_event(&e))));
        self.events.clear();
        let result = self.deliver(&events, out);
        self.fired = events;
        result
    }

    /// Disarms what each event delivers and narrows the watch where an
    /// event brought something unwanted.
    fn deliver(&mut self, events: &[(usize, Interest)], out: &mut Vec<Ready>) -> io::Result<()> {
        for &(key, fired) in events {
            let Some(slot) = self.slots.get_mut(key).and_then(Option::as_mut) else { continue };
            let delivered = fired.intersection(slot.armed);
            slot.armed = slot.armed.minus(delivered);
            if !delivered.is_none() {
                out.push(Ready { key, interest: delivered });
            }
            if !fired.minus(delivered).is_none() {
                // Something nobody waits for: watch only what is armed, so
                // that it is not reported again.
                let armed = slot.armed;
                self.watch(key, (!armed.is_none()).then_some(armed))?;
            }
        }
        Ok(())
    }

    fn slot_mut(&mut self, key: usize) -> io::Result<&mut Slot> {
        self.slots
            .get_mut(key)
            .and_then(Option::as_mut)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("key {key} is not registered")))
    }

    /// Makes the poller watch `interest` on `key` (level-triggered), or
    /// takes the descriptor out of it for `None`.
    fn watch(&mut self, key: usize, interest: Option<Interest>) -> io::Result<()> {
        let slot = self.slots[key].as_mut().expect("slot checked by caller");
        // SAFETY: registered descriptors are open until deregistered.
        let fd = unsafe { BorrowedFd::borrow_raw(slot.fd) };
        let result = match (slot.watched, interest) {
            (None, None) => Ok(()),
            (Some(_), None) => self.poller.delete(fd),
            // SAFETY: as above; `deregister` removes it before it is closed.
            (None, Some(i)) => unsafe { self.poller.add_with_mode(&fd, i.event(key), MODE) },
            (Some(_), Some(i)) => self.poller.modify_with_mode(fd, i.event(key), MODE),
        };
        result?;
        slot.watched = interest;
        Ok(())
    }
}

/// A timeout rounded up to whole milliseconds, so that a deadline less than
/// a millisecond away is waited for rather than spun on (epoll counts in
/// milliseconds).
fn round_up(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| Duration::from_millis(u64::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    const T: Option<Duration> = Some(Duration::from_millis(50));

    fn wait(sel: &mut Selector) -> Vec<Ready> {
        let mut out = Vec::new();
        sel.wait(&mut out, T).unwrap();
        out
    }

    #[test]
    fn read_interest_is_one_shot() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut sel = Selector::new().unwrap();
        unsafe { sel.register(a.as_fd(), 3).unwrap() };
        b.write_all(b"x").unwrap();
        assert!(wait(&mut sel).is_empty(), "nothing armed, nothing delivered");
        sel.select(3, Interest::READ).unwrap();
        assert_eq!(wait(&mut sel), vec![Ready { key: 3, interest: Interest::READ }]);
        assert!(wait(&mut sel).is_empty(), "delivered once, then disarmed");
        sel.select(3, Interest::READ).unwrap();
        assert_eq!(wait(&mut sel).len(), 1, "re-armed, delivered again");
        sel.deregister(3).unwrap();
    }

    #[test]
    fn the_direction_that_did_not_fire_stays_armed() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut sel = Selector::new().unwrap();
        unsafe { sel.register(a.as_fd(), 0).unwrap() };
        sel.select(0, Interest::WRITE).unwrap();
        sel.select(0, Interest::READ).unwrap();
        // Writable at once, not yet readable.
        assert_eq!(wait(&mut sel), vec![Ready { key: 0, interest: Interest::WRITE }]);
        assert_eq!(sel.armed(0), Interest::READ);
        b.write_all(b"x").unwrap();
        assert_eq!(wait(&mut sel), vec![Ready { key: 0, interest: Interest::READ }]);
        assert!(sel.armed(0).is_none());
    }

    #[test]
    fn a_hung_up_descriptor_with_nothing_armed_stays_quiet() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut sel = Selector::new().unwrap();
        unsafe { sel.register(a.as_fd(), 2).unwrap() };
        sel.select(2, Interest::READ).unwrap();
        drop(b);
        assert_eq!(wait(&mut sel), vec![Ready { key: 2, interest: Interest::READ }]);
        // The hang-up persists, but nothing is armed: it may end one wait
        // early (read is still watched, lazily), after which every wait must
        // sleep for its whole timeout rather than report it again.
        assert!(wait(&mut sel).is_empty());
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let mut out = Vec::new();
            sel.wait(&mut out, T).unwrap();
            assert!(out.is_empty());
            assert!(started.elapsed() >= Duration::from_millis(40), "woken after {:?}", started.elapsed());
        }
        sel.deregister(2).unwrap();
    }

    fn watched(sel: &Selector, key: usize) -> Option<Interest> {
        sel.slots[key].unwrap().watched
    }

    #[test]
    fn a_read_served_and_armed_again_leaves_the_kernel_alone() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut sel = Selector::new().unwrap();
        unsafe { sel.register(a.as_fd(), 4).unwrap() };
        sel.select(4, Interest::READ).unwrap();
        for _ in 0..3 {
            b.write_all(b"x").unwrap();
            assert_eq!(wait(&mut sel), vec![Ready { key: 4, interest: Interest::READ }]);
            (&a).read_exact(&mut [0u8; 1]).unwrap();
            // Still watched after delivery, so arming it again needs no epoll_ctl.
            assert_eq!(watched(&sel, 4), Some(Interest::READ));
            sel.select(4, Interest::READ).unwrap();
        }
        sel.deregister(4).unwrap();
    }

    /// A socket pair whose first end is registered under `key`, read armed,
    /// after one read event delivered for a byte left unread.
    fn after_one_read(key: usize) -> (UnixStream, UnixStream, Selector) {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut sel = Selector::new().unwrap();
        unsafe { sel.register(a.as_fd(), key).unwrap() };
        sel.select(key, Interest::READ).unwrap();
        b.write_all(b"x").unwrap();
        assert_eq!(wait(&mut sel).len(), 1);
        (a, b, sel)
    }

    #[test]
    fn a_read_armed_between_poll_and_delivery_is_delivered_and_stays_watched() {
        let (a, mut b, mut sel) = after_one_read(5);
        (&a).read_exact(&mut [0u8; 1]).unwrap();
        // Not armed when the next byte comes (a worker has the connection),
        // armed again before the event is delivered.
        b.write_all(b"y").unwrap();
        sel.poll(T).unwrap();
        sel.select(5, Interest::READ).unwrap();
        let mut out = Vec::new();
        sel.deliver_polled(&mut out).unwrap();
        assert_eq!(out, vec![Ready { key: 5, interest: Interest::READ }]);
        assert_eq!(watched(&sel, 5), Some(Interest::READ), "never narrowed, so no epoll_ctl");
        // Polled events are delivered once.
        out.clear();
        sel.deliver_polled(&mut out).unwrap();
        assert!(out.is_empty());
        sel.deregister(5).unwrap();
    }

    #[test]
    fn unwanted_readiness_is_reported_at_most_once() {
        let (_a, _b, mut sel) = after_one_read(5);
        // Not armed again, and the byte is left unread: one wait sees it and
        // drops read from the kernel's watch; none after that wakes at all.
        assert!(wait(&mut sel).is_empty());
        assert_eq!(watched(&sel, 5), None);
        let started = std::time::Instant::now();
        assert!(wait(&mut sel).is_empty());
        assert!(started.elapsed() >= Duration::from_millis(40));
        // Armed again, it is delivered again.
        sel.select(5, Interest::READ).unwrap();
        assert_eq!(wait(&mut sel), vec![Ready { key: 5, interest: Interest::READ }]);
        sel.deregister(5).unwrap();
    }

    #[test]
    fn settle_stops_watching_a_served_write() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut sel = Selector::new().unwrap();
        unsafe { sel.register(a.as_fd(), 6).unwrap() };
        sel.select(6, Interest::READ).unwrap();
        sel.select(6, Interest::WRITE).unwrap();
        assert_eq!(wait(&mut sel), vec![Ready { key: 6, interest: Interest::WRITE }]);
        sel.settle(6).unwrap();
        assert_eq!(watched(&sel, 6), Some(Interest::READ));
        let started = std::time::Instant::now();
        assert!(wait(&mut sel).is_empty(), "a writable socket woke the selector after settle");
        assert!(started.elapsed() >= Duration::from_millis(40));
        b.write_all(b"x").unwrap();
        assert_eq!(wait(&mut sel), vec![Ready { key: 6, interest: Interest::READ }]);
        sel.deregister(6).unwrap();
    }

    #[test]
    fn the_waker_ends_a_wait_from_another_thread() {
        let mut sel = Selector::new().unwrap();
        let waker = sel.waker();
        let started = std::time::Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake().unwrap();
        });
        let mut out = Vec::new();
        sel.wait(&mut out, Some(Duration::from_secs(10))).unwrap();
        thread.join().unwrap();
        assert!(out.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5));
        // The wake-up is consumed: the next wait sleeps its timeout.
        let started = std::time::Instant::now();
        assert!(wait(&mut sel).is_empty());
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[test]
    fn a_descriptor_epoll_cannot_watch_is_refused_at_registration() {
        let file = std::fs::File::open("/proc/self/status").unwrap();
        let mut sel = Selector::new().unwrap();
        assert!(unsafe { sel.register(file.as_fd(), 7) }.is_err());
        assert_eq!(sel.armed(7), Interest::NONE);
    }

    #[test]
    fn cancel_disarms() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut sel = Selector::new().unwrap();
        unsafe { sel.register(a.as_fd(), 1).unwrap() };
        sel.select(1, Interest::READ).unwrap();
        sel.cancel(1, Interest::READ).unwrap();
        b.write_all(b"x").unwrap();
        assert!(wait(&mut sel).is_empty());
        assert!(sel.select(9, Interest::READ).is_err(), "unknown keys are an error");
    }
}
