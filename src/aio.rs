//! The context's asyncio event loop on the port's readiness loop.
//!
//! Python's side (`erlang.aio`) is an `asyncio.SelectorEventLoop` whose
//! selector hands `register`/`modify`/`unregister` to the port
//! ([`Requests`], filled from any Python call) and whose `select()` returns
//! what the port collected. The loop here applies those requests to the
//! port's own [`Selector`] (no second poller), passes the events of each wait
//! to one iteration of the asyncio loop, and bounds the next wait by the
//! loop's earliest timer: nothing polls, no thread runs.
//!
//! Selectors are level-triggered, the port's selector one-shot: a direction
//! delivered to asyncio is armed again after the iteration that used it, for
//! as long as asyncio still watches it.

use std::collections::HashMap;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::message::PythonError;
use crate::python::python_error;
use crate::readiness::{Interest, Selector};

/// `selectors.EVENT_READ` and `selectors.EVENT_WRITE`.
const EVENT_READ: u8 = 1;
const EVENT_WRITE: u8 = 2;

/// How long a stopping context lets its cancelled tasks run to the end:
/// well within the VM's default `stop_timeout` (5 s), after which it kills
/// the port.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default)]
struct Change {
    /// Unwatched since the last apply: the descriptor number may now name
    /// another open file, so it is registered afresh.
    reset: bool,
    /// What asyncio watches now (0 for nothing).
    events: u8,
}

/// What Python asked the port to watch for asyncio since the loop last
/// looked, and whether the asyncio loop has work for this turn.
#[derive(Debug, Default)]
pub struct Requests {
    changes: Mutex<HashMap<RawFd, Change>>,
    changed: AtomicBool,
    due: AtomicBool,
    /// Requests `call` made with a coroutine function, whose task has not
    /// completed yet: their references, by token.
    calls: Mutex<HashMap<u64, eetf::Term>>,
    next_call: std::sync::atomic::AtomicU64,
}

impl Requests {
    pub fn watch(&self, fd: RawFd, events: u8) {
        let mut changes = self.lock();
        changes.entry(fd).or_default().events = events & (EVENT_READ | EVENT_WRITE);
        self.changed.store(true, Ordering::Release);
    }

    pub fn unwatch(&self, fd: RawFd) {
        let mut changes = self.lock();
        *changes.entry(fd).or_default() = Change { reset: true, events: 0 };
        self.changed.store(true, Ordering::Release);
    }

    /// A callback was made ready or a timer added.
    pub fn schedule(&self) {
        self.due.store(true, Ordering::Release);
    }

