//! The loop: frames from stdin, descriptors from the auxiliary socket and
//! readiness of every connection, served by one thread.
//!
//! Each turn waits with the GIL released, then takes it once for the whole
//! batch of events: requests from the VM, pairing of handoffs, reads handed
//! to `data_received`, `write_ready` calls, and the actions they return.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use eetf::Term;
use nix::errno::Errno;
use pyo3::prelude::*;

use crate::aio::Asyncio;
use crate::fdpass::{self, AuxChannel, AuxListener};
use crate::framing::{Fill, MAX_FRAME};
use crate::handoff::{Offer, Paired, Pairing};
use crate::listening::{self, Listening};
use crate::http::engine::{ConnState, Engine, HttpConn};
use crate::message::{
    Carrier, CloseReason, ListenOptions, LogLevel, Notice, PythonError, Request, RequestError, RequestFailure, Stats,
};
use crate::python::buffer::{self, ReadError};
use crate::python::native::Shared;
use crate::python::timers::{self as py_timers, TimerHandle};
use crate::python::{self, python_error, Action, Bridge, CallbackError};
use crate::readiness::{Interest, Ready, Selector};
use crate::terms;
use crate::vm_request::{Frame, InputChannel};
use crate::timers::{self, TimerId, Timers};

mod asgi;
mod web;

const KEY_INPUT: usize = 0;
const KEY_LISTENER: usize = 1;
const KEY_AUX: usize = 2;
const KEY_LISTENING: usize = 3;
const KEY_FIRST_CONNECTION: usize = 4;

/// Default connection limit when `setup` names none.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 100;

/// Size of one read from a connection (a read that fills less than half of
/// it gives the rest back to the allocator, see [`buffer::read`]).
const READ_SIZE: usize = 64 * 1024;

/// Logged at setup when `record_bytes` is on and the application is a WSGI
/// or ASGI one: its connections' bytes are not recorded (docs/recording.md).
const RECORD_BYTES_NOT_HTTP: &str = "record_bytes: the bytes of HTTP connections served by a WSGI or ASGI \
     application are not recorded; their frames and descriptors are";

fn connection_key(fd: RawFd) -> usize {
    fd as usize + KEY_FIRST_CONNECTION
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The VM asked with `stop`.
    Stopped,
    /// End of file on stdin: the VM closed the port or died.
    InputClosed,
    /// Writing to the VM failed.
    OutputClosed,
}

/// A `call` whose descriptor arguments have not all arrived yet.
struct ParkedCall {
    reference: Term,
    module: String,
    function: String,
    args: Vec<Term>,
    fds: Vec<(usize, u64)>,
    since: Instant,
}

struct Connection {
    conn_id: u64,
    fd: OwnedFd,
    handler: Handler,
    /// The peer half-closed (a read returned 0) and `eof_received` kept the
    /// connection open: nothing more can be read.
    eof: bool,
    /// The loop turn of the last readiness event, with `idle_timeout` set.
    last_event: Instant,
    /// The connection's idle timer, with `idle_timeout` set.
    idle_timer: Option<TimerId>,
}

/// What serves a connection: the user's protocol, the HTTP engine (WSGI),
/// or an ASGI application.
enum Handler {
    Protocol(Py<PyAny>),
    Http(HttpConn),
    Asgi(asgi::AsgiConn),
}

#[derive(Debug, Default)]
struct Counters {
    total_connections: u64,
    total_requests: u64,
    python_errors: u64,
    refused_handoffs: u64,
}

/// One context's reactor.
pub struct Reactor {
    selector: Selector,
    /// The frames from the VM, shared with Python's waiting requests.
    input: Option<std::sync::Arc<InputChannel>>,
    shared: &'static Shared,
    listener: Option<AuxListener>,
    aux: Option<AuxChannel>,
    pairing: Pairing,
    connections: Vec<Option<Connection>>,
    active: u64,
    bridge: Option<Bridge>,
    aio: Option<Asyncio>,
    parked_calls: Vec<ParkedCall>,
    /// Set up with a WSGI application: every connection speaks HTTP.
    http: Option<Engine>,
    /// Set up with an ASGI application: every connection speaks HTTP.
    asgi: Option<asgi::AsgiServer>,
    max_connections: u64,
    counters: Counters,
    ready: Vec<Ready>,
    exit: Option<Exit>,
    /// The listening socket this port accepts on, once `listen` has paired
    /// with its descriptor.
    listening: Option<Listening>,
    /// `listen` requests waiting for their descriptor, by id.
    listen_requests: std::collections::HashMap<u64, ListenOptions>,
    /// Accepting failed for want of descriptors: the socket is not watched
    /// again until a connection closes (it would be reported at once).
    out_of_fds: bool,
    /// Bytes the VM had read before a handoff, by connection id, until the
    /// connection opens (or is refused).
    initial_data: std::collections::HashMap<u64, Vec<u8>>,
    /// Setup's `idle_timeout`: a connection with no readiness event for
    /// that long is closed.
    idle_timeout: Option<Duration>,
    /// Idle timers, by (descriptor, connection id).
    idle: Timers<(RawFd, u64)>,
    /// When the current turn's wait ended (kept only with `idle_timeout`).
    now: Instant,
    /// Python timers due this turn; kept to reuse its allocation.
    due: Vec<Py<TimerHandle>>,
}

impl Reactor {
    /// A reactor serving the VM: frames from `input`, descriptors on an
    /// auxiliary socket bound under `socket_parent`.
    pub fn serve(
        input: File,
        shared: &'static Shared,
        vm_pid: i32,
        socket_parent: &Path,
    ) -> Result<Reactor, crate::Error> {
        let mut reactor = Reactor::detached(shared)?;
        let listener = AuxListener::bind(socket_parent, vm_pid)?;
        // SAFETY: the input and the listener are owned by the reactor and
        // deregistered before they are dropped (see `Drop` and `on_listener`).
        unsafe {
            reactor.selector.register(input.as_fd(), KEY_INPUT)?;
            reactor.selector.register(listener.as_fd(), KEY_LISTENER)?;
        }
        reactor.selector.select(KEY_INPUT, Interest::READ)?;
        reactor.selector.select(KEY_LISTENER, Interest::READ)?;
        crate::lifeline::attach_waker(reactor.selector.waker());
        reactor.input = Some(InputChannel::install(input));
        reactor.listener = Some(listener);
        Ok(reactor)
    }

