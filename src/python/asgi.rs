//! The ASGI 3.0 layer (HTTP, spec version 2.4): the `http` scope from a
//! parsed request, the application's coroutine run as a task on the
//! context's asyncio loop, and `receive`/`send` as native callables.
//!
//! There is no worker thread: the loop's thread owns the connection
//! throughout, and the connection's state lives in one Python object,
//! [`Conn`], that the loop (`reactor/asgi.rs`) and the application's
//! `receive`/`send` share under the GIL.
//!
//! - `receive` is what reads the socket: nothing is read while the
//!   application does not ask for the body, so an upload streams at the
//!   application's pace. Bytes already there, or a read that succeeds at
//!   once, answer with an awaitable that completes without suspending (no
//!   future, no loop turn); otherwise a future is resolved when the socket
//!   is readable.
//! - `send` frames and writes at once. When the socket takes less than
//!   everything and more than [`HIGH_WATER`] bytes stay pending, `send`
//!   waits for the socket to drain (back-pressure); otherwise it completes
//!   without suspending.
//!
//! What the application does that the loop must act on (an interest to arm,
//! the end of the request) is noted in [`take_notes`], which the loop reads
//! after every turn of the asyncio loop.

use std::os::fd::RawFd;
use std::sync::Mutex;

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::http::chunked::Decoder;
use crate::http::engine::Peer;
use crate::http::request::{Framing, Head};
use crate::http::response::{
    date_header, finish_body, frame_body, reason_phrase, write_head, BodyFraming, Head as ResponseHead,
};
use crate::http::stream::Stream;
use crate::http::{HttpError, Limits};
use crate::message::LogLevel;
use crate::python::{log, log_python_error};
use crate::python::wsgi::{percent_decode, split_target};

/// Pending response bytes above which `send` waits for the socket.
pub const HIGH_WATER: usize = 64 * 1024;

/// Bytes asked of the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes of an unread request body read and dropped after the response so
/// that the connection can serve another request; past it, it is closed.
pub const DISCARD_BUDGET: u64 = 1024 * 1024;

/// Connections whose state changed in a Python call, as (descriptor,
/// connection id), for the loop to act on.
static NOTES: Mutex<Vec<(RawFd, u64)>> = Mutex::new(Vec::new());

fn note(fd: RawFd, conn_id: u64) {
    NOTES.lock().unwrap_or_else(|p| p.into_inner()).push((fd, conn_id));
}

/// The connections noted since the last call.
pub fn take_notes(into: &mut Vec<(RawFd, u64)>) {
    let mut notes = NOTES.lock().unwrap_or_else(|p| p.into_inner());
    into.append(&mut notes);
}

/// What the whole context shares: the application and the helpers of
/// `erlang.asgi`.
#[pyclass(module = "erlang.asgi", name = "Server", frozen)]
pub struct Server {
    app: Py<PyAny>,
    /// `erlang.asgi.serve(app, scope, receive, send, conn)`: a request's
    /// coroutine.
    serve: Py<PyAny>,
    /// The loop's `start_task(coro)`: the task, its first step taken at once.
    start_task: Py<PyAny>,
    create_future: Py<PyAny>,
    client_disconnected: Py<PyType>,
    /// The lifespan's `state`, copied into each request's scope.
    state: Py<PyDict>,
    asgi: Py<PyDict>,
    ready_none: Py<Ready>,
    limits: Limits,
}

