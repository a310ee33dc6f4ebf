//! The loop's side of ASGI connections: reads and writes handed to each
//! connection's state ([`crate::python::asgi::Conn`]), applications started
//! as tasks, deadlines, and the `lifespan` scope run before the context
//! answers its setup and after it is told to stop.
//!
//! The application's `receive` and `send` note the connections whose state
//! they changed; after each iteration of the asyncio loop the loop settles
//! those (arms what they wait for, starts the next pipelined request, or
//! closes them), as it settles a connection after each of its events.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use eetf::Term;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{Connection, Handler, Reactor, KEY_FIRST_CONNECTION};
use crate::http::HttpError;
use crate::message::{CloseReason, LogLevel, RequestFailure, SetupOptions};
use crate::python::asgi::{self, Conn, Next, Phase, Server};
use crate::python::python_error;
use crate::readiness::{Interest, Ready};
use crate::timers::{TimerId, Timers};

/// How long a stopping context lets its cancelled request tasks end.
const REQUESTS_GRACE: Duration = Duration::from_secs(1);

/// The ASGI side of one context.
pub(super) struct AsgiServer {
    server: Py<Server>,
    lifespan: Py<PyAny>,
    cancel_requests: Py<PyAny>,
    pending_requests: Py<PyAny>,
    /// Idle and head deadlines, by descriptor.
    deadlines: Timers<RawFd>,
    notes: Vec<(RawFd, u64)>,
}

/// The loop's handle on one ASGI connection.
pub(super) struct AsgiConn {
    conn: Py<Conn>,
    deadline: Option<TimerId>,
    /// The phase the running deadline was set for.
    timed: Option<Phase>,
}

fn python_failure(py: Python<'_>, e: PyErr) -> RequestFailure {
    RequestFailure::Python(python_error(py, e))
}

impl Reactor {
    /// Sets up serving the ASGI application `app`: the `lifespan` startup
    /// runs to its end before this returns (the setup's reply waits for it).
    pub(super) fn asgi_setup(&mut self, py: Python<'_>, app: Py<PyAny>, options: &SetupOptions) -> Result<(), RequestFailure> {
        let module = py.import("erlang.asgi").map_err(|e| python_failure(py, e))?;
        let mode = options.lifespan.as_deref().unwrap_or("auto");
        let lifespan = module.getattr("Lifespan").and_then(|l| l.call1((&app, mode))).map_err(|e| python_failure(py, e))?;
        let started = lifespan.call_method0("startup").map_err(|e| python_failure(py, e))?.unbind();
        let done = |py: Python<'_>| started.bind(py).call_method0("done").and_then(|d| d.is_truthy()).unwrap_or(true);
        if !self.asgi_drive(py, None, &done) {
            return Err(RequestFailure::LifespanStartupFailed("the port is stopping".into()));
        }
        let failure: Option<String> = started.bind(py).call_method0("result").and_then(|r| r.extract()).map_err(|e| python_failure(py, e))?;
        if let Some(message) = failure {
            return Err(RequestFailure::LifespanStartupFailed(message));
        }
        let state = lifespan.getattr("state").and_then(|s| Ok(s.cast_into::<PyDict>()?.unbind())).map_err(|e| python_failure(py, e))?;
        let server = Server::new(py, app, state, options.http).map_err(|e| python_failure(py, e))?;
        let get = |name: &str| module.getattr(name).map(Bound::unbind).map_err(|e| python_failure(py, e));
        self.asgi = Some(AsgiServer {
            server,
            lifespan: lifespan.unbind(),
            cancel_requests: get("cancel_requests")?,
            pending_requests: get("pending_requests")?,
            deadlines: Timers::new(),
            notes: Vec::new(),
        });
        Ok(())
    }