    /// A reactor with no VM attached: frames and descriptors are fed to it
    /// with [`Reactor::handle_frame`] and [`Reactor::offer_fd`] (replay).
    pub fn detached(shared: &'static Shared) -> Result<Reactor, crate::Error> {
        let selector = Selector::new()?;
        shared.attach_waker(selector.waker());
        Ok(Reactor {
            selector,
            input: None,
            shared,
            listener: None,
            aux: None,
            pairing: Pairing::default(),
            connections: Vec::new(),
            active: 0,
            bridge: None,
            aio: None,
            parked_calls: Vec::new(),
            http: None,
            asgi: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            counters: Counters::default(),
            ready: Vec::with_capacity(256),
            exit: None,
            listening: None,
            listen_requests: std::collections::HashMap::new(),
            out_of_fds: false,
            initial_data: std::collections::HashMap::new(),
            idle_timeout: None,
            idle: Timers::new(),
            now: Instant::now(),
            due: Vec::new(),
        })
    }

    /// Announces the port and serves until stopped.
    pub fn run(mut self) -> Exit {
        let socket_path = self
            .listener
            .as_ref()
            .map(|l| l.path().to_string_lossy().into_owned())
            .unwrap_or_default();
        self.notify(Notice::Hello { os_pid: std::process::id(), socket_path, max_frame: MAX_FRAME });
        Python::attach(|py| {
            py_timers::attach_loop_thread();
            while self.exit.is_none() {
                let deadline = self.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
                let aio = self.aio.as_ref().and_then(|aio| aio.timeout(&self.shared.aio));
                let timeout = match (deadline, aio) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Err(e) = self.turn(py, timeout) {
                    self.log(LogLevel::Error, format!("poll failed: {e}"));
                    self.exit = Some(Exit::InputClosed);
                }
                if self.shared.outbound.is_broken() && self.exit.is_none() {
                    self.exit = Some(Exit::OutputClosed);
                }
                if crate::lifeline::parent_gone() && self.exit.is_none() {
                    // The VM is gone though stdin is held open elsewhere.
                    self.exit = Some(Exit::InputClosed);
                }
            }
            self.finish(py);
            // Python objects are released here, with the GIL, so that nothing
            // Python owns is left to a later, GIL-less drop.
            self.bridge = None;
            self.due.clear();
        });
        self.exit.unwrap_or(Exit::InputClosed)
    }

