//! The loop's side of HTTP connections: reads handed to the engine, workers
//! that finished, deadlines that fell, and error responses. The engine
//! (`crate::http`) decides; this module only applies its decisions to the
//! connection table and the selector.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use eetf::Term;
use nix::errno::Errno;
use pyo3::prelude::*;

use super::{Connection, Handler, Reactor, READ_SIZE};
use crate::http::engine::{Engine, Next, Peer};
use crate::http::{HttpError, Limits};
use crate::message::{CloseReason, PythonError};
use crate::python::wsgi::{Gil, WsgiApp};
use crate::readiness::Interest;
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
        let app = WsgiApp::new(py, app, limits.access_log).map_err(|e| crate::python::python_error(py, e))?;
        Engine::new(limits, Arc::new(app), Arc::new(Gil), self.selector.waker()).map(Some).map_err(|e| PythonError {
            kind: "OSError".into(),
            message: format!("cannot start the application threads: {e}"),
            traceback: String::new(),
        })
    }

    pub(super) fn http_readable(&mut self, py: Python<'_>, fd: RawFd) {
        let Some(Some(Connection { conn_id, fd: owned, handler: Handler::Http(conn), .. })) =
            self.connections.get_mut(fd as usize)
        else {
            return;
        };
        let conn_id = *conn_id;
        conn.buf.reserve(READ_SIZE);
        let result = read_into_spare(owned.as_fd(), &mut conn.buf);
        let next = match result {
            Ok(0) => return self.close(py, fd, CloseReason::Eof),
            Ok(n) => {
                self.shared.bytes_in.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                let Some(engine) = &mut self.http else { return };
                let (next, counted) = engine.advance(fd, conn_id, conn, Instant::now());
                if counted {
                    self.counters.total_requests += 1;
                }
                next
            }
            Err(Errno::EAGAIN | Errno::EINTR) => Next::Read,
            Err(errno) => return self.close(py, fd, CloseReason::Io(errno)),
        };
        self.http_next(py, fd, next);
    }

    /// Feeds the bytes the VM received before the handoff to the HTTP
    /// engine, as if the loop had read them, ahead of anything it reads.
    pub(super) fn http_initial_data(&mut self, py: Python<'_>, fd: RawFd, data: &[u8]) {
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
        self.http_next(py, fd, next);
    }

    fn http_next(&mut self, py: Python<'_>, fd: RawFd, next: Next) {
        match next {
            Next::Read => self.select(py, fd, Interest::READ),
            Next::InApp => {}
            Next::Close => self.close(py, fd, CloseReason::Normal),
            Next::Refuse(error) => {
                if let Some(conn) = self.connection(fd) {
                    refuse(&conn.fd, error);
                }
                self.close(py, fd, CloseReason::Normal);
            }
        }
    }

    /// Connections whose worker finished: the next request, or idle.
    pub(super) fn http_finished(&mut self, py: Python<'_>) {
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
            self.http_next(py, fd, next);
        }
    }

    /// Idle connections past `keepalive_timeout` are closed; heads not
    /// complete within `header_timeout` get 408.
    pub(super) fn http_deadlines(&mut self, py: Python<'_>, now: Instant) {
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
                self.http_next(py, fd, next);
            }
        }
    }
}

/// Sends the error response, as much as the socket takes at once, and reads
/// what the client sent meanwhile: closing a socket with unread input makes
/// the kernel reset the connection, which can destroy the response before
/// the client has read it.
fn refuse(fd: &OwnedFd, error: HttpError) {
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