impl Server {
    /// The server of `app`; `state` is the lifespan's state dict.
    pub fn new(py: Python<'_>, app: Py<PyAny>, state: Py<PyDict>, limits: Limits) -> PyResult<Py<Server>> {
        let module = py.import("erlang.asgi")?;
        let loop_ = py.import("erlang.aio")?.call_method0("get_loop")?;
        let asgi = PyDict::new(py);
        asgi.set_item("version", "3.0")?;
        asgi.set_item("spec_version", "2.4")?;
        let server = Server {
            app,
            serve: module.getattr("serve")?.unbind(),
            start_task: loop_.getattr("start_task")?.unbind(),
            create_future: loop_.getattr("create_future")?.unbind(),
            client_disconnected: module.getattr("ClientDisconnected")?.cast_into::<PyType>()?.unbind(),
            state,
            asgi: asgi.unbind(),
            ready_none: Py::new(py, Ready { value: None })?,
            limits,
        };
        Py::new(py, server)
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// Response headers as (name, value) byte strings.
type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Part of a request head has come.
    Head,
    /// A request is with the application (or its response still flushing).
    App,
    /// The response is out; the rest of an unread body is being dropped.
    Discard,
}

#[derive(Debug)]
enum Remaining {
    Length(u64),
    Chunked(Box<Decoder>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// `http.response.start` not sent yet.
    NotStarted,
    /// Started; the head waits for the first body message.
    Started,
    /// The head is out; more body may come.
    Streaming,
    /// The last body message was sent.
    Complete,
}

/// What the loop does next with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Arm these directions (possibly none: the application holds it).
    Wait { read: bool, write: bool },
    /// A complete request head is in the buffer: start the application.
    Start,
    /// Close the connection.
    Close,
    /// Answer with this error, then close.
    Refuse(HttpError),
}

/// The state of one ASGI connection, shared by the loop and the
/// application's `receive` and `send`.
#[pyclass(module = "erlang.asgi", name = "Connection")]
pub struct Conn {
    server: Py<Server>,
    pub fd: RawFd,
    pub conn_id: u64,
    /// The loop closed the descriptor: nothing may touch it any more.
    closed: bool,
    /// Bytes read and not consumed: a head being parsed, body bytes not
    /// decoded yet, the next pipelined requests.
    pub buf: Vec<u8>,
    pub phase: Phase,
    /// The head `parse_next` found complete at the start of `buf`, and its
    /// length, until `begin` takes it.
    parsed: Option<(Head, usize)>,
    client: Py<PyAny>,
    server_addr: Py<PyAny>,
    remote_addr: String,
    // The current request.
    seq: u64,
    head_only: bool,
    minor: u8,
    method: String,
    target: String,
    remaining: Option<Remaining>,
    body_total: u64,
    /// The last `http.request` event (`more_body` false) was given.
    body_done: bool,
    /// `body_total` when the application finished: what is dropped after
    /// counts against [`DISCARD_BUDGET`].
    discard_from: u64,
    continue_pending: bool,
    /// The client sent a bad body: answered with this status.
    client_error: Option<HttpError>,
    /// The peer is gone (end of input while a body or a disconnect was
    /// awaited, or a failed write).
    peer_gone: bool,
    keep_alive: bool,
    reply: Reply,
    held: Option<(u16, Headers)>,
    framed: BodyFraming,
    status: u16,
    body_bytes: u64,
    sent_body: u64,
    out: Vec<u8>,
    out_pos: usize,
    recv_waiter: Option<Py<PyAny>>,
    send_waiter: Option<Py<PyAny>>,
    /// The application's task has not finished.
    app_running: bool,
    /// Python errors of the application, for the loop to count.
    pub python_errors: u64,
    pub access_log: bool,
}

fn interest_none() -> Next {
    Next::Wait { read: false, write: false }
}

impl Conn {
    /// A new connection on `fd`.
    pub fn new(py: Python<'_>, server: Py<Server>, fd: RawFd, conn_id: u64, peer: &Peer) -> PyResult<Py<Conn>> {
        let client: Py<PyAny> = if peer.remote_addr.is_empty() {
            py.None()
        } else {
            let port: i64 = peer.remote_port.parse().unwrap_or(0);
            PyTuple::new(py, [peer.remote_addr.as_str().into_pyobject(py)?.into_any(), port.into_pyobject(py)?.into_any()])?
                .into_any()
                .unbind()
        };
        let port: i64 = peer.server_port.parse().unwrap_or(0);
        let server_addr = PyTuple::new(py, [peer.server_name.as_str().into_pyobject(py)?.into_any(), port.into_pyobject(py)?.into_any()])?
            .into_any()
            .unbind();
        let access_log = server.get().limits.access_log;
        Py::new(
            py,
            Conn {
                server,
                fd,
                conn_id,
                closed: false,
                buf: Vec::new(),
                phase: Phase::Idle,
                parsed: None,
                client,
                server_addr,
                remote_addr: peer.remote_addr.clone(),
                seq: 0,
                head_only: false,
                minor: 1,
                method: String::new(),
                target: String::new(),
                remaining: None,
                body_total: 0,
                body_done: false,
                discard_from: 0,
                continue_pending: false,
                client_error: None,
                peer_gone: false,
                keep_alive: true,
                reply: Reply::Complete,
                held: None,
                framed: BodyFraming::None,
                status: 0,
                body_bytes: 0,
                sent_body: 0,
                out: Vec::new(),
                out_pos: 0,
                recv_waiter: None,
                send_waiter: None,
                app_running: false,
                python_errors: 0,
                access_log,
            },
        )
    }