    /// Keeps `reference` until the task of a `call` completes; returns the
    /// token Python completes it with.
    pub fn defer_call(&self, reference: eetf::Term) -> u64 {
        let token = self.next_call.fetch_add(1, Ordering::Relaxed);
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).insert(token, reference);
        token
    }

    /// The reference of the deferred call `token`, once.
    pub fn complete_call(&self, token: u64) -> Option<eetf::Term> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).remove(&token)
    }

    fn take_due(&self) -> bool {
        self.due.swap(false, Ordering::Acquire)
    }

    fn take_changes(&self) -> Vec<(RawFd, Change)> {
        if !self.changed.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        self.lock().drain().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RawFd, Change>> {
        self.changes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Refuses, when asyncio asks, what the poller would refuse later: a closed
/// descriptor, a regular file or a directory (epoll says `EPERM`, as
/// `selectors.EpollSelector` would raise).
pub fn check_watchable(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: borrowed for the call only; a bad number gives EBADF.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let stat = nix::sys::stat::fstat(borrowed)?;
    let kind = stat.st_mode & nix::libc::S_IFMT;
    if kind == nix::libc::S_IFREG || kind == nix::libc::S_IFDIR {
        return Err(Errno::EPERM);
    }
    Ok(())
}

fn interest_of(events: u8) -> Interest {
    Interest { read: events & EVENT_READ != 0, write: events & EVENT_WRITE != 0 }
}

/// The port's side of the context's asyncio loop.
#[derive(Debug)]
pub struct Asyncio {
    step: Py<PyAny>,
    pending_tasks: Py<PyAny>,
    shutdown: Py<PyAny>,
    /// Descriptors asyncio watches, with what it watches on each.
    watched: HashMap<RawFd, Interest>,
    /// Events of the current turn, as (descriptor, selectors mask).
    events: Vec<(RawFd, u8)>,
    /// When the next iteration is due without any event (the earliest timer).
    deadline: Option<Instant>,
}

impl Asyncio {
    /// Creates the context's loop (`erlang.aio.install`).
    pub fn install(py: Python<'_>) -> Result<Asyncio, PythonError> {
        let err = |e| python_error(py, e);
        let module = py.import("erlang.aio").map_err(err)?;
        module.call_method0("install").map_err(err)?;
        let get = |name: &str| module.getattr(name).map(Bound::unbind).map_err(err);
        Ok(Asyncio {
            step: get("step")?,
            pending_tasks: get("pending_tasks")?,
            shutdown: get("shutdown")?,
            watched: HashMap::new(),
            events: Vec::new(),
            deadline: None,
        })
    }

    /// Whether asyncio watches `fd`.
    pub fn owns(&self, fd: RawFd) -> bool {
        self.watched.contains_key(&fd)
    }

    /// Forgets `fd` without touching the poller: its number now belongs to a
    /// descriptor handed over by the VM (asyncio closed its own without
    /// unregistering it, and the kernel dropped it from the poller then).
    pub fn forget(&mut self, fd: RawFd) {
        self.watched.remove(&fd);
    }

    /// Takes a delivered event for an asyncio descriptor.
    pub fn on_ready(&mut self, fd: RawFd, interest: Interest) {
        let mask = (u8::from(interest.read) * EVENT_READ) | (u8::from(interest.write) * EVENT_WRITE);
        self.events.push((fd, mask));
    }

    /// Applies what Python asked to watch to the poller. `key_of` gives a
    /// descriptor's key. Returns what could not be watched, to be logged.
    pub fn apply(&mut self, requests: &Requests, selector: &mut Selector, key_of: fn(RawFd) -> usize) -> Vec<String> {
        let mut problems = Vec::new();
        for (fd, change) in requests.take_changes() {
            let key = key_of(fd);
            if change.reset && self.watched.remove(&fd).is_some() {
                // Fails when Python closed the descriptor first (the kernel
                // dropped it from the poller then): nothing left to do.
                let _ = selector.deregister(key);
            }
            if change.events == 0 {
                continue;
            }
            let interest = interest_of(change.events);
            if !self.watched.contains_key(&fd) {
                // SAFETY: asyncio unregisters a descriptor before closing it
                // (its transports and `remove_reader` do), and a number
                // closed without that is forgotten when reused (`forget`);
                // epoll never touches memory through a stale entry.
                let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
                if let Err(e) = unsafe { selector.register(borrowed, key) } {
                    problems.push(format!("asyncio: cannot watch fd {fd}: {e}"));
                    continue;
                }
            }
            let _ = selector.cancel(key, Interest { read: true, write: true });
            if let Err(e) = selector.select(key, interest) {
                problems.push(format!("asyncio: cannot watch fd {fd}: {e}"));
            }
            self.watched.insert(fd, interest);
        }
        problems
    }

    /// Whether the loop has work in this turn: events, callbacks made ready
    /// or a timer due.
    pub fn wants_step(&mut self, requests: &Requests) -> bool {
        let due = requests.take_due();
        due || !self.events.is_empty() || self.deadline.is_some_and(|d| d <= Instant::now())
    }

    /// One iteration of the loop with this turn's events; then the delivered
    /// directions are armed again where asyncio still watches them.
    pub fn step(
        &mut self,
        py: Python<'_>,
        requests: &Requests,
        selector: &mut Selector,
        key_of: fn(RawFd) -> usize,
    ) -> (Result<(), PythonError>, Vec<String>) {
        let events = std::mem::take(&mut self.events);
        let list = PyList::new(py, events.iter().copied());
        let result = list.and_then(|list| self.step.call1(py, (list,))).and_then(|timeout| {
            let seconds: Option<f64> = timeout.extract(py)?;
            self.deadline = seconds.map(|s| Instant::now() + Duration::from_secs_f64(s.clamp(0.0, 86_400.0 * 365.0)));
            Ok(())
        });
        let result = result.map_err(|e| python_error(py, e));
        if result.is_err() {
            // A broken iteration must not leave the port asleep forever.
            self.deadline = Some(Instant::now() + Duration::from_millis(100));
        }
        let problems = self.apply(requests, selector, key_of);
        for (fd, _) in events {
            if let Some(interest) = self.watched.get(&fd) {
                let _ = selector.select(key_of(fd), *interest);
            }
        }
        (result, problems)
    }

    /// How long the port may wait before the loop's next iteration is due.
    pub fn timeout(&self, requests: &Requests) -> Option<Duration> {
        if requests.due.load(Ordering::Acquire) {
            return Some(Duration::ZERO);
        }
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Cancels the loop's pending tasks; returns how many there were.
    pub fn cancel_tasks(&self, py: Python<'_>) -> Result<usize, PythonError> {
        self.shutdown.call0(py).and_then(|n| n.extract(py)).map_err(|e| python_error(py, e))
    }

    /// How many of the loop's tasks are not done.
    pub fn pending_tasks(&self, py: Python<'_>) -> usize {
        self.pending_tasks.call0(py).and_then(|n| n.extract(py)).unwrap_or(0)
    }
}