    /// Runs the asyncio loop, serving its own descriptors only, until `done`
    /// or `deadline`; false when the VM went away meanwhile or the deadline
    /// passed. Other descriptors' events are kept for the main loop.
    fn asgi_drive(&mut self, py: Python<'_>, deadline: Option<Instant>, done: &dyn Fn(Python<'_>) -> bool) -> bool {
        let mut ready: Vec<Ready> = Vec::new();
        let mut kept: Vec<Ready> = Vec::new();
        let finished = loop {
            self.shared.aio.schedule();
            self.step_asyncio(py);
            if done(py) {
                break true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) || crate::lifeline::parent_gone() {
                break false;
            }
            let Some(aio) = &self.aio else { break false };
            // Unbounded without a timer: the lifeline wakes the wait if
            // the VM dies meanwhile.
            let timeout = match (aio.timeout(&self.shared.aio), deadline) {
                (Some(t), Some(d)) => Some(t.min(d - now)),
                (t, d) => t.or(d.map(|d| d - now)),
            };
            ready.clear();
            self.apply_aio_requests();
            let selector = &mut self.selector;
            if py.detach(|| selector.wait(&mut ready, timeout)).is_err() {
                break false;
            }
            for event in ready.iter().copied() {
                let fd = event.key.wrapping_sub(KEY_FIRST_CONNECTION) as RawFd;
                if event.key >= KEY_FIRST_CONNECTION && self.connection(fd).is_none() {
                    if let Some(aio) = self.aio.as_mut().filter(|aio| aio.owns(fd)) {
                        aio.on_ready(fd, event.interest);
                        continue;
                    }
                }
                kept.push(event);
            }
        };
        // One-shot: what fired and was not served is armed again, and being
        // level-triggered it is delivered again to the main loop.
        for event in kept {
            let _ = self.selector.select(event.key, event.interest);
        }
        finished
    }

    /// The context stops: request tasks are cancelled and given
    /// [`REQUESTS_GRACE`] to end, then the `lifespan` shutdown runs.
    pub(super) fn asgi_stop(&mut self, py: Python<'_>) {
        let Some(server) = &self.asgi else { return };
        let pending = server.pending_requests.clone_ref(py);
        let lifespan = server.lifespan.clone_ref(py);
        let cancelled = server.cancel_requests.call0(py).and_then(|n| n.extract::<usize>(py)).unwrap_or(0);
        if cancelled > 0 {
            let none_left = |py: Python<'_>| pending.call0(py).and_then(|n| n.extract::<usize>(py)).unwrap_or(0) == 0;
            if !self.asgi_drive(py, Some(Instant::now() + REQUESTS_GRACE), &none_left) {
                self.log(LogLevel::Warning, format!("ASGI request tasks still running {REQUESTS_GRACE:?} after being cancelled"));
            }
        }
        let stopped = match lifespan.call_method0(py, "shutdown") {
            Ok(f) if !f.is_none(py) => f,
            Ok(_) => return,
            Err(e) => {
                let e = python_error(py, e);
                return self.log(LogLevel::Error, format!("ASGI lifespan shutdown: {}", e.traceback.trim_end()));
            }
        };
        let done = |py: Python<'_>| stopped.bind(py).call_method0("done").and_then(|d| d.is_truthy()).unwrap_or(true);
        if !self.asgi_drive(py, Some(Instant::now() + crate::aio::SHUTDOWN_GRACE), &done) {
            return self.log(LogLevel::Warning, format!("ASGI lifespan shutdown not complete within {:?}", crate::aio::SHUTDOWN_GRACE));
        }
        if let Ok(Some(message)) = stopped.bind(py).call_method0("result").and_then(|r| r.extract::<Option<String>>()) {
            self.log(LogLevel::Error, format!("ASGI lifespan shutdown failed: {message}"));
        }
    }

    /// A new connection: it has `header_timeout` to start its first request.
    pub(super) fn asgi_open(&mut self, py: Python<'_>, conn_id: u64, fd: OwnedFd, client_info: &Term, initial_data: Vec<u8>, now: Instant) {
        let Some(server) = &self.asgi else { return };
        let raw = fd.as_raw_fd();
        let peer = super::web::peer(&fd, client_info);
        let limits = server.server.get().limits();
        let conn = match Conn::new(py, server.server.clone_ref(py), raw, conn_id, &peer) {
            Ok(conn) => conn,
            Err(e) => {
                let reason = self.callback_failed(crate::python::CallbackError::Python(python_error(py, e)));
                return self.finish_close(py, conn_id, fd, reason);
            }
        };
        let Some(server) = &mut self.asgi else { return };
        let deadline = Some(server.deadlines.insert(now + limits.header_timeout, raw));
        let handle = AsgiConn { conn, deadline, timed: Some(Phase::Idle) };
        self.insert(conn_id, fd, Handler::Asgi(handle), now);
        if !initial_data.is_empty() {
            self.shared.bytes_in.fetch_add(initial_data.len() as u64, std::sync::atomic::Ordering::Relaxed);
            if let Some(conn) = self.asgi_conn(py, raw) {
                conn.borrow_mut(py).buf = initial_data;
            }
        }
        self.asgi_settle(py, raw);
    }

    fn asgi_conn(&self, py: Python<'_>, fd: RawFd) -> Option<Py<Conn>> {
        match self.connection(fd) {
            Some(Connection { handler: Handler::Asgi(handle), .. }) => Some(handle.conn.clone_ref(py)),
            _ => None,
        }
    }

    pub(super) fn asgi_readable(&mut self, py: Python<'_>, fd: RawFd) {
        let Some(conn) = self.asgi_conn(py, fd) else { return };
        let mut c = conn.borrow_mut(py);
        match c.phase {
            Phase::Idle | Phase::Head => match c.read_some() {
                Ok(Some(0)) => {
                    drop(c);
                    return self.close(py, fd, CloseReason::Eof);
                }
                Err(errno) => {
                    drop(c);
                    return self.close(py, fd, CloseReason::Io(errno));
                }
                Ok(_) => {}
            },
            Phase::App => c.on_readable(py),
            // `next_step` reads what it drops.
            Phase::Discard => {}
        }
        drop(c);
        self.asgi_settle(py, fd);
    }

    pub(super) fn asgi_writable(&mut self, py: Python<'_>, fd: RawFd) {
        let Some(conn) = self.asgi_conn(py, fd) else { return };
        conn.borrow_mut(py).on_writable(py);
        self.asgi_settle(py, fd);
    }

    /// Acts on where the connection is now: arms what it waits for, starts
    /// the application on a complete request, or closes it.
    fn asgi_settle(&mut self, py: Python<'_>, fd: RawFd) {
        loop {
            let Some(conn) = self.asgi_conn(py, fd) else { return };
            let (next, phase, errors) = {
                let mut c = conn.borrow_mut(py);
                let next = c.next_step();
                (next, c.phase, std::mem::take(&mut c.python_errors))
            };
            self.counters.python_errors += errors;
            match next {
                Next::Wait { read, write } => {
                    self.asgi_deadline(fd, phase);
                    let interest = Interest { read, write };
                    if !interest.is_none() {
                        self.select(py, fd, interest);
                    }
                    return;
                }
                Next::Start => {
                    self.asgi_deadline(fd, Phase::App);
                    self.counters.total_requests += 1;
                    let bound = conn.bind(py);
                    let started = Conn::begin(bound).and_then(|call| match call {
                        Some((start, args)) => start.call1(args).map(|_| ()),
                        None => Ok(()),
                    });
                    if let Err(e) = started {
                        bound.borrow_mut().start_failed(py, e);
                    }
                }
                Next::Close => return self.close(py, fd, CloseReason::Normal),
                Next::Refuse(error) => {
                    // Answered with an error status: a request all the same.
                    self.counters.total_requests += 1;
                    return self.asgi_refuse(py, fd, error);
                }
            }
        }
    }

    fn asgi_refuse(&mut self, py: Python<'_>, fd: RawFd, error: HttpError) {
        if let Some(conn) = self.connection(fd) {
            super::web::refuse(&conn.fd, error);
        }
        self.close(py, fd, CloseReason::Normal);
    }

    /// Keeps the connection's deadline right for `phase`: `keepalive_timeout`
    /// while idle between requests, `header_timeout` from a head's first
    /// byte, none while the application has it.
    fn asgi_deadline(&mut self, fd: RawFd, phase: Phase) {
        let Some(server) = &mut self.asgi else { return };
        let Some(Some(Connection { handler: Handler::Asgi(handle), .. })) = self.connections.get_mut(fd as usize) else { return };
        if handle.timed == Some(phase) || (handle.timed.is_none() && matches!(phase, Phase::App | Phase::Discard)) {
            return;
        }
        if let Some(id) = handle.deadline.take() {
            server.deadlines.cancel(id);
        }
        let limits = server.server.get().limits();
        let at = match phase {
            Phase::Idle => Some(Instant::now() + limits.keepalive_timeout),
            Phase::Head => Some(Instant::now() + limits.header_timeout),
            Phase::App | Phase::Discard => None,
        };
        handle.timed = at.map(|_| phase);
        handle.deadline = at.map(|at| server.deadlines.insert(at, fd));
    }

    /// The connection is being closed: its waiters learn it, its deadline goes.
    pub(super) fn asgi_forget(&mut self, py: Python<'_>, handle: &mut AsgiConn) {
        if let Some(server) = &mut self.asgi {
            if let Some(id) = handle.deadline.take() {
                server.deadlines.cancel(id);
            }
        }
        let mut c = handle.conn.borrow_mut(py);
        c.on_closed(py);
        self.counters.python_errors += std::mem::take(&mut c.python_errors);
    }

    /// After the asyncio loop ran: the connections its tasks changed, then
    /// the deadlines that fell.
    pub(super) fn asgi_service(&mut self, py: Python<'_>) {
        let Some(server) = &mut self.asgi else { return };
        let mut notes = std::mem::take(&mut server.notes);
        asgi::take_notes(&mut notes);
        for (fd, conn_id) in notes.drain(..) {
            if self.connection(fd).is_some_and(|c| c.conn_id == conn_id) {
                self.asgi_settle(py, fd);
            }
        }
        let Some(server) = &mut self.asgi else { return };
        server.notes = notes;
        let now = Instant::now();
        if !server.deadlines.next_deadline().is_some_and(|at| at <= now) {
            return;
        }
        let mut fallen = Vec::new();
        server.deadlines.take_due(now, &mut fallen);
        for (id, fd) in fallen {
            let Some(Some(Connection { handler: Handler::Asgi(handle), .. })) = self.connections.get_mut(fd as usize) else {
                continue;
            };
            if handle.deadline != Some(id) {
                continue;
            }
            handle.deadline = None;
            match handle.timed.take() {
                Some(Phase::Idle) => self.close(py, fd, CloseReason::Normal),
                Some(Phase::Head) => self.asgi_refuse(py, fd, HttpError::RequestTimeout),
                _ => {}
            }
        }
    }

    /// When the next ASGI deadline falls.
    pub(super) fn asgi_next_deadline(&mut self) -> Option<Instant> {
        self.asgi.as_mut().and_then(|s| s.deadlines.next_deadline())
    }
}
