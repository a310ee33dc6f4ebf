//! The built-in module `_py_reactor`: what Python code calls back into the
//! port with (see `docs/internals.md`).
//!
//! Its functions reach the running loop through [`Shared`], a process-wide
//! state installed once at start-up: a port serves one context, so there is
//! exactly one loop to talk to.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

use super::buffer;
use super::convert::{py_to_term, Pid};
use super::timers::{Owner, TimerHandle};
use crate::message::{LogLevel, Notice};
use crate::outbound::Outbound;
use crate::readiness::Waker;
use crate::recording::Recorder;
use eetf::Term;

/// State shared between the loop and Python's calls into the port.
#[derive(Debug)]
pub struct Shared {
    pub outbound: Arc<Outbound>,
    pub recorder: Option<Arc<Recorder>>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Set when `requested` has entries, so the loop need not lock to see.
    write_requested: AtomicBool,
    /// The last failed `write` during the current callback, as
    /// [`WriteFailure::packed`], or [`WriteFailure::NONE`].
    write_failure: AtomicU64,
    wake: Mutex<Wake>,
    /// What the context's asyncio loop asked the port to watch.
    pub aio: crate::aio::Requests,
}

/// A `write` to a connection that failed with an error other than `EAGAIN`.
///
/// The loop uses it to tell a peer that went away (an `OSError` from writing
/// to the connection's own descriptor, not handled by the protocol) from a
/// fault of the protocol: the first closes the connection as an I/O error,
/// like a failed read, the second as a Python error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteFailure {
    pub fd: RawFd,
    pub errno: nix::errno::Errno,
}

impl WriteFailure {
    const NONE: u64 = u64::MAX;

    fn packed(self) -> u64 {
        (u64::from(self.fd as u32) << 32) | u64::from(self.errno as i32 as u32)
    }

    fn unpack(packed: u64) -> Option<WriteFailure> {
        (packed != Self::NONE).then(|| WriteFailure {
            fd: (packed >> 32) as u32 as RawFd,
            errno: nix::errno::Errno::from_raw(packed as u32 as i32),
        })
    }
}

#[derive(Debug, Default)]
struct Wake {
    waker: Option<Arc<Waker>>,
    /// Connections whose write interest Python asked to arm, by descriptor
    /// and connection id: the loop arms nothing if the descriptor belongs to
    /// another connection by then.
    requested: Vec<(RawFd, u64)>,
    /// Connection ids of the live connections, by descriptor.
    live: HashMap<RawFd, u64>,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

impl Shared {
    /// Installs the process-wide state; the first call wins.
    pub fn install(outbound: Arc<Outbound>, recorder: Option<Arc<Recorder>>) -> &'static Shared {
        SHARED.get_or_init(|| Shared {
            outbound,
            recorder,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            write_requested: AtomicBool::new(false),
            write_failure: AtomicU64::new(WriteFailure::NONE),
            wake: Mutex::new(Wake::default()),
            aio: crate::aio::Requests::default(),
        })
    }

