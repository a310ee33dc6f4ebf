//! Python's timers: `Protocol.call_later` and the `TimerHandle` it returns.
//!
//! The timers are a [`Timers`] of handles, kept here rather than in the
//! reactor because Python sets and cancels them from inside callbacks, while
//! the loop is busy, and from other threads. The loop asks for
//! [`next_deadline`] before it waits and runs what [`take_due`] gives it,
//! in its own thread with the GIL, like any other callback.
//!
//! A timer may belong to a connection: it is cancelled when the connection
//! closes ([`cancel_connection`]), and an exception from its callback closes
//! that connection.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::native::Shared;
use crate::timers::{TimerId, Timers};

/// The connection a timer belongs to: its descriptor and connection id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    pub fd: i32,
    pub conn_id: u64,
}

/// What `call_later` returns: asyncio's `TimerHandle` shape (`cancel()`,
/// `cancelled()`, `when()`).
#[pyclass(module = "erlang.reactor", name = "TimerHandle", frozen)]
pub struct TimerHandle {
    /// Its id in the store, set once when it is stored (before Python sees
    /// the handle).
    id: OnceLock<TimerId>,
    /// When it is due, in seconds of `time.monotonic()`.
    when: f64,
    owner: Option<Owner>,
    state: Mutex<HandleState>,
}

struct HandleState {
    /// The callback and its arguments until the timer runs or is cancelled:
    /// dropped then, so that a handle kept by the protocol keeps nothing alive.
    call: Option<(Py<PyAny>, Py<PyTuple>)>,
    cancelled: bool,
}

impl TimerHandle {
    fn state(&self) -> std::sync::MutexGuard<'_, HandleState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection the timer belongs to, if any.
    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }

    /// Takes the callback and its arguments to run them; `None` once
    /// cancelled (or run).
    pub fn take_call(&self) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        self.state().call.take()
    }

    fn mark_cancelled(&self) -> Option<(Py<PyAny>, Py<PyTuple>)> {
        let mut state = self.state();
        state.cancelled = true;
        state.call.take()
    }
}

#[pymethods]
impl TimerHandle {
    /// Cancels the timer: its callback will not run. Does nothing once it
    /// has run or was cancelled.
    fn cancel(&self) {
        let call = self.mark_cancelled();
        let handle = self.id.get().and_then(|id| cancel_one(*id));
        // Released outside the store's lock: dropping them may run Python
        // code (a __del__) that sets or cancels timers.
        drop((call, handle));
    }

    /// Whether the timer was cancelled (by `cancel()` or because its
    /// connection closed).
    fn cancelled(&self) -> bool {
        self.state().cancelled
    }

    /// When the timer is (or was) due, in seconds of `time.monotonic()`
    /// (`erlang.reactor.time()`).
    fn when(&self) -> f64 {
        self.when
    }

    fn __repr__(&self) -> String {
        let state = self.state();
        let what = if state.cancelled {
            "cancelled"
        } else if state.call.is_none() {
            "done"
        } else {
            "pending"
        };
        format!("<TimerHandle when={:.6} {what}>", self.when)
    }
}

/// The pending timers, shared by the loop and every thread that sets one.
struct Store {
    timers: Mutex<Pending>,
    /// How many timers are pending, so that the loop need not lock to see
    /// that there are none.
    count: AtomicUsize,
}

#[derive(Default)]
struct Pending {
    timers: Timers<Py<TimerHandle>>,
    by_owner: HashMap<u64, HashSet<TimerId>>,
    loop_thread: Option<ThreadId>,
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.timers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes the timer `id` from the store; its handle, if it was pending.
fn cancel_one(id: TimerId) -> Option<Py<TimerHandle>> {
    let store = store();
    let mut pending = store.lock();
    let handle = pending.timers.cancel(id)?;
    store.count.fetch_sub(1, Ordering::Relaxed);
    if let Some(owner) = handle.get().owner {
        forget_owned(&mut pending.by_owner, owner.conn_id, id);
    }
    Some(handle)
}

fn forget_owned(by_owner: &mut HashMap<u64, HashSet<TimerId>>, conn_id: u64, id: TimerId) {
    if let Some(ids) = by_owner.get_mut(&conn_id) {
        ids.remove(&id);
        if ids.is_empty() {
            by_owner.remove(&conn_id);
        }
    }
}

fn store() -> &'static Store {
    static STORE: std::sync::OnceLock<Store> = std::sync::OnceLock::new();
    STORE.get_or_init(|| Store { timers: Mutex::new(Pending::default()), count: AtomicUsize::new(0) })
}

