//! What the loop keeps for each HTTP connection, and the hand-over of each
//! request to the application's worker thread and back.
//!
//! A connection is idle (waiting for a request: the keep-alive deadline
//! runs), reading a head (from its first byte, the header deadline runs),
//! or in the application (a worker owns it; no deadline, the loop does not
//! touch it). Requests of one connection are served one after the other, so
//! pipelined responses go out in order; the bytes of the next request that
//! came with the body of this one travel with the worker and back.
//!
//! Each connection has at most one deadline at a time, a timer of the
//! engine's [`Timers`] (the loop's timer heap) replaced as the connection
//! moves on.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::pool::{Hold, Pool, STALL};
use super::request::{self, Head};
use super::{HttpError, Limits};
use crate::readiness::Waker;
use crate::timers::{TimerId, Timers};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Waiting for the first byte of a request.
    Idle,
    /// Part of a request head has come.
    Head,
    /// A worker is serving a request.
    InApp,
}

/// Who is at either end of a connection, for `environ`.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub remote_addr: String,
    pub remote_port: String,
    pub server_name: String,
    pub server_port: String,
}

/// The loop's state of one HTTP connection.
#[derive(Debug)]
pub struct HttpConn {
    /// Bytes read and not yet parsed.
    pub buf: Vec<u8>,
    pub state: ConnState,
    /// The running deadline, if one runs.
    deadline: Option<TimerId>,
    pub peer: Arc<Peer>,
}

/// One request handed to the application.
#[derive(Debug)]
pub struct Exchange {
    pub fd: RawFd,
    pub conn_id: u64,
    pub head: Head,
    /// Bytes read after the head: the start of the body, maybe more requests.
    pub raw: Vec<u8>,
    pub peer: Arc<Peer>,
    pub limits: Limits,
}

/// A request served, as the worker reports it to the loop.
#[derive(Debug)]
pub struct Done {
    pub fd: RawFd,
    pub conn_id: u64,
    /// Bytes read past the request: the next pipelined request(s).
    pub leftover: Vec<u8>,
    /// Whether the connection can serve another request.
    pub keep_alive: bool,
    /// Whether the application raised.
    pub python_error: bool,
}

/// Runs one request to the end (on a worker thread).
pub trait App: Send + Sync {
    fn serve(&self, exchange: Exchange) -> Done;
}

/// What the loop does next with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Arm read interest.
    Read,
    /// A worker has it: arm nothing.
    InApp,
    /// Close it.
    Close,
    /// Answer with this error, then close.
    Refuse(HttpError),
}

/// The HTTP side of one context.
pub struct Engine {
    pub limits: Limits,
    pool: Pool,
    app: Arc<dyn App>,
    done: Arc<Mutex<Vec<Done>>>,
    waker: Arc<Waker>,
    /// The connections' deadlines, by descriptor.
    deadlines: Timers<RawFd>,
    /// When to look for jobs that have run past the pool's `STALL` ([`Pool::check`]).
    pool_check: Option<Instant>,
    /// Where the loop reads a connection's bytes before they are appended to
    /// its buffer: one large buffer kept for every read, and each
    /// connection's buffer only as large as what came (a head, usually).
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("limits", &self.limits).field("pool", &self.pool).finish()
    }
}

impl Engine {
    /// An engine running `app` on `limits.threads` threads, each holding
    /// `hold` while it runs requests; `waker` wakes the loop when a worker
    /// has finished.
    pub fn new(limits: Limits, app: Arc<dyn App>, hold: Arc<dyn Hold>, waker: Arc<Waker>) -> std::io::Result<Engine> {
        Ok(Engine {
            limits,
            pool: Pool::new(limits.threads, hold)?,
            app,
            done: Arc::new(Mutex::new(Vec::new())),
            waker,
            deadlines: Timers::new(),
            pool_check: None,
            scratch: Vec::new(),
        })
    }

    /// A new connection: it has `header_timeout` to start a request.
    pub fn open(&mut self, fd: RawFd, peer: Peer, now: Instant) -> HttpConn {
        let mut conn = HttpConn { buf: Vec::new(), state: ConnState::Idle, deadline: None, peer: Arc::new(peer) };
        self.set_deadline(fd, &mut conn, Some(now + self.limits.header_timeout));
        conn
    }

