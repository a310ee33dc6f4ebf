//! `enif_select` emulation on the `polling` crate.
//!
//! Interest is one-shot per direction, as with `enif_select`: selecting read
//! (or write) delivers one readiness event for that direction, after which the
//! direction is disarmed until selected again. `polling` disarms *both*
//! directions when either fires, so the selector remembers what was armed and
//! re-arms the direction that did not fire.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, Poller};

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

    fn minus(self, other: Interest) -> Interest {
        Interest { read: self.read && !other.read, write: self.write && !other.write }
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
    armed: Interest,
}

/// Registered descriptors and what is armed on each, by key.
#[derive(Debug)]
pub struct Selector {
    poller: Arc<Poller>,
    slots: Vec<Option<Slot>>,
    events: Events,
}

impl Selector {
    pub fn new() -> io::Result<Selector> {
        Ok(Selector { poller: Arc::new(Poller::new()?), slots: Vec::new(), events: Events::new() })
    }

    /// The poller, for waking the loop from another thread with `notify`.
    pub fn poller(&self) -> Arc<Poller> {
        Arc::clone(&self.poller)
    }

    /// Registers `fd` under `key` with nothing armed.
    ///
    /// # Safety
    /// `fd` must stay open until [`Selector::deregister`] is called for `key`:
    /// epoll tracks the open file description, not the number.
    pub unsafe fn register(&mut self, fd: BorrowedFd<'_>, key: usize) -> io::Result<()> {
        // SAFETY: the caller promises to deregister before closing.
        unsafe { self.poller.add(&fd, Event::none(key))? };
        if self.slots.len() <= key {
            self.slots.resize(key + 1, None);
        }
        self.slots[key] = Some(Slot { fd: std::os::fd::AsRawFd::as_raw_fd(&fd), armed: Interest::NONE });
        Ok(())
    }

    /// Arms `interest` on `key` in addition to what is armed.
    pub fn select(&mut self, key: usize, interest: Interest) -> io::Result<()> {
        let slot = self.slot(key)?;
        let armed = slot.armed.union(interest);
        if armed == slot.armed {
            return Ok(());
        }
        self.arm(key, armed)
    }

    /// Disarms `interest` on `key`.
    pub fn cancel(&mut self, key: usize, interest: Interest) -> io::Result<()> {
        let slot = self.slot(key)?;
        let armed = slot.armed.minus(interest);
        if armed == slot.armed {
            return Ok(());
        }
        self.arm(key, armed)
    }

    /// What is armed on `key`.
    pub fn armed(&self, key: usize) -> Interest {
        self.slots.get(key).copied().flatten().map(|s| s.armed).unwrap_or_default()
    }

    /// Stops watching `key`. Call before closing its descriptor.
    pub fn deregister(&mut self, key: usize) -> io::Result<()> {
        let slot = self.slot(key)?;
        self.slots[key] = None;
        // SAFETY: registered descriptors are open until deregistered.
        let fd = unsafe { BorrowedFd::borrow_raw(slot.fd) };
        self.poller.delete(fd)
    }

    /// Waits for events and appends the delivered ones to `out`. Each
    /// delivered direction is disarmed; the other stays armed.
    pub fn wait(&mut self, out: &mut Vec<Ready>, timeout: Option<Duration>) -> io::Result<()> {
        self.events.clear();
        match self.poller.wait(&mut self.events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in self.events.iter() {
            let key = event.key;
            let Some(slot) = self.slots.get_mut(key).and_then(Option::as_mut) else { continue };
            let delivered = Interest {
                read: event.readable && slot.armed.read,
                write: event.writable && slot.armed.write,
            };
            let rest = slot.armed.minus(delivered);
            // The kernel disarmed both directions (one-shot registration);
            // the one that did not fire is armed again. Nothing to arm means
            // nothing to tell the kernel.
            slot.armed = Interest::NONE;
            if !rest.is_none() {
                let fd = slot.fd;
                Self::modify(&self.poller, fd, key, rest)?;
                slot.armed = rest;
            }
            if !delivered.is_none() {
                out.push(Ready { key, interest: delivered });
            }
        }
        Ok(())
    }

    fn slot(&self, key: usize) -> io::Result<Slot> {
        self.slots
            .get(key)
            .copied()
            .flatten()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("key {key} is not registered")))
    }

    fn arm(&mut self, key: usize, armed: Interest) -> io::Result<()> {
        let slot = self.slots[key].as_mut().expect("slot checked by caller");
        slot.armed = armed;
        Self::modify(&self.poller, slot.fd, key, armed)
    }

    fn modify(poller: &Poller, fd: RawFd, key: usize, armed: Interest) -> io::Result<()> {
        let event = match (armed.read, armed.write) {
            (true, true) => Event::all(key),
            (true, false) => Event::readable(key),
            (false, true) => Event::writable(key),
            (false, false) => Event::none(key),
        };
        // SAFETY: registered descriptors are open until deregistered.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        poller.modify(fd, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
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
        // The hang-up persists, but nothing is armed: the poller must sleep
        // for the whole timeout rather than report the descriptor again.
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let mut out = Vec::new();
            sel.wait(&mut out, T).unwrap();
            assert!(out.is_empty());
            assert!(started.elapsed() >= Duration::from_millis(40), "woken after {:?}", started.elapsed());
        }
        sel.deregister(2).unwrap();
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
