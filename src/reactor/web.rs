//! The loop's side of HTTP connections: reads handed to the engine, workers
//! that finished, deadlines that fell, and error responses. The engine
//! (`crate::http`) decides; this module only applies its decisions to the
//! connection table and the selector.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eetf::Term;
use nix::errno::Errno;
use pyo3::prelude::*;

use super::{Connection, Handler, Reactor, READ_SIZE};
use crate::http::engine::{Engine, Next, Peer};
use crate::http::{HttpError, Limits};
use crate::message::{CloseReason, LogLevel, PythonError};
use crate::python::wsgi::{Gil, WsgiApp};
use crate::readiness::{Interest, Ready};
use crate::terms::{as_atom, as_bytes, as_u64};

impl Reactor {
    /// The engine for a WSGI application returned by the setup, if any.
    pub(super) fn http_engine(
        &self,
        py: Python<'_>,
        app: Option<Py<PyAny>>,
        limits: Limits,
    ) -> Result<Option<Engine>, PythonError> {
        let Some(app) = app else { return Ok(None) };
        let app = WsgiApp::new(py, app, &limits).map_err(|e| crate::python::python_error(py, e))?;
        let engine = Engine::new(limits, Arc::new(app), Arc::new(Gil), self.selector.waker()).map_err(|e| PythonError {
            kind: "OSError".into(),
            message: format!("cannot start the application threads: {e}"),
            traceback: String::new(),
        })?;
        if let Err(e) = crate::http::pool::yield_to_workers() {
            // Serving is correct without it, only slower on a busy CPU.
            self.log(LogLevel::Warning, format!("the loop cannot yield to the WSGI threads (SCHED_BATCH): {e}"));
        }
        Ok(Some(engine))
    }