    /// The earliest deadline of anything the loop waits for besides events:
    /// descriptors and frames waiting for their pair, idle connections,
    /// Python's timers. `None` when there is none: the loop then waits for
    /// events only, with no timeout.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        let deadline = timers::earliest(self.pairing.next_deadline(), self.idle.next_deadline());
        let deadline = timers::earliest(deadline, self.http.as_mut().and_then(Engine::next_deadline));
        let deadline = timers::earliest(deadline, self.asgi_next_deadline());
        timers::earliest(deadline, py_timers::next_deadline())
    }

    /// One turn of the loop: waits (GIL released) up to `timeout` for events,
    /// then serves them all under one GIL hold. Returns how many were served.
    pub fn turn(&mut self, py: Python<'_>, timeout: Option<Duration>) -> std::io::Result<usize> {
        crate::forkguard::exit_if_child("a Python call");
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        self.apply_aio_requests();
        let waited = if self.http.is_some() {
            // HTTP connections need no Python: served without the GIL.
            py.detach(|| self.wait_http(&mut ready, timeout))
        } else {
            let selector = &mut self.selector;
            py.detach(|| selector.wait(&mut ready, timeout))
        };
        if self.idle_timeout.is_some() {
            self.now = Instant::now();
        }
        for event in ready.iter().copied() {
            self.dispatch(py, event);
        }
        self.serve_queued(py);
        let served = ready.len();
        self.ready = ready;
        self.step_asyncio(py);
        if self.asgi.is_some() {
            self.asgi_service(py);
        }
        self.arm_requested_writes();
        if !self.parked_calls.is_empty() {
            self.run_parked_calls(py);
        }
        if self.http.is_some() {
            self.http_deadlines(Instant::now());
            self.http_finished();
        }
        if !self.pairing.is_empty() {
            self.expire_pairing(Instant::now());
        }
        self.run_timers(py);
        waited.map(|()| served)
    }

    /// Why the loop should end, once it should.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Closes every connection (each gets `connection_lost`), records the end
    /// and flushes Python's streams.
    pub fn finish(&mut self, py: Python<'_>) {
        self.asgi_stop(py);
        self.stop_asyncio(py);
        self.close_all(py);
        py_timers::cancel_all();
        python::flush_streams(py);
        if let Some(recorder) = &self.shared.recorder {
            let reason = match self.exit {
                Some(Exit::Stopped) => "stopped",
                Some(Exit::OutputClosed) => "output_closed",
                Some(Exit::InputClosed) | None => "input_closed",
            };
            recorder.end(reason);
        }
    }

    /// Serves one frame from the VM.
    pub fn handle_frame(&mut self, py: Python<'_>, frame: &[u8]) {
        if let Some(recorder) = &self.shared.recorder {
            recorder.frame_in(frame);
        }
        self.on_frame(py, frame);
    }

    /// Reports a frame over the size limit.
    pub fn handle_oversized_frame(&mut self, declared: usize) {
        if let Some(recorder) = &self.shared.recorder {
            recorder.frame_skipped(declared);
        }
        let error = crate::framing::FrameError::TooLarge { declared, limit: MAX_FRAME };
        self.notify(Notice::FrameError(error.to_string()));
    }

    /// Takes a descriptor tagged `conn_id`, as if it came over the auxiliary socket.
    pub fn offer_fd(&mut self, py: Python<'_>, conn_id: u64, fd: OwnedFd) {
        if let Some(recorder) = &self.shared.recorder {
            recorder.fd(conn_id, &fd);
        }
        match self.pairing.offer_fd(conn_id, fd, Instant::now()) {
            Offer::Paired(paired) => self.open(py, paired),
            Offer::Waiting => {
                if !self.parked_calls.is_empty() {
                    self.run_parked_calls(py);
                }
            }
            Offer::Duplicate(fd) => {
                drop(fd);
                self.notify(Notice::AuxError(format!(
                    "descriptor for connection id {conn_id}, which is already used; closed"
                )));
            }
            // Only a loss is refused, never a descriptor that came.
            Offer::Refused(_) => {}
        }
    }

    /// The descriptor tagged `conn_id` was lost on its way (see
    /// [`fdpass::Missing`]): its handoff is refused at once, now if its
    /// frame is here, else when it comes.
    fn lose_fd(&mut self, conn_id: u64, missing: fdpass::Missing) {
        let reason = match missing {
            fdpass::Missing::Limit(errno) => CloseReason::Io(errno),
            fdpass::Missing::Truncated | fdpass::Missing::NotSent => CloseReason::FdNotReceived,
        };
        match self.pairing.offer_lost(conn_id, reason, Instant::now()) {
            Offer::Refused(reason) => {
                self.counters.refused_handoffs += 1;
                self.notify(Notice::Closed { conn_id, reason });
            }
            Offer::Waiting | Offer::Paired(_) => {}
            Offer::Duplicate(_) => self.notify(Notice::AuxError(format!(
                "a lost descriptor for connection id {conn_id}, which is already used"
            ))),
        }
    }

    fn dispatch(&mut self, py: Python<'_>, event: Ready) {
        match event.key {
            KEY_INPUT => self.on_input(py),
            KEY_LISTENER => self.on_listener(),
            KEY_AUX => self.on_aux(py),
            KEY_LISTENING => self.on_listening(py),
            key => {
                let fd = (key - KEY_FIRST_CONNECTION) as RawFd;
                if self.connection(fd).is_none() {
                    if let Some(aio) = self.aio.as_mut().filter(|aio| aio.owns(fd)) {
                        return aio.on_ready(fd, event.interest);
                    }
                }
                if self.idle_timeout.is_some() {
                    let now = self.now;
                    if let Some(conn) = self.connections.get_mut(fd as usize).and_then(Option::as_mut) {
                        conn.last_event = now;
                    }
                }
                if event.interest.read {
                    self.on_readable(py, fd);
                }
                if event.interest.write {
                    self.on_writable(py, fd);
                }
                if self.connection(fd).is_some() {
                    if let Err(e) = self.selector.settle(key) {
                        self.close(py, fd, CloseReason::Io(io_errno(&e)));
                    }
                }
            }
        }
    }

    fn notify(&self, notice: Notice) {
        // A failed send marks the outbound broken; the loop ends on it.
        let _ = self.shared.outbound.send(&notice);
    }

    fn log(&self, level: LogLevel, text: String) {
        self.notify(Notice::Log { level, text });
    }

    // ---- the VM's requests -------------------------------------------------

    fn on_input(&mut self, py: Python<'_>) {
        let Some(input) = &self.input else { return };
        // The lock is not held while the frames are served: a callback may
        // wait for the VM on the same channel.
        let available = input.read_available();
        self.serve_frames(py, available.frames);
        let fill = available.fill;
        match fill {
            Ok(Fill::Drained) => {
                if let Err(e) = self.selector.select(KEY_INPUT, Interest::READ) {
                    self.log(LogLevel::Error, format!("cannot re-arm stdin: {e}"));
                    self.exit.get_or_insert(Exit::InputClosed);
                }
            }
            Ok(Fill::Eof) => {
                if available.partial > 0 {
                    self.notify(Notice::FrameError(format!(
                        "end of input inside a frame ({} bytes unread)",
                        available.partial
                    )));
                }
                self.exit.get_or_insert(Exit::InputClosed);
            }
            Err(e) => {
                self.log(LogLevel::Error, format!("reading stdin failed: {e}"));
                self.exit.get_or_insert(Exit::InputClosed);
            }
        }
    }

    fn serve_frames(&mut self, py: Python<'_>, frames: Vec<Frame>) {
        for frame in frames {
            if self.exit.is_some() {
                break;
            }
            match frame {
                Ok(bytes) => self.handle_frame(py, &bytes),
                Err(crate::framing::FrameError::TooLarge { declared, .. }) => self.handle_oversized_frame(declared),
            }
        }
    }

    /// Serves the frames a callback's wait for the VM kept, which the
    /// descriptor's readiness will not announce again.
    fn serve_queued(&mut self, py: Python<'_>) {
        while let Some(input) = self.input.as_ref().filter(|i| i.has_queued()) {
            let frames = input.take_queued();
            self.serve_frames(py, frames);
            if self.exit.is_some() {
                break;
            }
        }
    }

    fn on_frame(&mut self, py: Python<'_>, bytes: &[u8]) {
        let term = match terms::decode(bytes) {
            Ok(t) => t,
            // A request that cannot be decoded is still answered, when its
            // first bytes say who waits: nobody is left waiting for a reply,
            // nor counts a connection that will not exist.
            Err(e) => {
                return match Carrier::of_frame(bytes) {
                    Some(Carrier::Reply(reference)) => {
                        self.notify(Notice::failed(reference, &RequestFailure::BadTerm(e.to_string())))
                    }
                    Some(Carrier::Handoff(conn_id)) => self.refuse_frame(conn_id, CloseReason::BadTerm(e.to_string())),
                    None => self.notify(Notice::FrameError(e.to_string())),
                };
            }
        };
        match Request::from_term(term) {
            Ok(request) => self.on_request(py, request),
            Err(RequestError::Unknown(text)) => self.notify(Notice::FrameError(format!("unknown message: {text}"))),
            Err(e @ RequestError::Bad { .. }) => {
                let text = e.to_string();
                let RequestError::Bad { reference, .. } = e else { unreachable!() };
                self.notify(Notice::failed(reference, &RequestFailure::BadRequest(text)));
            }
            Err(RequestError::BadHandoff { conn_id, reason }) => {
                self.refuse_frame(conn_id, CloseReason::BadTerm(format!("bad handoff request: {reason}")));
            }
        }
    }

    /// Refuses the `handoff` of `conn_id` whose frame could not be used: its
    /// descriptor is closed, now or when it comes, and the VM is told.
    fn refuse_frame(&mut self, conn_id: u64, reason: CloseReason) {
        drop(self.pairing.refuse(conn_id));
        self.counters.refused_handoffs += 1;
        self.notify(Notice::Closed { conn_id, reason });
    }

    fn on_request(&mut self, py: Python<'_>, request: Request) {
        self.serve_request(py, request);
        // Setup code, `exec`, `eval` and `call` may fork too.
        crate::forkguard::exit_if_child("a request");
    }

    fn serve_request(&mut self, py: Python<'_>, request: Request) {
        match request {
            Request::Setup { reference, options } => {
                let notice = if self.bridge.is_some() {
                    Notice::failed(reference, &RequestFailure::AlreadySetUp)
                } else {
                    // The loop exists before setup_code runs, so that setup
                    // may start servers and tasks on it.
                    let installed = match self.aio {
                        Some(_) => Ok(()),
                        None => Asyncio::install(py).map(|aio| self.aio = Some(aio)),
                    };
                    let set_up = installed
                        .and_then(|()| python::setup(py, &options))
                        .and_then(|app| Ok((app, Bridge::load(py)?)))
                        .map_err(RequestFailure::Python)
                        .and_then(|(app, bridge)| {
                            if app.is_some() && self.shared.recorder.as_ref().is_some_and(|r| r.connection_bytes()) {
                                self.log(LogLevel::Warning, RECORD_BYTES_NOT_HTTP.into());
                            }
                            let wsgi = match app {
                                Some(python::WebApp::Asgi(app)) => {
                                    self.asgi_setup(py, app, &options)?;
                                    None
                                }
                                Some(python::WebApp::Wsgi(app)) => Some(app),
                                None => None,
                            };
                            Ok((self.http_engine(py, wsgi, options.http).map_err(RequestFailure::Python)?, bridge))
                        });
                    match set_up {
                        Ok((http, bridge)) => {
                            self.bridge = Some(bridge);
                            self.http = http;
                            self.max_connections = options.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
                            self.idle_timeout = options.idle_timeout;
                            Notice::ok(reference)
                        }
                        Err(e) => Notice::failed(reference, &e),
                    }
                };
                self.notify(notice);
            }
            Request::Handoff { conn_id, client_info, initial_data } => {
                // A duplicate id keeps the data of the connection that has it.
                if !initial_data.is_empty() && !self.initial_data.contains_key(&conn_id) {
                    self.initial_data.insert(conn_id, initial_data);
                }
                match self.pairing.offer_frame(conn_id, client_info, Instant::now()) {
                    Offer::Paired(paired) => self.open(py, paired),
                    Offer::Waiting => {}
                    Offer::Duplicate(_) => {
                        self.counters.refused_handoffs += 1;
                        self.notify(Notice::Closed { conn_id, reason: CloseReason::DuplicateId });
                    }
                    Offer::Refused(reason) => {
                        self.counters.refused_handoffs += 1;
                        self.notify(Notice::Closed { conn_id, reason });
                    }
                }
            }
            Request::Listen { listen_id, options } => {
                self.listen_requests.insert(listen_id, options);
                match self.pairing.offer_frame(listen_id, terms::atom("listen"), Instant::now()) {
                    Offer::Paired(paired) => self.open(py, paired),
                    Offer::Waiting => {}
                    Offer::Duplicate(_) => {
                        self.listen_requests.remove(&listen_id);
                        self.log(LogLevel::Error, format!("listen {listen_id}: the id is already in use"));
                    }
                    Offer::Refused(reason) => {
                        self.listen_requests.remove(&listen_id);
                        self.log(LogLevel::Error, format!("listen {listen_id}: no descriptor: {reason:?}"));
                    }
                }
            }
            Request::ListenControl { reference, options } => {
                let result = if let Some(listening) = &mut self.listening {
                    listening.control(options);
                    self.update_listening();
                    Ok(None)
                } else if !self.listen_requests.is_empty() {
                    // The descriptor has not come yet: it starts with these.
                    for pending in self.listen_requests.values_mut() {
                        pending.max_connections = options.max_connections;
                        pending.paused = options.paused;
                    }
                    Ok(None)
                } else {
                    Err(RequestFailure::BadRequest("not listening".into()))
                };
                self.reply(reference, result);
            }
            Request::Stats { reference } => {
                let notice = Notice::stats(reference, &self.stats());
                self.notify(notice);
            }
            Request::Exec { reference, code } => {
                let result = self.require_setup().and_then(|()| python::exec(py, &code).map_err(RequestFailure::Python));
                self.reply(reference, result.map(|()| None));
            }
            Request::Eval { reference, expr } => {
                let result = self.require_setup().and_then(|()| python::eval(py, &expr));
                self.reply(reference, result.map(Some));
            }
            Request::Call { reference, module, function, args, fds } if !fds.is_empty() => {
                self.parked_calls.push(ParkedCall { reference, module, function, args, fds, since: Instant::now() });
                self.run_parked_calls(py);
            }
            Request::Call { reference, module, function, args, .. } => {
                self.run_call(py, reference, &module, &function, &args);
            }
            Request::LateReply { id } => {
                self.log(LogLevel::Warning, format!("the VM's reply to request {id} came after it gave up waiting"));
            }
            Request::Stop { reference } => {
                self.asgi_stop(py);
                self.stop_asyncio(py);
                self.close_all(py);
                self.notify(Notice::ok(reference));
                self.exit = Some(Exit::Stopped);
            }
        }
    }

    /// Runs `module.function(*args)`; a coroutine function's reply is sent
    /// when its task completes.
    fn run_call(&mut self, py: Python<'_>, reference: Term, module: &str, function: &str, args: &[Term]) {
        let aio = &self.shared.aio;
        let deferred = std::cell::Cell::new(None);
        let result = self.require_setup().and_then(|()| {
            python::call(py, module, function, args, || {
                let token = aio.defer_call(reference.clone());
                deferred.set(Some(token));
                token
            })
        });
        match (result, deferred.get()) {
            // A task: the reply goes out when it completes.
            (Ok(None), Some(_)) => {}
            (result, token) => {
                if let Some(token) = token {
                    aio.complete_call(token);
                }
                self.reply(reference, result);
            }
        }
    }

    /// Runs the parked calls whose descriptors have all arrived: each such
    /// argument becomes the port's descriptor number, owned by Python from
    /// then on. Calls waiting longer than the pairing timeout fail.
    fn run_parked_calls(&mut self, py: Python<'_>) {
        let now = Instant::now();
        let mut index = 0;
        while index < self.parked_calls.len() {
            let call = &self.parked_calls[index];
            let complete = call.fds.iter().all(|(_, id)| self.pairing.has_fd(*id));
            let expired = now.duration_since(call.since) >= crate::handoff::PAIRING_TIMEOUT;
            if !complete && !expired {
                index += 1;
                continue;
            }
            let mut call = self.parked_calls.swap_remove(index);
            if !complete {
                for (_, id) in &call.fds {
                    drop(self.pairing.take_fd(*id));
                }
                let text = format!("descriptor arguments not received within {:?}", crate::handoff::PAIRING_TIMEOUT);
                self.notify(Notice::failed(call.reference, &RequestFailure::BadRequest(text)));
                continue;
            }
            for (arg, id) in &call.fds {
                let Some(fd) = self.pairing.take_fd(*id) else { continue };
                let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
                call.args[*arg] = crate::terms::integer(raw as u64);
            }
            self.run_call(py, call.reference, &call.module, &call.function, &call.args);
        }
    }

    fn require_setup(&self) -> Result<(), RequestFailure> {
        if self.bridge.is_some() {
            Ok(())
        } else {
            Err(RequestFailure::NotSetUp)
        }
    }

    fn reply(&self, reference: Term, result: Result<Option<Term>, RequestFailure>) {
        let notice = match result {
            Ok(None) => Notice::ok(reference),
            Ok(Some(value)) => Notice::ok_value(reference, value),
            Err(failure) => Notice::failed(reference, &failure),
        };
        self.notify(notice);
    }

    fn stats(&self) -> Stats {
        use std::sync::atomic::Ordering::Relaxed;
        Stats {
            active_connections: self.active,
            total_connections: self.counters.total_connections,
            total_requests: self.counters.total_requests,
            bytes_in: self.shared.bytes_in.load(Relaxed),
            bytes_out: self.shared.bytes_out.load(Relaxed),
            python_errors: self.counters.python_errors,
            refused_handoffs: self.counters.refused_handoffs,
            pending_fds: self.pairing.waiting_fds() as u64,
        }
    }

    // ---- the auxiliary socket ---------------------------------------------

    fn on_listener(&mut self) {
        let Some(listener) = &self.listener else { return };
        match listener.accept() {
            Ok(Some(channel)) => {
                listener.unlink();
                let _ = self.selector.deregister(KEY_LISTENER);
                self.listener = None;
                // SAFETY: the channel is owned by the reactor and deregistered
                // before it is dropped (`on_aux` and `Drop`).
                let registered = unsafe { self.selector.register(channel.as_fd(), KEY_AUX) }
                    .and_then(|()| self.selector.select(KEY_AUX, Interest::READ));
                match registered {
                    Ok(()) => self.aux = Some(channel),
                    Err(e) => self.notify(Notice::AuxError(format!("cannot watch the auxiliary socket: {e}"))),
                }
                return;
            }
            Ok(None) => {}
            Err(e) => self.notify(Notice::AuxError(e.to_string())),
        }
        let _ = self.selector.select(KEY_LISTENER, Interest::READ);
    }

    fn on_aux(&mut self, py: Python<'_>) {
        loop {
            let Some(channel) = &self.aux else { return };
            match channel.recv() {
                Ok(None) => break,
                Ok(Some(received)) => {
                    for problem in received.problems {
                        self.notify(Notice::AuxError(problem));
                    }
                    for (conn_id, fd) in received.tagged {
                        self.offer_fd(py, conn_id, fd);
                    }
                    for (conn_id, missing) in received.missing {
                        self.lose_fd(conn_id, missing);
                    }
                    if received.eof {
                        // The VM closed its end: no more descriptors will come,
                        // but frames still may; the loop goes on until stdin ends.
                        let _ = self.selector.deregister(KEY_AUX);
                        self.aux = None;
                        return;
                    }
                }
                Err(e) => {
                    self.notify(Notice::AuxError(e.to_string()));
                    let _ = self.selector.deregister(KEY_AUX);
                    self.aux = None;
                    return;
                }
            }
        }
        let _ = self.selector.select(KEY_AUX, Interest::READ);
    }

    fn expire_pairing(&mut self, now: Instant) {
        let expired = self.pairing.expire(now);
        for (conn_id, fd) in expired.fds {
            drop(fd);
            self.notify(Notice::AuxError(format!(
                "descriptor for connection id {conn_id} had no handoff frame within {:?}; closed",
                crate::handoff::PAIRING_TIMEOUT
            )));
        }
        for conn_id in expired.frames {
            self.initial_data.remove(&conn_id);
            self.counters.refused_handoffs += 1;
            self.notify(Notice::Closed { conn_id, reason: CloseReason::FdNotReceived });
        }
        for conn_id in expired.lost {
            self.notify(Notice::AuxError(format!(
                "the descriptor for connection id {conn_id} was lost and no handoff frame came within {:?}",
                crate::handoff::PAIRING_TIMEOUT
            )));
        }
    }

    // ---- connections -------------------------------------------------------

    fn open(&mut self, py: Python<'_>, paired: Paired) {
        if let Some(options) = self.listen_requests.remove(&paired.conn_id) {
            return self.start_listening(paired.conn_id, paired.fd, options);
        }
        let Paired { conn_id, fd, client_info } = paired;
        let initial_data = self.initial_data.remove(&conn_id).unwrap_or_default();
        let refuse = |this: &mut Self, reason: CloseReason| {
            this.counters.refused_handoffs += 1;
            this.notify(Notice::Closed { conn_id, reason });
        };
        let Some(bridge) = &self.bridge else { return refuse(self, CloseReason::NotSetUp) };
        if self.active >= self.max_connections {
            return refuse(self, CloseReason::MaxConnections);
        }
        // Before anything touches it: a listening socket is the VM's, and
        // neither its flags nor a shutdown may change it.
        match fdpass::check_connected(fd.as_fd()) {
            Ok(()) => {}
            Err(fdpass::NotConnection::Listening) => return refuse(self, CloseReason::ListeningSocket),
            Err(fdpass::NotConnection::NoPeer) => return refuse(self, CloseReason::NotConnected),
        }
        if let Err(errno) = fdpass::prepare_received(fd.as_fd()) {
            return refuse(self, CloseReason::Io(errno));
        }
        let raw = fd.as_raw_fd();
        let key = connection_key(raw);
        if let Some(aio) = &mut self.aio {
            aio.forget(raw);
        }
        // SAFETY: the descriptor is owned by the connection table from here on
        // and `close` deregisters it before dropping it.
        if let Err(e) = unsafe { self.selector.register(fd.as_fd(), key) } {
            return refuse(self, CloseReason::Io(io_errno(&e)));
        }
        self.shared.connection_opened(raw, conn_id);
        self.counters.total_connections += 1;
        self.active += 1;
        let now = Instant::now();
        if self.asgi.is_some() {
            return self.asgi_open(py, conn_id, fd, &client_info, initial_data, now);
        }
        if let Some(engine) = &mut self.http {
            let http = engine.open(raw, web::peer(&fd, &client_info), now);
            self.insert(conn_id, fd, Handler::Http(http), now);
            if initial_data.is_empty() {
                self.select(py, raw, Interest::READ);
            } else {
                self.http_initial_data(raw, &initial_data);
            }
            return;
        }
        match bridge.init_connection(py, raw, conn_id, &client_info) {
            Ok(protocol) => {
                self.insert(conn_id, fd, Handler::Protocol(protocol), now);
                if initial_data.is_empty() {
                    self.select(py, raw, Interest::READ);
                } else {
                    // Not recorded as a read: the handoff frame carries it,
                    // and a replay delivers it from there again.
                    match buffer::reactor_buffer_type(py)
                        .and_then(|t| t.call1((pyo3::types::PyBytes::new(py, &initial_data),)))
                        .and_then(|b| Ok(b.cast_into::<pyo3::types::PyBytes>()?))
                    {
                        Ok(data) => self.deliver(py, raw, data),
                        Err(e) => {
                            let reason = self.callback_failed(CallbackError::Python(python_error(py, e)));
                            self.close(py, raw, reason);
                        }
                    }
                }
            }
            Err(e) => {
                let reason = self.callback_failed(e);
                // The protocol may be registered already (connection_made raised).
                self.finish_close(py, conn_id, fd, reason);
            }
        }
    }

    /// Adds a newly opened connection to the table, with its idle timer
    /// when the context has an `idle_timeout`.
    fn insert(&mut self, conn_id: u64, fd: OwnedFd, handler: Handler, now: Instant) {
        let slot = fd.as_raw_fd() as usize;
        let idle_timer = self.idle_timeout.map(|t| self.idle.insert_after(now, t, (fd.as_raw_fd(), conn_id)));
        if self.connections.len() <= slot {
            self.connections.resize_with(slot + 1, || None);
        }
        self.connections[slot] = Some(Connection { conn_id, fd, handler, eof: false, last_event: now, idle_timer });
    }

    fn on_readable(&mut self, py: Python<'_>, fd: RawFd) {
        let Some(conn) = self.connection(fd) else { return };
        match conn.handler {
            Handler::Http(_) => return self.http_readable(fd),
            Handler::Asgi(_) => return self.asgi_readable(py, fd),
            Handler::Protocol(_) => {}
        }
        // The kernel reads straight into the `bytes` object that Python will
        // get: the data is never copied on its way to `data_received`.
        let result = buffer::read(py, conn.fd.as_fd(), READ_SIZE);
        if let Some(recorder) = &self.shared.recorder {
            match &result {
                Ok(Some(data)) => recorder.read(conn.conn_id, data.as_bytes()),
                Ok(None) => recorder.read(conn.conn_id, &[]),
                Err(_) => {}
            }
        }
        match result {
            Ok(None) if conn.eof => self.close(py, fd, CloseReason::Eof),
            Ok(None) => {
                // The peer half-closed: the protocol may still answer.
                let Some(conn) = self.connections.get_mut(fd as usize).and_then(Option::as_mut) else { return };
                conn.eof = true;
                let Handler::Protocol(protocol) = &conn.handler else { return };
                let result = match &self.bridge {
                    Some(bridge) => bridge.eof_received(py, fd, protocol),
                    None => return,
                };
                match result {
                    Ok(Action::Close) => self.close(py, fd, CloseReason::Eof),
                    other => self.apply(py, fd, Interest::READ, other),
                }
            }
            Ok(Some(data)) => self.deliver(py, fd, data),
            Err(ReadError::Os(Errno::EAGAIN | Errno::EINTR)) => self.select(py, fd, Interest::READ),
            Err(ReadError::Os(errno)) => self.close(py, fd, CloseReason::Io(errno)),
            // No memory for the buffer: the connection cannot be served.
            Err(ReadError::Python(e)) => {
                let reason = self.callback_failed(CallbackError::Python(python_error(py, e)));
                self.close(py, fd, reason);
            }
        }
    }

    /// Hands bytes read from `fd` (or by the VM before the handoff) to
    /// `data_received` and acts on the action it returns.
    fn deliver(&mut self, py: Python<'_>, fd: RawFd, data: Bound<'_, pyo3::types::PyBytes>) {
        self.shared.bytes_in.fetch_add(data.as_bytes().len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.counters.total_requests += 1;
        let Some(Connection { handler: Handler::Protocol(protocol), .. }) = self.connection(fd) else { return };
        let result = match &self.bridge {
            Some(bridge) => bridge.data_received(py, fd, protocol, data),
            None => return,
        };
        self.apply(py, fd, Interest::READ, result);
    }

    fn on_writable(&mut self, py: Python<'_>, fd: RawFd) {
        if let Some(Connection { handler: Handler::Asgi(_), .. }) = self.connection(fd) {
            return self.asgi_writable(py, fd);
        }
        let Some(Connection { handler: Handler::Protocol(protocol), .. }) = self.connection(fd) else { return };
        let result = match &self.bridge {
            Some(bridge) => bridge.write_ready(py, fd, protocol),
            None => return,
        };
        self.apply(py, fd, Interest::WRITE, result);
    }

    fn apply(&mut self, py: Python<'_>, fd: RawFd, fired: Interest, result: Result<Action, CallbackError>) {
        // The callback may have closed it already (a close from Python).
        let Some(conn) = self.connection(fd) else { return };
        if conn.eof {
            // After end of input, waiting to read again could only give end
            // of input again: the connection ends there.
            let reads = match result {
                Ok(Action::Continue) => fired.read,
                Ok(Action::ReadPending) => true,
                _ => false,
            };
            if reads {
                return self.close(py, fd, CloseReason::Eof);
            }
        }
        match result {
            Ok(Action::Continue) => self.select(py, fd, fired),
            Ok(Action::ReadPending) => self.select(py, fd, Interest::READ),
            // After a read, the socket is nearly always writable already:
            // `write_ready` is called at once rather than a poll round later.
            // Once only, so that a protocol asking again waits for the selector
            // like any other connection.
            Ok(Action::WritePending) if fired == Interest::READ && writable_now(fd) => self.on_writable(py, fd),
            Ok(Action::WritePending) => self.select(py, fd, Interest::WRITE),
            Ok(Action::AsyncPending) => {}
            Ok(Action::Close) => self.close(py, fd, CloseReason::Normal),
            Err(e) => {
                let reason = self.callback_failed(e);
                self.close(py, fd, reason);
            }
        }
    }

    /// Why a connection whose callback failed is closed; counts and logs the
    /// protocol's faults (a peer gone while writing is not one).
    fn callback_failed(&mut self, error: CallbackError) -> CloseReason {
        let reason = match error {
            CallbackError::WriteFailed(errno) => return CloseReason::Io(errno),
            CallbackError::Python(e) => {
                self.log(LogLevel::Error, e.traceback.trim_end().to_string());
                CloseReason::Python(e)
            }
            CallbackError::BadAction(text) => CloseReason::BadAction(text),
            CallbackError::BadClientInfo(text) => CloseReason::Python(PythonError {
                kind: "TypeError".into(),
                message: format!("client_info cannot be converted: {text}"),
                traceback: String::new(),
            }),
        };
        self.counters.python_errors += 1;
        reason
    }

    fn select(&mut self, py: Python<'_>, fd: RawFd, interest: Interest) {
        if let Err(e) = self.selector.select(connection_key(fd), interest) {
            self.close(py, fd, CloseReason::Io(io_errno(&e)));
        }
    }

    // ---- the asyncio loop (see `aio.rs`) ------------------------------------

    fn apply_aio_requests(&mut self) {
        let Some(aio) = &mut self.aio else { return };
        let problems = aio.apply(&self.shared.aio, &mut self.selector, connection_key);
        for problem in problems {
            self.log(LogLevel::Error, problem);
        }
    }

    fn step_asyncio(&mut self, py: Python<'_>) {
        let Some(aio) = &mut self.aio else { return };
        if !aio.wants_step(&self.shared.aio) {
            return;
        }
        let (result, problems) = aio.step(py, &self.shared.aio, &mut self.selector, connection_key);
        for problem in problems {
            self.log(LogLevel::Error, problem);
        }
        if let Err(e) = result {
            self.counters.python_errors += 1;
            self.log(LogLevel::Error, format!("asyncio loop iteration failed: {}", e.traceback.trim_end()));
        }
    }

    /// Cancels the asyncio loop's pending tasks and runs the loop (waiting
    /// for its own descriptors and timers only) until they are done, for at
    /// most [`crate::aio::SHUTDOWN_GRACE`].
    fn stop_asyncio(&mut self, py: Python<'_>) {
        let Some(aio) = &self.aio else { return };
        match aio.cancel_tasks(py) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                self.log(LogLevel::Error, format!("cannot cancel asyncio tasks: {}", e.traceback.trim_end()));
                return;
            }
        }
        let deadline = Instant::now() + crate::aio::SHUTDOWN_GRACE;
        let mut ready = Vec::new();
        loop {
            self.shared.aio.schedule();
            self.step_asyncio(py);
            let Some(aio) = &self.aio else { return };
            let left = aio.pending_tasks(py);
            if left == 0 {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                self.log(
                    LogLevel::Warning,
                    format!("{left} asyncio task(s) still pending {:?} after being cancelled; abandoned", crate::aio::SHUTDOWN_GRACE),
                );
                return;
            }
            let timeout = aio.timeout(&self.shared.aio).map_or(deadline - now, |t| t.min(deadline - now));
            ready.clear();
            self.apply_aio_requests();
            let selector = &mut self.selector;
            if py.detach(|| selector.wait(&mut ready, Some(timeout))).is_err() {
                return;
            }
            // Only the loop's own descriptors are served: the context is
            // stopping, its connections are closed next.
            for event in ready.iter().copied() {
                let fd = event.key.wrapping_sub(KEY_FIRST_CONNECTION) as RawFd;
                if event.key >= KEY_FIRST_CONNECTION && self.connection(fd).is_none() {
                    if let Some(aio) = self.aio.as_mut().filter(|aio| aio.owns(fd)) {
                        aio.on_ready(fd, event.interest);
                    }
                }
            }
        }
    }

    fn arm_requested_writes(&mut self) {
        for (fd, conn_id) in self.shared.take_write_requests() {
            // The descriptor may have been closed and its number given to
            // another connection since the request was made.
            if self.connection(fd).is_some_and(|c| c.conn_id == conn_id) {
                // A failure here shows up as an error on the next event.
                let _ = self.selector.select(connection_key(fd), Interest::WRITE);
            }
        }
    }

    fn connection(&self, fd: RawFd) -> Option<&Connection> {
        self.connections.get(fd as usize).and_then(Option::as_ref)
    }

    fn close(&mut self, py: Python<'_>, fd: RawFd, reason: CloseReason) {
        let Some(mut conn) = self.connections.get_mut(fd as usize).and_then(Option::take) else { return };
        if let (Handler::Http(http), Some(engine)) = (&mut conn.handler, &mut self.http) {
            engine.forget(http);
        }
        if let Handler::Asgi(handle) = &mut conn.handler {
            self.asgi_forget(py, handle);
        }
        drop(conn.handler);
        if let Some(timer) = conn.idle_timer {
            self.idle.cancel(timer);
        }
        self.finish_close(py, conn.conn_id, conn.fd, reason);
    }

    /// `connection_lost`, then deregister, shut down and close the descriptor,
    /// then tell the VM.
    fn finish_close(&mut self, py: Python<'_>, conn_id: u64, fd: OwnedFd, reason: CloseReason) {
        let raw = fd.as_raw_fd();
        // Its timers never run: cancelled before connection_lost, and again
        // once the connection is gone, for any set meanwhile from a thread.
        py_timers::cancel_connection(conn_id);
        if let Some(bridge) = self.bridge.as_ref().filter(|_| self.http.is_none() && self.asgi.is_none()) {
            if let Err(e) = bridge.close_connection(py, raw) {
                self.counters.python_errors += 1;
                self.log(LogLevel::Error, e.traceback.trim_end().to_string());
            }
        }
        self.release_connection(conn_id, fd, reason);
    }

    /// The part of closing that calls no Python: deregister, shut down and
    /// close the descriptor, then tell the VM.
    fn release_connection(&mut self, conn_id: u64, fd: OwnedFd, reason: CloseReason) {
        let raw = fd.as_raw_fd();
        let _ = self.selector.deregister(connection_key(raw));
        // The VM may still hold its own copy of the socket: shutting down
        // makes the peer see the close regardless. Not every descriptor is a
        // socket, so failure is expected and harmless.
        let _ = nix::sys::socket::shutdown(raw, nix::sys::socket::Shutdown::Both);
        drop(fd);
        self.shared.connection_closed(raw);
        py_timers::cancel_connection(conn_id);
        self.active -= 1;
        self.notify(Notice::Closed { conn_id, reason });
        self.out_of_fds = false;
        self.update_listening();
    }

    // ---- the listening socket (accept => port) ----------------------------

    fn start_listening(&mut self, listen_id: u64, fd: OwnedFd, options: ListenOptions) {
        if self.listening.is_some() {
            return self.log(LogLevel::Error, format!("listen {listen_id}: already listening; descriptor closed"));
        }
        let listening = match Listening::new(fd, options) {
            Ok(l) => l,
            Err(e) => return self.log(LogLevel::Error, format!("listen {listen_id}: {e}; descriptor closed")),
        };
        // SAFETY: the listening socket is owned by the reactor and
        // deregistered before it is dropped (`Drop`).
        if let Err(e) = unsafe { self.selector.register(listening.as_fd(), KEY_LISTENING) } {
            return self.log(LogLevel::Error, format!("listen {listen_id}: cannot watch the socket: {e}"));
        }
        self.listening = Some(listening);
        self.update_listening();
    }

    /// Accepts while the share and the pause allow, a batch at most.
    fn on_listening(&mut self, py: Python<'_>) {
        for _ in 0..listening::ACCEPT_BATCH {
            let Some(listening) = &mut self.listening else { return };
            if !listening.wants_accept(self.active) {
                break;
            }
            match listening.accept() {
                Ok(Some(accepted)) => {
                    // Announced first, so that the VM knows the id before
                    // its `closed` notice.
                    self.notify(Notice::Accepted { conn_id: accepted.conn_id, client_info: accepted.client_info.clone() });
                    let paired = Paired { conn_id: accepted.conn_id, fd: accepted.fd, client_info: accepted.client_info };
                    self.open(py, paired);
                }
                Ok(None) => break,
                Err(errno @ (Errno::EMFILE | Errno::ENFILE)) => {
                    if !self.out_of_fds {
                        self.log(LogLevel::Warning, format!("accept: out of descriptors ({errno}); accepting again when a connection closes"));
                    }
                    self.out_of_fds = true;
                    break;
                }
                Err(errno) => {
                    self.log(LogLevel::Error, format!("accept failed: {errno}"));
                    break;
                }
            }
        }
        self.update_listening();
    }

    /// Watches the listening socket exactly while the port should accept.
    fn update_listening(&mut self) {
        let Some(listening) = &self.listening else { return };
        let want = listening.wants_accept(self.active) && !self.out_of_fds;
        let armed = self.selector.armed(KEY_LISTENING).read;
        let result = if want && !armed {
            self.selector.select(KEY_LISTENING, Interest::READ)
        } else if !want && armed {
            self.selector.cancel(KEY_LISTENING, Interest::READ)
        } else {
            Ok(())
        };
        if let Err(e) = result {
            self.log(LogLevel::Error, format!("cannot watch the listening socket: {e}"));
        }
    }

    // ---- timers -------------------------------------------------------------

    /// Runs the Python timers and idle timeouts that are due.
    fn run_timers(&mut self, py: Python<'_>) {
        let deadline = self.next_timer_deadline();
        let Some(deadline) = deadline else { return };
        let now = Instant::now();
        if deadline > now {
            return;
        }
        self.expire_idle(py, now);
        let mut due = std::mem::take(&mut self.due);
        py_timers::take_due(now, &mut due);
        for handle in due.drain(..) {
            self.run_python_timer(py, &handle);
        }
        self.due = due;
    }

    fn next_timer_deadline(&mut self) -> Option<Instant> {
        timers::earliest(self.idle.next_deadline(), py_timers::next_deadline())
    }

    fn expire_idle(&mut self, py: Python<'_>, now: Instant) {
        let Some(limit) = self.idle_timeout else { return };
        let mut due = Vec::new();
        self.idle.take_due(now, &mut due);
        for (_, (fd, conn_id)) in due {
            let Some(conn) = self.connections.get_mut(fd as usize).and_then(Option::as_mut) else { continue };
            if conn.conn_id != conn_id {
                continue;
            }
            // Events only stamp the connection; its timer is moved here, when
            // it fires early, rather than on every event. An HTTP connection
            // in the application gets no events but is not idle: its time
            // starts again when the response is done (`http_finished`).
            let idle_until = match &conn.handler {
                Handler::Http(http) if http.state == ConnState::InApp => now + limit,
                _ => conn.last_event + limit,
            };
            if idle_until > now {
                conn.idle_timer = Some(self.idle.insert(idle_until, (fd, conn_id)));
            } else {
                conn.idle_timer = None;
                self.close(py, fd, CloseReason::IdleTimeout);
            }
        }
    }

    fn run_python_timer(&mut self, py: Python<'_>, handle: &Py<TimerHandle>) {
        let handle = handle.get();
        let Some((callback, args)) = handle.take_call() else { return };
        let owner = handle.owner();
        if let Some(owner) = owner {
            // Cancelled with its connection; checked again all the same.
            if !self.connection(owner.fd).is_some_and(|c| c.conn_id == owner.conn_id) {
                return;
            }
        }
        let Some(bridge) = &self.bridge else { return };
        let fd = owner.map_or(-1, |o| o.fd);
        let result = bridge.call_timer(py, fd, callback.bind(py), args.bind(py));
        match (owner, result) {
            (Some(owner), Ok(Some(action))) => self.apply_timer_action(py, owner.fd, action),
            (_, Ok(_)) => {}
            (Some(owner), Err(e)) => {
                if self.connection(owner.fd).is_some_and(|c| c.conn_id == owner.conn_id) {
                    let reason = self.callback_failed(e);
                    self.close(py, owner.fd, reason);
                } else {
                    self.callback_failed(e);
                }
            }
            (None, Err(e)) => {
                self.callback_failed(e);
            }
        }
    }

    /// What a connection's timer callback returned: nothing fired, so
    /// `"continue"` (like `None`) leaves the connection as it is.
    fn apply_timer_action(&mut self, py: Python<'_>, fd: RawFd, action: Action) {
        match action {
            Action::Continue | Action::AsyncPending => {}
            other => self.apply(py, fd, Interest::NONE, Ok(other)),
        }
    }

    fn close_all(&mut self, py: Python<'_>) {
        let open: Vec<RawFd> = self
            .connections
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(fd, _)| fd as RawFd)
            .collect();
        for fd in open {
            self.close(py, fd, CloseReason::Stopped);
        }
        let (frames, fds) = self.pairing.drain();
        drop(fds);
        self.initial_data.clear();
        for conn_id in frames {
            self.notify(Notice::Closed { conn_id, reason: CloseReason::Stopped });
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        if self.input.is_some() {
            let _ = self.selector.deregister(KEY_INPUT);
        }
        if self.listener.is_some() {
            let _ = self.selector.deregister(KEY_LISTENER);
        }
        if self.aux.is_some() {
            let _ = self.selector.deregister(KEY_AUX);
        }
        if self.listening.is_some() {
            let _ = self.selector.deregister(KEY_LISTENING);
        }
    }
}

/// Whether `fd` can be written without blocking, asked without waiting.
fn writable_now(fd: RawFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // SAFETY: `fd` belongs to an open connection for the duration of the call.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let mut fds = [PollFd::new(borrowed, PollFlags::POLLOUT)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
        && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLOUT) && !r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP))
}

fn io_errno(e: &std::io::Error) -> Errno {
    e.raw_os_error().map(Errno::from_raw).unwrap_or(Errno::EIO)
}