    /// The installed state. Installed before Python starts, so always there
    /// when Python calls in.
    pub fn get() -> Option<&'static Shared> {
        SHARED.get()
    }

    /// Forgets any earlier write failure: called before each connection
    /// callback, so that what [`Shared::take_write_failure`] returns happened
    /// during that callback.
    pub fn clear_write_failure(&self) {
        self.write_failure.store(WriteFailure::NONE, Ordering::Relaxed);
    }

    /// The last write failure since [`Shared::clear_write_failure`], if any.
    pub fn take_write_failure(&self) -> Option<WriteFailure> {
        WriteFailure::unpack(self.write_failure.swap(WriteFailure::NONE, Ordering::Relaxed))
    }

    /// Lets `signal_write_ready` wake the loop.
    pub fn attach_waker(&self, waker: Arc<Waker>) {
        self.lock().waker = Some(waker);
    }

    pub fn connection_opened(&self, fd: RawFd, conn_id: u64) {
        self.lock().live.insert(fd, conn_id);
    }

    /// Records connection bytes moved by Python's `read`/`write` helpers.
    fn record(&self, fd: RawFd, data: &[u8], written: bool) {
        let Some(recorder) = &self.recorder else { return };
        let Some(conn_id) = self.lock().live.get(&fd).copied() else { return };
        if written {
            recorder.write(conn_id, data);
        } else {
            recorder.read(conn_id, data);
        }
    }

    pub fn connection_closed(&self, fd: RawFd) {
        self.lock().live.remove(&fd);
    }

    /// Whether `fd` is the descriptor of the open connection `conn_id`.
    pub fn is_live(&self, fd: RawFd, conn_id: u64) -> bool {
        self.lock().live.get(&fd) == Some(&conn_id)
    }

    /// Ends the loop's current or next wait (a timer set from another thread).
    pub fn wake(&self) {
        if let Some(waker) = &self.lock().waker {
            // A failed wake-up only delays the timer until the next event.
            let _ = waker.wake();
        }
    }

    /// Whether write-interest requests wait for [`Shared::take_write_requests`].
    pub fn has_write_requests(&self) -> bool {
        self.write_requested.load(Ordering::Acquire)
    }

    /// Takes the write-interest requests made since the last call, as
    /// (descriptor, connection id).
    pub fn take_write_requests(&self) -> Vec<(RawFd, u64)> {
        // Checked without the lock on every loop turn; a request that lands
        // just after the check has woken the loop, so the next turn takes it.
        if !self.write_requested.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut self.lock().requested)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Wake> {
        self.wake.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks the loop to arm write interest on the connection on `fd`, the
    /// connection `conn_id` when given: `false` when there is none (or `fd`
    /// belongs to another connection by now).
    fn request_write(&self, fd: RawFd, conn_id: Option<u64>) -> bool {
        let mut wake = self.lock();
        let Some(&live) = wake.live.get(&fd) else { return false };
        if conn_id.is_some_and(|id| id != live) {
            return false;
        }
        wake.requested.push((fd, live));
        self.write_requested.store(true, Ordering::Release);
        if let Some(waker) = &wake.waker {
            // A failed wake-up only delays the write until the next event.
            let _ = waker.wake();
        }
        true
    }
}

fn shared() -> PyResult<&'static Shared> {
    Shared::get().ok_or_else(|| PyOSError::new_err("the reactor is not running"))
}

/// Refuses a call meant for the connection `conn_id` once `fd` no longer
/// belongs to it (closed, its number perhaps reused by another connection).
fn check_connection(fd: RawFd, conn_id: Option<u64>) -> PyResult<()> {
    match (conn_id, Shared::get()) {
        (Some(id), Some(s)) if !s.is_live(fd, id) => Err(PyOSError::new_err((
            nix::errno::Errno::EBADF as i32,
            format!("connection {id} (fd {fd}) is closed"),
        ))),
        _ => Ok(()),
    }
}

/// One `read(2)` of up to `size` bytes, into a new `ReactorBuffer` (the
/// same read as the loop's, so no copy): `b''` on end of file, error or
/// would-block, and when `conn_id` is given and `fd` no longer belongs to
/// that connection; `MemoryError` when `size` bytes cannot be allocated.
#[pyfunction]
#[pyo3(signature = (fd, size, conn_id=None))]
fn read(py: Python<'_>, fd: RawFd, size: usize, conn_id: Option<u64>) -> PyResult<Bound<'_, PyBytes>> {
    if check_connection(fd, conn_id).is_err() {
        return Ok(PyBytes::new(py, b""));
    }
    // SAFETY: the descriptor is only borrowed for the call; a bad number
    // gives EBADF, which reads as b''.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let data = match buffer::read(py, fd, size) {
        Ok(Some(data)) => data,
        Ok(None) | Err(buffer::ReadError::Os(_)) => return Ok(PyBytes::new(py, b"")),
        Err(buffer::ReadError::Python(e)) => return Err(e),
    };
    if let Some(s) = Shared::get() {
        s.bytes_in.fetch_add(data.as_bytes().len() as u64, Ordering::Relaxed);
        s.record(fd.as_raw_fd(), data.as_bytes(), false);
    }
    Ok(data)
}

/// One `write(2)` of a bytes-like object: bytes written, 0 when it would
/// block; `OSError` (`EBADF`) when `conn_id` is given and `fd` no longer
/// belongs to that connection.
#[pyfunction]
#[pyo3(signature = (fd, data, conn_id=None))]
fn write(fd: RawFd, data: &Bound<'_, PyAny>, conn_id: Option<u64>) -> PyResult<usize> {
    check_connection(fd, conn_id)?;
    // bytes and bytearray, the usual arguments, are read in place; anything
    // else goes through the buffer protocol.
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return write_bytes(fd, bytes.as_bytes());
    }
    if let Ok(array) = data.cast::<PyByteArray>() {
        // SAFETY: no Python code runs while the slice is in use (the GIL is
        // held and `write_bytes` calls none), so nothing can resize the array.
        return write_bytes(fd, unsafe { array.as_bytes() });
    }
    let buffer = PyBuffer::<u8>::get(data)?;
    if !buffer.is_c_contiguous() {
        return Err(PyValueError::new_err("write needs a contiguous buffer"));
    }
    // SAFETY: `buffer` keeps the exporter's memory alive and unchanged-length
    // while it is held; the slice does not outlive it.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.buf_ptr() as *const u8, buffer.len_bytes()) };
    let result = write_bytes(fd, bytes);
    drop(buffer);
    result
}