    fn stream(&self) -> Stream {
        Stream { fd: self.fd }
    }

    fn limits(&self) -> Limits {
        self.server.get().limits
    }

    /// One read into `buf`: `Ok(Some(n))` (0 at end of input), `Ok(None)`
    /// when it would block.
    pub fn read_some(&mut self) -> Result<Option<usize>, nix::errno::Errno> {
        if self.closed {
            return Ok(Some(0));
        }
        let stream = self.stream();
        stream.try_read(&mut self.buf, READ_CHUNK)
    }

    /// Parses the buffer when no request is in progress.
    pub fn parse_next(&mut self) -> Next {
        if self.buf.is_empty() {
            self.phase = Phase::Idle;
            return Next::Wait { read: true, write: false };
        }
        self.phase = Phase::Head;
        match crate::http::request::parse(&self.buf, &self.limits()) {
            Ok(None) => Next::Wait { read: true, write: false },
            Ok(Some(parsed)) => {
                self.parsed = Some(parsed);
                Next::Start
            }
            Err(e) => Next::Refuse(e),
        }
    }

    /// Takes the complete head at the start of the buffer and builds the
    /// request's scope, `receive` and `send`: the function to call and its
    /// arguments, or `None` when the server answered the request itself (a
    /// WebSocket handshake, which is not offered).
    #[allow(clippy::type_complexity)]
    pub fn begin<'py>(slf: &Bound<'py, Conn>) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyTuple>)>> {
        let py = slf.py();
        let mut this = slf.borrow_mut();
        let limits = this.limits();
        let parsed = match this.parsed.take() {
            Some(parsed) => Some(parsed),
            None => crate::http::request::parse(&this.buf, &limits).ok().flatten(),
        };
        let Some((head, length)) = parsed else {
            return Err(PyRuntimeError::new_err("no complete request head"));
        };
        this.buf.drain(..length);
        this.seq += 1;
        this.phase = Phase::App;
        this.head_only = head.is_head();
        this.minor = head.minor;
        this.keep_alive = head.keep_alive;
        this.remaining = match head.framing {
            Framing::Empty => None,
            Framing::Length(n) => Some(Remaining::Length(n)),
            Framing::Chunked => Some(Remaining::Chunked(Box::new(Decoder::new(limits.max_header_block)))),
        };
        this.body_total = 0;
        this.body_done = false;
        this.continue_pending = head.expect_continue && this.remaining.is_some();
        this.client_error = None;
        this.peer_gone = false;
        this.reply = Reply::NotStarted;
        this.held = None;
        this.framed = BodyFraming::None;
        this.status = 0;
        this.body_bytes = 0;
        this.sent_body = 0;
        this.app_running = true;
        if is_websocket(&head) {
            // Answered here rather than passed on as `http`, where a
            // framework would answer 404 or worse: the client learns why.
            if !WEBSOCKET_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                log(LogLevel::Warning, "a WebSocket handshake was refused with 501: the ASGI websocket scope is not offered".into());
            }
            this.app_running = false;
            this.keep_alive = false;
            this.reply = Reply::Complete;
            this.status = 501;
            this.out.extend_from_slice(&websocket_refusal());
            this.flush();
            return Ok(None);
        }
        if this.access_log {
            this.method = head.method.clone();
            this.target = String::from_utf8_lossy(&head.target).into_owned();
        }
        let server_obj = this.server.clone_ref(py);
        let server = server_obj.get();
        let scope = scope(py, server, &head, &this)?;
        let seq = this.seq;
        drop(this);
        let receive = Py::new(py, Receive { conn: slf.clone().unbind(), seq })?;
        let send = Py::new(py, Send { conn: slf.clone().unbind(), seq })?;
        let args = (server.app.bind(py), scope, receive, send, slf);
        let coroutine = server.serve.bind(py).call1(args)?;
        Ok(Some((server.start_task.bind(py).clone(), PyTuple::new(py, [coroutine])?)))
    }

    /// The application's task could not be started: a 500, then close.
    pub fn start_failed(&mut self, py: Python<'_>, err: PyErr) {
        self.app_running = false;
        log_python_error(py, err);
        self.python_errors += 1;
        self.keep_alive = false;
        self.out.extend_from_slice(&internal_error());
        self.reply = Reply::Complete;
        self.status = 500;
        self.flush();
    }

    /// Decodes body bytes from the buffer: `Ok(None)` when none are there
    /// yet, else the bytes and whether more follow.
    fn decode(&mut self) -> Result<Option<(Vec<u8>, bool)>, HttpError> {
        let max = self.limits().max_body_size;
        let Some(remaining) = &mut self.remaining else { return Ok(Some((Vec::new(), false))) };
        let mut out = Vec::new();
        match remaining {
            Remaining::Length(n) => {
                let take = self.buf.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                if take == self.buf.len() {
                    out = std::mem::take(&mut self.buf);
                } else {
                    out.extend_from_slice(&self.buf[..take]);
                    self.buf.drain(..take);
                }
                *n -= take as u64;
                if *n == 0 {
                    self.remaining = None;
                }
            }
            Remaining::Chunked(decoder) => {
                let used = decoder.decode(&self.buf, &mut out)?;
                self.buf.drain(..used);
                if decoder.is_done() {
                    self.remaining = None;
                }
            }
        }
        self.body_total += out.len() as u64;
        if self.body_total > max {
            return Err(HttpError::PayloadTooLarge);
        }
        if out.is_empty() && self.remaining.is_some() {
            return Ok(None);
        }
        Ok(Some((out, self.remaining.is_some())))
    }

    /// A bad body: the error response goes out if nothing was sent, and the
    /// connection closes after the request.
    fn body_failed(&mut self, error: HttpError) {
        self.client_error = Some(error);
        self.keep_alive = false;
        self.remaining = None;
        if self.reply == Reply::NotStarted && self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            self.out.extend_from_slice(&error.response());
            self.status = error.status();
            self.reply = Reply::Complete;
            self.flush();
        }
    }

    /// The next `receive` event if it is there without waiting: `None`
    /// means the socket must be waited for.
    fn try_receive(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        if self.closed || self.peer_gone || self.client_error.is_some() || self.reply == Reply::Complete {
            return disconnect(py).map(Some);
        }
        if self.body_done {
            // The body was all received: the next event is the disconnect.
            return Ok(None);
        }
        loop {
            match self.decode() {
                Ok(Some((data, more))) => {
                    self.body_done = !more;
                    return request_event(py, &data, more).map(Some);
                }
                Ok(None) => {}
                Err(e) => {
                    self.body_failed(e);
                    return disconnect(py).map(Some);
                }
            }
            if self.continue_pending {
                self.continue_pending = false;
                if self.reply == Reply::NotStarted {
                    self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                    self.flush();
                }
            }
            match self.read_some() {
                Ok(Some(0)) | Err(_) => {
                    self.peer_gone = true;
                    self.keep_alive = false;
                    return disconnect(py).map(Some);
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Ok(None),
            }
        }
    }

    /// The socket is readable while the application has a request: feeds a
    /// waiting `receive`.
    pub fn on_readable(&mut self, py: Python<'_>) {
        let Some(waiter) = self.recv_waiter.take() else { return };
        if is_done(py, &waiter) {
            // Cancelled: nobody waits, nothing is read.
            return;
        }
        let event = if self.body_done && !self.closed && !self.peer_gone && self.reply != Reply::Complete {
            // Waiting for a disconnect: what comes is the next request.
            match self.read_some() {
                Ok(Some(0)) | Err(_) => {
                    self.peer_gone = true;
                    self.keep_alive = false;
                    disconnect(py).map(Some)
                }
                Ok(_) => Ok(None),
            }
        } else {
            self.try_receive(py)
        };
        match event {
            Ok(Some(event)) => {
                let _ = waiter.bind(py).call_method1(intern!(py, "set_result"), (event,));
            }
            Ok(None) => self.recv_waiter = Some(waiter),
            Err(e) => {
                let _ = waiter.bind(py).call_method1(intern!(py, "set_exception"), (e.value(py),));
            }
        }
    }

    /// Writes what is pending; false when the peer is gone.
    fn flush(&mut self) -> bool {
        if self.closed || self.peer_gone {
            self.out.clear();
            self.out_pos = 0;
            return false;
        }
        let stream = self.stream();
        while self.out_pos < self.out.len() {
            match stream.try_write(&self.out[self.out_pos..]) {
                Ok(0) => return true,
                Ok(n) => self.out_pos += n,
                Err(_) => {
                    self.peer_gone = true;
                    self.keep_alive = false;
                    self.out.clear();
                    self.out_pos = 0;
                    return false;
                }
            }
        }
        self.out.clear();
        self.out_pos = 0;
        true
    }

    fn pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// The socket is writable: writes, and lets a waiting `send` go on.
    pub fn on_writable(&mut self, py: Python<'_>) {
        self.flush();
        if self.pending() <= HIGH_WATER || self.peer_gone {
            if let Some(waiter) = self.send_waiter.take() {
                let waiter = waiter.bind(py);
                if !waiter.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true) {
                    let _ = if self.peer_gone {
                        let error = self.client_disconnected(py);
                        waiter.call_method1(intern!(py, "set_exception"), (error,))
                    } else {
                        waiter.call_method1(intern!(py, "set_result"), (py.None(),))
                    };
                }
            }
        }
    }

    fn client_disconnected(&self, py: Python<'_>) -> PyErr {
        PyErr::from_type(self.server.bind(py).get().client_disconnected.bind(py).clone(), "the client disconnected")
    }

    /// The loop closed the connection: waiters learn it, nothing touches
    /// the descriptor any more.
    pub fn on_closed(&mut self, py: Python<'_>) {
        self.closed = true;
        self.peer_gone = true;
        self.out.clear();
        self.out_pos = 0;
        if let Some(waiter) = self.recv_waiter.take() {
            if let Ok(event) = disconnect(py) {
                resolve(py, &waiter, event);
            }
        }
        if let Some(waiter) = self.send_waiter.take() {
            let waiter = waiter.bind(py);
            if !waiter.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true) {
                let _ = waiter.call_method1(intern!(py, "set_exception"), (self.client_disconnected(py),));
            }
        }
    }

    /// What the loop does next, whatever just happened.
    pub fn next_step(&mut self) -> Next {
        if self.closed {
            return interest_none();
        }
        match self.phase {
            Phase::Idle | Phase::Head => self.parse_next(),
            Phase::App if self.app_running => {
                let write = self.pending() > 0;
                let read = self.recv_waiter.is_some() && !self.read_stalled();
                Next::Wait { read, write }
            }
            Phase::App => {
                if self.pending() > 0 {
                    return Next::Wait { read: false, write: true };
                }
                if !self.keep_alive || self.peer_gone {
                    return Next::Close;
                }
                if self.remaining.is_some() {
                    if self.continue_pending {
                        // The client waits for our word before sending the
                        // body: it will not come, and the connection cannot
                        // be reused.
                        return Next::Close;
                    }
                    self.phase = Phase::Discard;
                    self.discard_from = self.body_total;
                    return self.discard();
                }
                self.parse_next()
            }
            Phase::Discard => self.discard(),
        }
    }

    /// A disconnect is awaited after the body: what is read meanwhile is the
    /// next request, kept only up to the size of a request head.
    fn read_stalled(&self) -> bool {
        let limits = self.limits();
        self.body_done && self.buf.len() > limits.max_request_line + limits.max_header_block
    }

    /// Drops what remains of the body (up to [`DISCARD_BUDGET`]), then goes
    /// on with the next request.
    pub fn discard(&mut self) -> Next {
        let dropped = self.body_total - self.discard_from;
        if let Some(Remaining::Length(n)) = &self.remaining {
            if *n > DISCARD_BUDGET.saturating_sub(dropped) {
                return Next::Close;
            }
        }
        loop {
            match self.decode() {
                Ok(Some((_, false))) => return self.parse_next(),
                Ok(_) => {}
                Err(_) => return Next::Close,
            }
            if self.body_total - self.discard_from > DISCARD_BUDGET {
                return Next::Close;
            }
            match self.read_some() {
                Ok(Some(0)) | Err(_) => return Next::Close,
                Ok(Some(_)) => continue,
                Ok(None) => return Next::Wait { read: true, write: false },
            }
        }
    }

    /// Emits the head held since `http.response.start`; `final_length` is
    /// the body's length when the first body message is also the last.
    fn emit_head(&mut self, final_length: Option<u64>) {
        let Some((status, headers)) = self.held.take() else { return };
        self.status = status;
        let status_line = format!("{status} {}", reason_phrase(status));
        let head =
            ResponseHead { minor: self.minor, head_only: self.head_only, code: status, status_line: status_line.as_bytes() };
        let headers = headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
        self.framed = write_head(&mut self.out, head, headers, final_length, &mut self.keep_alive);
    }

    fn frame_body(&mut self, data: &[u8], more: bool) {
        self.body_bytes += data.len() as u64;
        frame_body(&mut self.out, self.framed, data, &mut self.sent_body, &mut self.keep_alive);
        if !more {
            finish_body(&mut self.out, self.framed, self.sent_body, &mut self.keep_alive);
        }
    }

    /// `send(message)` for request `seq`.
    fn send(&mut self, py: Python<'_>, seq: u64, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let message = message
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("an ASGI message must be a dict"))?;
        let kind = message
            .get_item(intern!(py, "type"))?
            .ok_or_else(|| PyValueError::new_err("an ASGI message needs a 'type'"))?;
        let kind = kind.cast::<PyString>().map_err(|_| PyTypeError::new_err("an ASGI message's 'type' must be a str"))?;
        let kind = kind.to_str()?;
        if seq != self.seq || !self.app_running {
            return Err(PyRuntimeError::new_err(format!("{kind:?} sent after the request was over")));
        }
        if self.closed || self.peer_gone || self.client_error.is_some() {
            // Gone, or answered already with the status its bad body earned.
            return Err(self.client_disconnected(py));
        }
        match kind {
            "http.response.start" => {
                if self.reply != Reply::NotStarted {
                    return Err(PyRuntimeError::new_err("'http.response.start' sent twice, or after the response"));
                }
                let status = message
                    .get_item(intern!(py, "status"))?
                    .ok_or_else(|| PyValueError::new_err("'http.response.start' needs a 'status'"))?
                    .extract::<i64>()
                    .map_err(|_| PyTypeError::new_err("'status' must be an int"))?;
                if !(100..=999).contains(&status) {
                    return Err(PyValueError::new_err(format!("bad status {status}")));
                }
                let headers = match message.get_item(intern!(py, "headers"))? {
                    Some(h) if !h.is_none() => response_headers(&h)?,
                    _ => Vec::new(),
                };
                self.held = Some((status as u16, headers));
                self.reply = Reply::Started;
                Ok(self.server.get().ready_none.clone_ref(py).into_any())
            }
            "http.response.body" => {
                let body = match message.get_item(intern!(py, "body"))? {
                    Some(b) if !b.is_none() => Some(b),
                    _ => None,
                };
                let data: &[u8] = match &body {
                    Some(b) => b.cast::<PyBytes>().map_err(|_| PyTypeError::new_err("'body' must be bytes"))?.as_bytes(),
                    None => b"",
                };
                let more = match message.get_item(intern!(py, "more_body"))? {
                    Some(m) => m.is_truthy()?,
                    None => false,
                };
                match self.reply {
                    Reply::NotStarted => {
                        return Err(PyRuntimeError::new_err("'http.response.body' sent before 'http.response.start'"))
                    }
                    Reply::Complete => return Err(PyRuntimeError::new_err("'http.response.body' sent after the response was complete")),
                    Reply::Started => {
                        // The length of a one-message body is known; not
                        // that of an empty answer to HEAD, whose GET may
                        // have a body.
                        let known = (!(more || self.head_only && data.is_empty())).then_some(data.len() as u64);
                        self.emit_head(known);
                        self.reply = Reply::Streaming;
                    }
                    Reply::Streaming => {}
                }
                self.frame_body(data, more);
                if !more {
                    self.reply = Reply::Complete;
                    // A receive waiting meanwhile (for a disconnect) learns
                    // that the response is over.
                    if let Some(waiter) = self.recv_waiter.take() {
                        resolve(py, &waiter, disconnect(py)?);
                    }
                }
                if !self.flush() {
                    return Err(self.client_disconnected(py));
                }
                if self.pending() > HIGH_WATER {
                    let future = self.server.get().create_future.call0(py)?;
                    self.send_waiter = Some(future.clone_ref(py));
                    note(self.fd, self.conn_id);
                    return Ok(future);
                }
                if self.pending() > 0 {
                    note(self.fd, self.conn_id);
                }
                Ok(self.server.get().ready_none.clone_ref(py).into_any())
            }
            other => Err(PyValueError::new_err(format!(
                "unexpected ASGI message {other:?} in an 'http' scope (expected 'http.response.start' or 'http.response.body')"
            ))),
        }
    }

    /// `receive()` for request `seq`.
    fn receive(&mut self, py: Python<'_>, seq: u64) -> PyResult<Py<PyAny>> {
        if seq != self.seq {
            return Ok(Py::new(py, Ready { value: Some(disconnect(py)?) })?.into_any());
        }
        if let Some(waiter) = &self.recv_waiter {
            if !is_done(py, waiter) {
                return Err(PyRuntimeError::new_err("receive() awaited twice at once"));
            }
            // Its awaiter was cancelled: nothing was read for it.
            self.recv_waiter = None;
        }
        if let Some(event) = self.try_receive(py)? {
            return Ok(Py::new(py, Ready { value: Some(event) })?.into_any());
        }
        let future = self.server.get().create_future.call0(py)?;
        self.recv_waiter = Some(future.clone_ref(py));
        note(self.fd, self.conn_id);
        Ok(future)
    }

    /// The application's task ended, with `error` if it raised.
    fn app_done(&mut self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>) {
        if !self.app_running {
            return;
        }
        self.app_running = false;
        self.recv_waiter = None;
        self.send_waiter = None;
        let disconnected = self.closed || self.peer_gone || self.client_error.is_some();
        let cancelled = error.is_some_and(|e| e.is_instance_of::<pyo3::exceptions::asyncio::CancelledError>());
        let client_fault = error.is_some_and(|e| e.is_instance(self.server.get().client_disconnected.bind(py)).unwrap_or(false));
        match error {
            // A client that sent a bad body was answered with its status:
            // what the application made of it is not the application's fault.
            Some(e) if !(cancelled || client_fault && disconnected || self.client_error.is_some()) => {
                log_python_error(py, PyErr::from_value(e.clone()));
                self.python_errors += 1;
            }
            None if self.reply != Reply::Complete && !disconnected => {
                let what = if self.reply == Reply::NotStarted {
                    "the ASGI application returned without starting a response"
                } else {
                    "the ASGI application returned without completing its response"
                };
                log(LogLevel::Error, what.to_string());
                self.python_errors += 1;
            }
            _ => {}
        }
        if self.reply != Reply::Complete {
            self.keep_alive = false;
            if self.reply == Reply::NotStarted && !disconnected && !cancelled {
                self.out.extend_from_slice(&internal_error());
                self.status = 500;
            }
            self.reply = Reply::Complete;
        }
        self.flush();
        if self.access_log {
            log(
                LogLevel::Info,
                format!(
                    "{} \"{} {} HTTP/1.{}\" {} {}",
                    self.remote_addr, self.method, self.target, self.minor, self.status, self.body_bytes
                ),
            );
        }
        note(self.fd, self.conn_id);
    }
}