    /// Waits for events like [`crate::readiness::Selector::wait`], with the
    /// GIL released, and serves what needs no Python itself, turn after
    /// turn, without taking the GIL: reads of HTTP connections, the requests
    /// workers finished, the HTTP deadlines. Returns, with the events left
    /// to serve in `ready`, when something needs Python: another kind of
    /// event, a timer or another deadline due, frames or asyncio work
    /// waiting, the loop's end. So the loop takes the GIL from the workers
    /// only for what is not HTTP, and never waits for the GIL to serve HTTP.
    pub(super) fn wait_http(&mut self, ready: &mut Vec<Ready>, mut timeout: Option<Duration>) -> std::io::Result<()> {
        loop {
            self.selector.poll(timeout)?;
            // Connections the workers finished are armed again before the
            // events are delivered: see `Selector::poll`. Under load the
            // client's next request is usually among them.
            self.http_finished();
            self.selector.deliver_polled(ready)?;
            let now = Instant::now();
            if self.idle_timeout.is_some() {
                self.now = now;
            }
            // Events stay in order: the others are served later, under the GIL.
            ready.retain(|event| !self.http_event(*event));
            // Deadlines first: see `http_deadlines`.
            self.http_deadlines(now);
            self.http_finished();
            self.apply_aio_requests();
            if !ready.is_empty() || self.needs_python(now) {
                return Ok(());
            }
            let aio = self.aio.as_ref().and_then(|aio| aio.timeout(&self.shared.aio));
            let deadline = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            timeout = match (deadline, aio) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
    }

    /// Serves `event` if it is an HTTP connection's; false if it is not.
    fn http_event(&mut self, event: Ready) -> bool {
        let Some(fd) = event.key.checked_sub(super::KEY_FIRST_CONNECTION) else { return false };
        let fd = fd as RawFd;
        let Some(Some(conn)) = self.connections.get_mut(fd as usize) else { return false };
        if !matches!(conn.handler, Handler::Http(_)) {
            return false;
        }
        if self.idle_timeout.is_some() {
            conn.last_event = self.now;
        }
        if event.interest.read {
            self.http_readable(fd);
        }
        if self.connection(fd).is_some() {
            if let Err(e) = self.selector.settle(event.key) {
                self.close_http(fd, CloseReason::Io(super::io_errno(&e)));
            }
        }
        true
    }

    /// Whether the loop has work that needs Python (or its end) now.
    fn needs_python(&mut self, now: Instant) -> bool {
        self.exit.is_some()
            || self.shared.outbound.is_broken()
            || crate::lifeline::parent_gone()
            || self.input.as_ref().is_some_and(|input| input.has_queued())
            || !self.parked_calls.is_empty()
            || !self.pairing.is_empty()
            || self.shared.has_write_requests()
            || self.aio.as_ref().and_then(|aio| aio.timeout(&self.shared.aio)).is_some_and(|t| t.is_zero())
            || self.next_deadline().is_some_and(|at| at <= now)
    }

    pub(super) fn http_readable(&mut self, fd: RawFd) {
        let Some(Some(Connection { conn_id, fd: owned, handler: Handler::Http(conn), .. })) =
            self.connections.get_mut(fd as usize)
        else {
            return;
        };
        let conn_id = *conn_id;
        let Some(engine) = &mut self.http else { return };
        let scratch = engine.read_buffer();
        scratch.reserve(READ_SIZE);
        let result = read_into_spare(owned.as_fd(), scratch);
        if let Ok(n) = result {
            conn.buf.extend_from_slice(&scratch[..n]);
        }
        let next = match result {
            Ok(0) => return self.close_http(fd, CloseReason::Eof),
            Ok(n) => {
                self.shared.bytes_in.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                let (next, counted) = engine.advance(fd, conn_id, conn, Instant::now());
                if counted {
                    self.counters.total_requests += 1;
                }
                next
            }
            Err(Errno::EAGAIN | Errno::EINTR) => Next::Read,
            Err(errno) => return self.close_http(fd, CloseReason::Io(errno)),
        };
        self.http_next(fd, next);
    }

    /// Feeds the bytes the VM received before the handoff to the HTTP
    /// engine, as if the loop had read them, ahead of anything it reads.
    pub(super) fn http_initial_data(&mut self, fd: RawFd, data: &[u8]) {
        let Some(Some(Connection { conn_id, handler: Handler::Http(conn), .. })) = self.connections.get_mut(fd as usize)
        else {
            return;
        };
        let conn_id = *conn_id;
        conn.buf.extend_from_slice(data);
        self.shared.bytes_in.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let Some(engine) = &mut self.http else { return };
        let (next, counted) = engine.advance(fd, conn_id, conn, Instant::now());
        if counted {
            self.counters.total_requests += 1;
        }
        self.http_next(fd, next);
    }

    fn http_next(&mut self, fd: RawFd, next: Next) {
        match next {
            Next::Read => {
                if let Err(e) = self.selector.select(super::connection_key(fd), Interest::READ) {
                    self.close_http(fd, CloseReason::Io(super::io_errno(&e)));
                }
            }
            Next::InApp => {}
            Next::Close => self.close_http(fd, CloseReason::Normal),
            Next::Refuse(error) => {
                if let Some(conn) = self.connection(fd) {
                    refuse(&conn.fd, error);
                }
                self.close_http(fd, CloseReason::Normal);
            }
        }
    }

    /// Closes an HTTP connection: like `Reactor::close`, with no Python to
    /// call, so without the GIL.
    fn close_http(&mut self, fd: RawFd, reason: CloseReason) {
        let Some(mut conn) = self.connections.get_mut(fd as usize).and_then(Option::take) else { return };
        if let (Handler::Http(http), Some(engine)) = (&mut conn.handler, &mut self.http) {
            engine.forget(http);
        }
        if let Some(timer) = conn.idle_timer {
            self.idle.cancel(timer);
        }
        self.release_connection(conn.conn_id, conn.fd, reason);
    }

    /// Connections whose worker finished: the next request, or idle.
    pub(super) fn http_finished(&mut self) {
        let Some(engine) = &self.http else { return };
        for done in engine.take_done() {
            let fd = done.fd;
            if done.python_error {
                self.counters.python_errors += 1;
            }
            let Some(Some(Connection { conn_id, handler: Handler::Http(conn), last_event, .. })) =
                self.connections.get_mut(fd as usize)
            else {
                continue;
            };
            // The connection was closed (the port is stopping) and the number
            // may be another connection's now.
            if *conn_id != done.conn_id {
                continue;
            }
            let now = Instant::now();
            // Back from the application: `idle_timeout` counts from here.
            *last_event = now;
            let Some(engine) = &mut self.http else { return };
            let (next, counted) = engine.resume(fd, conn, done, now);
            if counted {
                self.counters.total_requests += 1;
            }
            self.http_next(fd, next);
        }
    }

    /// Idle connections past `keepalive_timeout` are closed; heads not
    /// complete within `header_timeout` get 408; the pool's queue is checked
    /// for a stall. Called before [`Reactor::http_finished`]: a worker that
    /// finished while jobs were queued did not wake the loop, and relies on
    /// a queue check still to come, or on this turn's `http_finished` if the
    /// check found the queue empty.
    pub(super) fn http_deadlines(&mut self, now: Instant) {
        let Some(engine) = &mut self.http else { return };
        engine.check_pool(now);
        if !engine.next_deadline().is_some_and(|at| at <= now) {
            return;
        }
        for (id, fd) in engine.fallen(now) {
            let Some(Some(Connection { handler: Handler::Http(conn), .. })) = self.connections.get_mut(fd as usize)
            else {
                continue;
            };
            let Some(engine) = &mut self.http else { return };
            if let Some(next) = engine.expire(conn, id) {
                self.http_next(fd, next);
            }
        }
    }
}

/// Sends the error response, as much as the socket takes at once, and reads
/// what the client sent meanwhile: closing a socket with unread input makes
/// the kernel reset the connection, which can destroy the response before
/// the client has read it.
pub(super) fn refuse(fd: &OwnedFd, error: HttpError) {
    let response = error.response();
    let _ = nix::unistd::write(fd, &response);
    let _ = nix::sys::socket::shutdown(fd.as_raw_fd(), nix::sys::socket::Shutdown::Write);
    let mut sink = [0u8; 16384];
    for _ in 0..64 {
        match nix::unistd::read(fd, &mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

/// Who is at either end of the connection: the client from `client_info`
/// (`addr`, `port`), the server from the socket's own address.
pub(super) fn peer(fd: &OwnedFd, client_info: &Term) -> Peer {
    let mut peer = Peer::default();
    if let Term::Map(map) = client_info {
        for (key, value) in &map.map {
            match as_atom(key) {
                Some("addr") => {
                    if let Some(b) = as_bytes(value) {
                        peer.remote_addr = String::from_utf8_lossy(b).into_owned();
                    }
                }
                Some("port") => {
                    if let Some(p) = as_u64(value) {
                        peer.remote_port = p.to_string();
                    }
                }
                _ => {}
            }
        }
    }
    use nix::sys::socket::{getsockname, SockaddrStorage};
    if let Ok(addr) = getsockname::<SockaddrStorage>(fd.as_raw_fd()) {
        if let Some(v4) = addr.as_sockaddr_in() {
            peer.server_name = v4.ip().to_string();
            peer.server_port = v4.port().to_string();
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            peer.server_name = v6.ip().to_string();
            peer.server_port = v6.port().to_string();
        }
    }
    if peer.server_name.is_empty() {
        peer.server_name = "localhost".into();
        peer.server_port = "0".into();
    }
    peer
}

/// One `read(2)` into the unused capacity of `buf`, which grows by what was
/// read; the memory is not zero-filled first only to be overwritten.
fn read_into_spare(fd: std::os::fd::BorrowedFd<'_>, buf: &mut Vec<u8>) -> nix::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the kernel writes at most `spare.len()` bytes into memory that
    // `buf` owns and does not otherwise use; exactly the bytes it reports as
    // read are then marked initialised.
    let n = unsafe { nix::libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    let n = Errno::result(n)? as usize;
    // SAFETY: `read` initialised the first `n` spare bytes.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}