fn write_bytes(fd: RawFd, bytes: &[u8]) -> PyResult<usize> {
    // SAFETY: borrowed for the call only.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let result = nix::unistd::write(borrowed, bytes);
    if let (Ok(n), Some(s)) = (result, Shared::get()) {
        s.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
        s.record(fd, &bytes[..n], true);
    }
    match result {
        Ok(n) => Ok(n),
        Err(nix::errno::Errno::EAGAIN) => Ok(0),
        Err(errno) => {
            if let Some(s) = Shared::get() {
                s.write_failure.store(WriteFailure { fd, errno }.packed(), Ordering::Relaxed);
            }
            // OSError(errno, text) gives the subclass, as os.write would:
            // ConnectionResetError, BrokenPipeError, ...
            Err(PyOSError::new_err((errno as i32, errno.desc())))
        }
    }
}

/// Arms write interest for the connection on `fd` (after `"async_pending"`),
/// only if it is the connection `conn_id` when that is given.
#[pyfunction]
#[pyo3(signature = (fd, conn_id=None))]
fn signal_write_ready(fd: RawFd, conn_id: Option<u64>) -> PyResult<bool> {
    Ok(shared()?.request_write(fd, conn_id))
}

/// `callback(*args)` in the loop thread after `delay` seconds; the timer
/// belongs to the connection `conn_id` on `fd` when both are given.
#[pyfunction]
#[pyo3(signature = (delay, callback, args, fd=None, conn_id=None))]
fn call_later(
    py: Python<'_>,
    delay: f64,
    callback: Py<PyAny>,
    args: Py<pyo3::types::PyTuple>,
    fd: Option<RawFd>,
    conn_id: Option<u64>,
) -> PyResult<Py<TimerHandle>> {
    let owner = match (fd, conn_id) {
        (Some(fd), Some(conn_id)) => Some(Owner { fd, conn_id }),
        (None, None) => None,
        _ => return Err(PyValueError::new_err("fd and conn_id go together")),
    };
    super::timers::call_later(py, delay, callback, args, owner)
}

/// The clock of timers: `time.monotonic()`, in seconds.
#[pyfunction]
fn time() -> f64 {
    super::timers::monotonic()
}

/// Watches `fd` for the context's asyncio loop: `events` is a `selectors`
/// mask (1 read, 2 write), replacing what was watched.
#[pyfunction]
fn aio_watch(fd: RawFd, events: u8) -> PyResult<()> {
    let shared = shared()?;
    if shared.lock().live.contains_key(&fd) {
        return Err(PyValueError::new_err(format!(
            "fd {fd} is a connection of this context: the port watches it already (use the protocol's actions)"
        )));
    }
    crate::aio::check_watchable(fd).map_err(|errno| PyOSError::new_err((errno as i32, errno.desc())))?;
    shared.aio.watch(fd, events);
    Ok(())
}

/// Stops watching `fd` for the context's asyncio loop.
#[pyfunction]
fn aio_unwatch(fd: RawFd) -> PyResult<()> {
    shared()?.aio.unwatch(fd);
    Ok(())
}

/// Tells the port that the asyncio loop has a callback ready or a new timer:
/// it runs a loop iteration in this turn.
#[pyfunction]
fn aio_schedule() -> PyResult<()> {
    // No wake-up needed: from the loop's thread the port is not waiting,
    // and `call_soon_threadsafe` from another thread writes to the loop's
    // self-pipe, which the port watches.
    shared()?.aio.schedule();
    Ok(())
}

/// Replies to the `call` whose coroutine ran as `task`, now done: its
/// result, or the exception it raised (a cancelled task gives
/// `asyncio.CancelledError`).
#[pyfunction]
fn aio_call_done(py: Python<'_>, token: u64, task: &Bound<'_, PyAny>) -> PyResult<()> {
    use crate::message::RequestFailure;
    let shared = shared()?;
    let Some(reference) = shared.aio.complete_call(token) else { return Ok(()) };
    let outcome = task.call_method0("result");
    let notice = match outcome {
        Ok(value) => match py_to_term(&value) {
            Ok(term) => Notice::ok_value(reference, term),
            Err(e) => Notice::failed(reference, &RequestFailure::Unconvertible(e.to_string())),
        },
        Err(e) => Notice::failed(reference, &RequestFailure::Python(super::python_error(py, e))),
    };
    shared.outbound.send(&notice).map_err(|e| PyOSError::new_err(format!("cannot reach the VM: {e}")))
}