#[pymethods]
impl Conn {
    /// Called by `erlang.asgi` when the application's task ends; `error` is
    /// the exception it raised, or None.
    #[pyo3(signature = (error=None))]
    fn finished(&mut self, py: Python<'_>, error: Option<&Bound<'_, PyAny>>) {
        self.app_done(py, error.filter(|e| !e.is_none()));
    }
}

/// The `receive` callable of one request.
#[pyclass(module = "erlang.asgi", name = "Receive", frozen)]
pub struct Receive {
    conn: Py<Conn>,
    seq: u64,
}

#[pymethods]
impl Receive {
    fn __call__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut conn = self.conn.bind(py).try_borrow_mut()?;
        conn.receive(py, self.seq)
    }
}

/// The `send` callable of one request.
#[pyclass(module = "erlang.asgi", name = "Send", frozen)]
pub struct Send {
    conn: Py<Conn>,
    seq: u64,
}

#[pymethods]
impl Send {
    fn __call__(&self, py: Python<'_>, message: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let mut conn = self.conn.bind(py).try_borrow_mut()?;
        conn.send(py, self.seq, message)
    }
}

/// An awaitable that is complete already: awaiting it gives `value` at once,
/// without suspending the task.
#[pyclass(module = "erlang.asgi", name = "Ready", frozen)]
pub struct Ready {
    value: Option<Py<PyAny>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match &self.value {
            None => Err(PyStopIteration::new_err(())),
            Some(v) => Err(PyStopIteration::new_err((v.clone_ref(py),))),
        }
    }

    fn send(&self, py: Python<'_>, _value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.__next__(py)
    }
}