    fn set_deadline(&mut self, fd: RawFd, conn: &mut HttpConn, at: Option<Instant>) {
        if let Some(id) = conn.deadline.take() {
            self.deadlines.cancel(id);
        }
        conn.deadline = at.map(|at| self.deadlines.insert(at, fd));
    }

    /// The buffer to read into (emptied), to be appended to a connection's.
    pub fn read_buffer(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        &mut self.scratch
    }

    /// The connection is closed: its deadline goes.
    pub fn forget(&mut self, conn: &mut HttpConn) {
        if let Some(id) = conn.deadline.take() {
            self.deadlines.cancel(id);
        }
    }

    /// Bytes were appended to `conn.buf`: parses, and hands a complete
    /// request to a worker.
    pub fn advance(&mut self, fd: RawFd, conn_id: u64, conn: &mut HttpConn, now: Instant) -> (Next, bool) {
        if conn.buf.is_empty() {
            return (Next::Read, false);
        }
        if conn.state == ConnState::Idle {
            conn.state = ConnState::Head;
            self.set_deadline(fd, conn, Some(now + self.limits.header_timeout));
        }
        match request::parse(&conn.buf, &self.limits) {
            Ok(None) => (Next::Read, false),
            Err(e) => (Next::Refuse(e), true),
            Ok(Some((head, length))) => {
                let raw = conn.buf.split_off(length);
                conn.buf.clear();
                conn.state = ConnState::InApp;
                self.set_deadline(fd, conn, None);
                let exchange = Exchange { fd, conn_id, head, raw, peer: Arc::clone(&conn.peer), limits: self.limits };
                let (app, done, waker) = (Arc::clone(&self.app), Arc::clone(&self.done), Arc::clone(&self.waker));
                self.pool.submit(now, move || {
                    let finished = app.serve(exchange);
                    done.lock().unwrap_or_else(|p| p.into_inner()).push(finished);
                    // The response is out; the loop only has to take the
                    // connection back. While jobs wait, the loop is not
                    // woken for each: it takes back what is done when this
                    // thread has none left, at its next event, or at the
                    // latest when it checks the queue ([`Engine::check_pool`]).
                    if !super::pool::more_queued() {
                        // A failed wake-up only delays the connection to the next event.
                        let _ = waker.wake();
                    }
                });
                self.pool_check = crate::timers::earliest(self.pool_check, Some(now + STALL));
                (Next::InApp, true)
            }
        }
    }

    /// The requests the workers finished since the last call.
    pub fn take_done(&self) -> Vec<Done> {
        let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *done)
    }

    /// A worker finished with `conn`: the next pipelined request, or idle.
    pub fn resume(&mut self, fd: RawFd, conn: &mut HttpConn, done: Done, now: Instant) -> (Next, bool) {
        if !done.keep_alive {
            return (Next::Close, false);
        }
        conn.buf = done.leftover;
        conn.state = ConnState::Idle;
        if conn.buf.is_empty() {
            self.set_deadline(fd, conn, Some(now + self.limits.keepalive_timeout));
            return (Next::Read, false);
        }
        self.advance(fd, done.conn_id, conn, now)
    }

    /// When the next deadline falls, if any runs.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        crate::timers::earliest(self.deadlines.next_deadline(), self.pool_check)
    }

    /// Hands the queued requests to another worker if the running one's
    /// request has run past the pool's `STALL` (it blocks where the pool
    /// cannot see it, or is long), when that is due.
    pub fn check_pool(&mut self, now: Instant) {
        if self.pool_check.is_some_and(|at| at <= now) {
            self.pool_check = self.pool.check(now);
        }
    }

    /// Deadlines that fell by `now`, as (timer, descriptor): pass each to
    /// [`Engine::expire`] with its connection.
    pub fn fallen(&mut self, now: Instant) -> Vec<(TimerId, RawFd)> {
        let mut fallen = Vec::new();
        self.deadlines.take_due(now, &mut fallen);
        fallen
    }

    /// The deadline `id` of `conn` fell: what to do, unless it is not the
    /// connection's (the descriptor number was reused).
    pub fn expire(&mut self, conn: &mut HttpConn, id: TimerId) -> Option<Next> {
        if conn.deadline != Some(id) {
            return None;
        }
        conn.deadline = None;
        match conn.state {
            ConnState::Idle => Some(Next::Close),
            ConnState::Head => Some(Next::Refuse(HttpError::RequestTimeout)),
            ConnState::InApp => None,
        }
    }
}