/// `time.monotonic()`: the clock of [`TimerHandle::when`]; `Instant` reads
/// the same clock.
pub fn monotonic() -> f64 {
    let mut now = nix::libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec to write to; CLOCK_MONOTONIC always
    // exists on the systems the port runs on, so the call cannot fail.
    unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 * 1e-9
}

/// Sets a timer: `callback(*args)` after `delay` seconds, in the loop thread.
pub fn call_later(
    py: Python<'_>,
    delay: f64,
    callback: Py<PyAny>,
    args: Py<PyTuple>,
    owner: Option<Owner>,
) -> PyResult<Py<TimerHandle>> {
    if delay.is_nan() {
        return Err(PyValueError::new_err("delay must be a number of seconds, not NaN"));
    }
    if !callback.bind(py).is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err("callback must be callable"));
    }
    if let Some(owner) = owner {
        let live = Shared::get().is_some_and(|s| s.is_live(owner.fd, owner.conn_id));
        if !live {
            return Err(PyRuntimeError::new_err("the connection is closed"));
        }
    }
    let delay = Duration::try_from_secs_f64(delay.max(0.0)).unwrap_or(Duration::MAX);
    let now = Instant::now();
    let when = monotonic() + delay.as_secs_f64();
    // Made before the store is locked: allocating may run Python code
    // (a collection calling a __del__) that sets or cancels timers.
    let state = Mutex::new(HandleState { call: Some((callback, args)), cancelled: false });
    let handle = Py::new(py, TimerHandle { id: OnceLock::new(), when, owner, state })?;
    let stored = handle.clone_ref(py);
    let store = store();
    let mut pending = store.lock();
    let earliest = pending.timers.next_deadline();
    let id = pending.timers.insert_after(now, delay, stored);
    let _ = handle.get().id.set(id);
    let deadline = pending.timers.deadline(id);
    store.count.fetch_add(1, Ordering::Relaxed);
    if let Some(owner) = owner {
        pending.by_owner.entry(owner.conn_id).or_default().insert(id);
    }
    let from_elsewhere = pending.loop_thread.is_some_and(|t| t != std::thread::current().id());
    let sooner = match (earliest, deadline) {
        (Some(e), Some(d)) => d < e,
        _ => true,
    };
    drop(pending);
    if from_elsewhere && sooner {
        // The loop may be waiting past this deadline.
        if let Some(shared) = Shared::get() {
            shared.wake();
        }
    }
    Ok(handle)
}

/// The earliest deadline of a pending Python timer.
pub fn next_deadline() -> Option<Instant> {
    let store = store();
    if store.count.load(Ordering::Relaxed) == 0 {
        return None;
    }
    store.lock().timers.next_deadline()
}

/// Takes the timers due at `now`, earliest first; called by the loop, whose
/// thread this marks as the loop's.
pub fn take_due(now: Instant, out: &mut Vec<Py<TimerHandle>>) {
    let store = store();
    if store.count.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut pending = store.lock();
    pending.loop_thread.get_or_insert_with(|| std::thread::current().id());
    let mut due = Vec::new();
    pending.timers.take_due(now, &mut due);
    store.count.fetch_sub(due.len(), Ordering::Relaxed);
    for (id, handle) in due {
        if let Some(owner) = handle.get().owner {
            forget_owned(&mut pending.by_owner, owner.conn_id, id);
        }
        out.push(handle);
    }
}

/// Marks the loop's thread, so that timers set from any other thread wake it.
pub fn attach_loop_thread() {
    store().lock().loop_thread = Some(std::thread::current().id());
}

/// Cancels every timer of the connection `conn_id` (it is closing).
pub fn cancel_connection(conn_id: u64) {
    let store = store();
    if store.count.load(Ordering::Relaxed) == 0 {
        return;
    }
    let mut pending = store.lock();
    let Some(ids) = pending.by_owner.remove(&conn_id) else { return };
    let mut calls = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(handle) = pending.timers.cancel(id) {
            store.count.fetch_sub(1, Ordering::Relaxed);
            calls.push((handle.get().mark_cancelled(), handle));
        }
    }
    drop(pending);
    // Callbacks and handles are released outside the lock: dropping them may
    // run Python code (a __del__) that sets or cancels timers.
    drop(calls);
}

/// Cancels every pending timer (the port is stopping).
pub fn cancel_all() {
    let store = store();
    let mut pending = store.lock();
    let all = pending.timers.drain();
    pending.by_owner.clear();
    store.count.store(0, Ordering::Relaxed);
    drop(pending);
    let calls: Vec<_> = all.into_iter().map(|(_, handle)| (handle.get().mark_cancelled(), handle)).collect();
    drop(calls);
}