fn is_done(py: Python<'_>, future: &Py<PyAny>) -> bool {
    future.bind(py).call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()).unwrap_or(true)
}

/// Completes `future` with `value` unless it is done (cancelled) already.
fn resolve(py: Python<'_>, future: &Py<PyAny>, value: Py<PyAny>) {
    if !is_done(py, future) {
        let _ = future.bind(py).call_method1(intern!(py, "set_result"), (value,));
    }
}

fn request_event(py: Python<'_>, data: &[u8], more: bool) -> PyResult<Py<PyAny>> {
    let event = PyDict::new(py);
    event.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
    event.set_item(intern!(py, "body"), PyBytes::new(py, data))?;
    event.set_item(intern!(py, "more_body"), more)?;
    Ok(event.into_any().unbind())
}

fn disconnect(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let event = PyDict::new(py);
    event.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
    Ok(event.into_any().unbind())
}

/// The headers of `http.response.start`: an iterable of `[name, value]`
/// byte strings.
fn response_headers(headers: &Bound<'_, PyAny>) -> PyResult<Headers> {
    let bad = || PyTypeError::new_err("'headers' must be an iterable of [name, value] pairs of bytes");
    let mut out = Vec::new();
    for item in headers.try_iter()? {
        let item = item?;
        let (name, value) = if let Ok(t) = item.cast::<PyTuple>() {
            if t.len() != 2 {
                return Err(bad());
            }
            (t.get_item(0)?, t.get_item(1)?)
        } else if let Ok(l) = item.cast::<PyList>() {
            if l.len() != 2 {
                return Err(bad());
            }
            (l.get_item(0)?, l.get_item(1)?)
        } else {
            return Err(bad());
        };
        let name = name.cast::<PyBytes>().map_err(|_| bad())?.as_bytes().to_vec();
        let value = value.cast::<PyBytes>().map_err(|_| bad())?.as_bytes().to_vec();
        let name_ok = !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic() && *b != b':');
        if !name_ok || value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(PyValueError::new_err(format!(
                "bad response header {:?}: {:?}",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(&value)
            )));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The request's `http` scope.
fn scope<'py>(py: Python<'py>, server: &Server, head: &Head, conn: &Conn) -> PyResult<Bound<'py, PyDict>> {
    let scope = PyDict::new(py);
    let (path, query) = split_target(&head.target);
    let decoded = percent_decode(path);
    scope.set_item(intern!(py, "type"), intern!(py, "http"))?;
    scope.set_item(intern!(py, "asgi"), server.asgi.bind(py).copy()?)?;
    scope.set_item(intern!(py, "http_version"), if head.minor == 0 { intern!(py, "1.0") } else { intern!(py, "1.1") })?;
    let method = match head.method.as_str() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    };
    scope.set_item(intern!(py, "method"), method)?;
    scope.set_item(intern!(py, "scheme"), intern!(py, "http"))?;
    scope.set_item(intern!(py, "path"), PyString::new(py, &String::from_utf8_lossy(&decoded)))?;
    scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, path))?;
    scope.set_item(intern!(py, "query_string"), PyBytes::new(py, query))?;
    scope.set_item(intern!(py, "root_path"), intern!(py, ""))?;
    let headers = PyList::empty(py);
    let mut lower = Vec::new();
    for (name, value) in &head.headers {
        lower.clear();
        lower.extend(name.bytes().map(|b| b.to_ascii_lowercase()));
        let pair = PyTuple::new(py, [PyBytes::new(py, &lower), PyBytes::new(py, value)])?;
        headers.append(pair)?;
    }
    scope.set_item(intern!(py, "headers"), headers)?;
    scope.set_item(intern!(py, "client"), conn.client.bind(py))?;
    scope.set_item(intern!(py, "server"), conn.server_addr.bind(py))?;
    scope.set_item(intern!(py, "state"), server.state.bind(py).copy()?)?;
    Ok(scope)
}

static WEBSOCKET_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the request asks to become a WebSocket (`Upgrade: websocket`).
fn is_websocket(head: &Head) -> bool {
    head.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("upgrade") && value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

fn websocket_refusal() -> Vec<u8> {
    let body = "501 Not Implemented: WebSocket (the ASGI websocket scope) is not offered by this server\n";
    format!(
        "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{body}",
        body.len(),
        date_header()
    )
    .into_bytes()
}

fn internal_error() -> Vec<u8> {
    let body = "500 Internal Server Error\n";
    format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{body}",
        body.len(),
        date_header()
    )
    .into_bytes()
}