/// Sends `term` to `dest`: an Erlang pid, or the name (`str` or
/// `erlang.Atom`) a process is registered under on the context's node.
#[pyfunction]
fn send(dest: &Bound<'_, PyAny>, term: &Bound<'_, PyAny>) -> PyResult<()> {
    let message = py_to_term(term).map_err(|e| PyTypeError::new_err(e.to_string()))?;
    let pid = if let Ok(pid) = dest.cast::<Pid>() {
        Term::from(pid.get().pid().clone())
    } else if let Ok(name) = dest.extract::<String>() {
        if name.is_empty() || name.chars().count() > 255 {
            return Err(PyValueError::new_err(format!("{name:?} is not a registered name")));
        }
        Term::from(eetf::Atom::from(name))
    } else {
        return Err(PyTypeError::new_err(format!(
            "send needs an erlang.Pid or a registered name, not {}",
            dest.get_type().name()?
        )));
    };
    shared()?
        .outbound
        .send(&Notice::Send { pid, message })
        .map_err(|e| PyOSError::new_err(format!("cannot reach the VM: {e}")))
}

/// Sends `request` to the VM and waits up to `timeout` seconds for its
/// answer, which is returned (see `vm_request` and docs/protocol.md); the
/// GIL is released meanwhile. `OSError` when the VM is gone or out of
/// reach, `TimeoutError` when no answer came.
#[pyfunction]
fn vm_request<'py>(py: Python<'py>, request: &Bound<'py, PyAny>, timeout: f64) -> PyResult<Bound<'py, PyAny>> {
    let request = py_to_term(request).map_err(|e| PyTypeError::new_err(e.to_string()))?;
    if !(timeout.is_finite() && timeout >= 0.0) {
        return Err(PyValueError::new_err(format!("timeout must be a number of seconds, not {timeout}")));
    }
    let shared = shared()?;
    let timeout = std::time::Duration::from_secs_f64(timeout);
    let seen = |frame: &[u8]| {
        if let Some(recorder) = &shared.recorder {
            recorder.frame_in(frame);
        }
    };
    let send = |id, request| shared.outbound.send(&Notice::VmRequest { id, request });
    let result = py.detach(|| crate::vm_request::request(request, timeout, send, &seen));
    match result {
        Ok(term) => super::convert::term_to_py(py, &term).map_err(|e| PyValueError::new_err(e.to_string())),
        Err(e @ crate::vm_request::WaitError::Timeout(_)) => Err(pyo3::exceptions::PyTimeoutError::new_err(e.to_string())),
        Err(e) => Err(PyOSError::new_err(e.to_string())),
    }
}

/// Sends a line to the VM's logger.
#[pyfunction]
fn log(level: &str, text: &str) -> PyResult<()> {
    let level = LogLevel::from_name(level)
        .ok_or_else(|| PyValueError::new_err(format!("unknown log level {level:?}")))?;
    // A log line that cannot reach the VM has nowhere else to go.
    let _ = shared()?.outbound.send(&Notice::Log { level, text: text.to_string() });
    Ok(())
}

/// The module object, registered with `append_to_inittab!` before Python starts.
#[pymodule]
pub fn _py_reactor(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ReactorBuffer", buffer::reactor_buffer_type(m.py())?)?;
    m.add_class::<Pid>()?;
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_function(wrap_pyfunction!(write, m)?)?;
    m.add_function(wrap_pyfunction!(signal_write_ready, m)?)?;
    m.add_class::<TimerHandle>()?;
    m.add_function(wrap_pyfunction!(call_later, m)?)?;
    m.add_function(wrap_pyfunction!(time, m)?)?;
    m.add_function(wrap_pyfunction!(send, m)?)?;
    m.add_function(wrap_pyfunction!(log, m)?)?;
    m.add_function(wrap_pyfunction!(aio_watch, m)?)?;
    m.add_function(wrap_pyfunction!(aio_unwatch, m)?)?;
    m.add_function(wrap_pyfunction!(aio_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(aio_call_done, m)?)?;
    m.add_function(wrap_pyfunction!(vm_request, m)?)?;
    m.add("Atom", super::convert::atom_type(m.py())?)?;
    Ok(())
}
