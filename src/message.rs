//! The messages of `docs/protocol.md`, as Rust types.
//!
//! Frames become [`Request`]s here, at the edge, and [`Notice`]s become terms
//! here too: the rest of the port never looks inside a raw term except for
//! the user data it passes through to Python.

use eetf::Term;

use crate::terms::{self, as_atom, as_bytes, as_u64, atom, atom_map, binary, integer, tuple};

/// The protocol version announced in `hello`.
pub const PROTOCOL_VERSION: u64 = 1;

/// Options of a `setup` request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SetupOptions {
    pub python_path: Vec<String>,
    pub setup_code: Option<String>,
    pub app_module: Option<String>,
    pub app_callable: Option<String>,
    pub max_connections: Option<u64>,
    /// `auto`, `wsgi`, `asgi` or `protocol` (`docs/http.md`).
    pub app_interface: Option<String>,
    /// The HTTP limits, for a web application.
    pub http: crate::http::Limits,
    /// Close a connection after this long without a readiness event.
    pub idle_timeout: Option<std::time::Duration>,
    /// `auto`, `on` or `off`: the ASGI `lifespan` scope (`docs/http.md`).
    pub lifespan: Option<String>,
}

/// Options of `listen` and `listen_control`: the port's share of the
/// listener's limit and whether it accepts at all.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenOptions {
    pub max_connections: u64,
    pub paused: bool,
    /// Added to every accepted connection's `client_info` (`listen` only).
    pub reactor_pid: Option<Term>,
}

/// A request from the VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Setup { reference: Term, options: SetupOptions },
    /// `initial_data`: bytes the VM had already read from the connection,
    /// delivered to the protocol before anything the port reads.
    Handoff { conn_id: u64, client_info: Term, initial_data: Vec<u8> },
    Stats { reference: Term },
    Exec { reference: Term, code: String },
    Eval { reference: Term, expr: String },
    /// `fds`: (argument index, connection id) of the arguments that are
    /// descriptors passed over the auxiliary socket under that id.
    Call { reference: Term, module: String, function: String, args: Vec<Term>, fds: Vec<(usize, u64)> },
    Stop { reference: Term },
    Listen { listen_id: u64, options: ListenOptions },
    ListenControl { reference: Term, options: ListenOptions },
    /// `{vm_reply, Id, Result}` that came after its request gave up waiting
    /// (replies in time are taken by the waiting request, see `vm_request`).
    LateReply { id: u64 },
}

/// Why a decoded term is not a request.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    /// Not a request at all: answered with `frame_error`.
    #[error("unknown message: {0}")]
    Unknown(String),
    /// A known request with bad fields: answered with `{reply, Ref, {error, {bad_request, _}}}`.
    #[error("bad {name} request: {reason}")]
    Bad {
        name: &'static str,
        reference: Term,
        reason: String,
    },
    /// A `handoff` of the wrong shape that still names its connection id:
    /// answered with `{closed, ConnId, {bad_request, _}}`, so that the VM
    /// does not count a connection that will never exist.
    #[error("bad handoff request: {reason}")]
    BadHandoff { conn_id: u64, reason: String },
}

/// Who waits for the answer to a frame that cannot be decoded as a whole.
#[derive(Debug, Clone, PartialEq)]
pub enum Carrier {
    /// A request whose reply goes to this `Ref`.
    Reply(Term),
    /// A `handoff` of this connection id.
    Handoff(u64),
}

impl Carrier {
    /// What the first bytes of a refused frame say: a known request name
    /// followed by its `Ref` (or, for `handoff`, a valid connection id).
    pub fn of_frame(bytes: &[u8]) -> Option<Carrier> {
        let (name, second) = terms::request_head(bytes)?;
        match name.as_str() {
            "handoff" => as_u64(&second).filter(|id| *id > 0).map(Carrier::Handoff),
            // The reply nests the reference one level deeper: one that
            // would make the reply too deep to decode gets a frame error.
            "setup" | "stats" | "stop" | "exec" | "eval" | "call" => {
                (terms::depth(&second) < terms::MAX_DEPTH).then_some(Carrier::Reply(second))
            }
            _ => None,
        }
    }
}

impl Request {
    /// Interprets one decoded frame.
    pub fn from_term(term: Term) -> Result<Request, RequestError> {
        let Term::Tuple(t) = term else {
            return Err(RequestError::Unknown(format!("not a tuple: {}", brief(&term))));
        };
        let mut elements = t.elements;
        let name = elements.first().and_then(as_atom).unwrap_or("").to_string();
        let arity = elements.len();
        let bad = |name: &'static str, reference: &Term, reason: &str| RequestError::Bad {
            name,
            reference: reference.clone(),
            reason: reason.to_string(),
        };
        match (name.as_str(), arity) {
            ("setup", 3) => {
                let opts = elements.pop().expect("arity checked");
                let reference = elements.pop().expect("arity checked");
                let options = SetupOptions::from_term(&opts)
                    .map_err(|reason| bad("setup", &reference, &reason))?;
                Ok(Request::Setup { reference, options })
            }
            ("handoff", 3 | 4) => {
                let initial_data = if arity == 4 {
                    let data = elements.pop().expect("arity checked");
                    match as_bytes(&data) {
                        Some(bytes) => bytes.to_vec(),
                        None => {
                            let reason = format!("handoff with initial data that is not a binary: {}", brief(&data));
                            // With a usable id the refusal names it, as for any misshapen handoff.
                            return Err(match as_u64(&elements[1]) {
                                Some(conn_id) if conn_id > 0 => RequestError::BadHandoff { conn_id, reason },
                                _ => RequestError::Unknown(reason),
                            });
                        }
                    }
                } else {
                    Vec::new()
                };
                let client_info = elements.pop().expect("arity checked");
                let id = elements.pop().expect("arity checked");
                match as_u64(&id) {
                    Some(conn_id) if conn_id > 0 => Ok(Request::Handoff { conn_id, client_info, initial_data }),
                    _ => Err(RequestError::Unknown(format!(
                        "handoff with a connection id that is not a positive 64-bit integer: {}",
                        brief(&id)
                    ))),
                }
            }
            ("listen", 3) => {
                let opts = elements.pop().expect("arity checked");
                let id = elements.pop().expect("arity checked");
                let listen_id = as_u64(&id).filter(|i| *i > 0).ok_or_else(|| {
                    RequestError::Unknown(format!("listen with an id that is not a positive 64-bit integer: {}", brief(&id)))
                })?;
                let options = ListenOptions::from_term(&opts)
                    .map_err(|reason| RequestError::Unknown(format!("listen {listen_id}: {reason}")))?;
                Ok(Request::Listen { listen_id, options })
            }
            ("listen_control", 3) => {
                let opts = elements.pop().expect("arity checked");
                let reference = elements.pop().expect("arity checked");
                let options = ListenOptions::from_term(&opts).map_err(|reason| bad("listen_control", &reference, &reason))?;
                Ok(Request::ListenControl { reference, options })
            }
            ("stats", 2) => Ok(Request::Stats { reference: elements.pop().expect("arity checked") }),
            ("stop", 2) => Ok(Request::Stop { reference: elements.pop().expect("arity checked") }),
            ("exec", 3) | ("eval", 3) => {
                let text = elements.pop().expect("arity checked");
                let reference = elements.pop().expect("arity checked");
                let is_exec = name == "exec";
                let what = if is_exec { "exec" } else { "eval" };
                let text = text_of(&text).ok_or_else(|| bad(what, &reference, "code must be a UTF-8 binary"))?;
                Ok(if is_exec {
                    Request::Exec { reference, code: text }
                } else {
                    Request::Eval { reference, expr: text }
                })
            }
            ("call", 5 | 6) => {
                let fds = if elements.len() == 6 { Some(elements.pop().expect("arity checked")) } else { None };
                let args = elements.pop().expect("arity checked");
                let function = elements.pop().expect("arity checked");
                let module = elements.pop().expect("arity checked");
                let reference = elements.pop().expect("arity checked");
                let module = text_of(&module).ok_or_else(|| bad("call", &reference, "module must be a UTF-8 binary or atom"))?;
                let function = text_of(&function).ok_or_else(|| bad("call", &reference, "function must be a UTF-8 binary or atom"))?;
                let args = match args {
                    Term::List(l) => l.elements,
                    Term::ByteList(b) => b.bytes.into_iter().map(|b| integer(u64::from(b))).collect(),
                    _ => return Err(bad("call", &reference, "args must be a list")),
                };
                let fds = match fds {
                    None => Vec::new(),
                    Some(term) => call_fds(&term, args.len())
                        .ok_or_else(|| bad("call", &reference, "fds must be a list of {ArgIndex, ConnId} naming arguments"))?,
                };
                Ok(Request::Call { reference, module, function, args, fds })
            }
            ("vm_reply", 3) => match as_u64(&elements[1]) {
                Some(id) => Ok(Request::LateReply { id }),
                None => Err(RequestError::Unknown(format!("vm_reply with a bad id: {}", brief(&elements[1])))),
            },
            ("handoff", n) if n >= 2 => {
                let reason = format!("handoff request with {} fields, expected 2 or 3", n - 1);
                match as_u64(&elements[1]) {
                    Some(conn_id) if conn_id > 0 => Err(RequestError::BadHandoff { conn_id, reason }),
                    _ => Err(RequestError::Unknown(reason)),
                }
            }
            ("setup" | "stats" | "stop" | "exec" | "eval" | "call", n) if n >= 2 => {
                // The shape is wrong but the `Ref` is where it belongs: the
                // caller gets an answer instead of waiting for none.
                let (name, fields): (&'static str, &str) = match name.as_str() {
                    "setup" => ("setup", "2"),
                    "stats" => ("stats", "1"),
                    "stop" => ("stop", "1"),
                    "exec" => ("exec", "2"),
                    "eval" => ("eval", "2"),
                    _ => ("call", "4 or 5"),
                };
                Err(bad(name, &elements[1], &format!("{} fields, expected {fields}", n - 1)))
            }
            ("setup" | "handoff" | "stats" | "stop" | "exec" | "eval" | "call" | "listen" | "listen_control", n) => {
                Err(RequestError::Unknown(format!("{name} request with {} fields", n - 1)))
            }
            _ => Err(RequestError::Unknown(brief(&Term::from(eetf::Tuple::from(elements))))),
        }
    }
}

/// `[{ArgIndex, ConnId}]` with every index below `arity`.
fn call_fds(term: &Term, arity: usize) -> Option<Vec<(usize, u64)>> {
    let elements = match term {
        Term::List(l) => &l.elements,
        _ => return None,
    };
    elements
        .iter()
        .map(|e| match e {
            Term::Tuple(t) if t.elements.len() == 2 => {
                let index = crate::terms::as_u64(&t.elements[0])? as usize;
                let id = crate::terms::as_u64(&t.elements[1])?;
                (index < arity).then_some((index, id))
            }
            _ => None,
        })
        .collect()
}

impl SetupOptions {
    fn from_term(term: &Term) -> Result<SetupOptions, String> {
        let Term::Map(map) = term else {
            return Err("options must be a map".into());
        };
        let mut options = SetupOptions::default();
        for (key, value) in &map.map {
            let key = as_atom(key).ok_or_else(|| format!("option key {} is not an atom", brief(key)))?;
            let text = |what: &str| text_of(value).ok_or_else(|| format!("{what} must be a UTF-8 binary"));
            match key {
                // The VM's own name for the context: it tags the port's
                // notices with it itself, so the port has no use for it.
                "context_id" => {}
                "setup_code" => options.setup_code = Some(text("setup_code")?),
                "app_module" => options.app_module = Some(text("app_module")?),
                "app_callable" => options.app_callable = Some(text("app_callable")?),
                "max_connections" => {
                    options.max_connections = Some(
                        as_u64(value)
                            .filter(|n| *n > 0)
                            .ok_or("max_connections must be a positive integer")?,
                    )
                }
                "idle_timeout" => {
                    // Milliseconds, or `infinity` (the default), as OTP's timeouts.
                    options.idle_timeout = match as_atom(value) {
                        Some("infinity") => None,
                        _ => Some(std::time::Duration::from_millis(
                            as_u64(value)
                                .filter(|n| *n > 0)
                                .ok_or("idle_timeout must be a positive integer (milliseconds) or infinity")?,
                        )),
                    }
                }
                "python_path" => {
                    let Term::List(l) = value else {
                        return Err("python_path must be a list of binaries".into());
                    };
                    options.python_path = l
                        .elements
                        .iter()
                        .map(|p| text_of(p).ok_or("python_path must be a list of binaries"))
                        .collect::<Result<_, _>>()?;
                }
                "app_interface" => {
                    let name = text("app_interface")?;
                    if !["auto", "wsgi", "asgi", "protocol"].contains(&name.as_str()) {
                        return Err("app_interface must be auto, wsgi, asgi or protocol".into());
                    }
                    options.app_interface = Some(name);
                }
                "max_request_line" | "max_header_block" | "max_header_count" | "max_body_size" | "keepalive_timeout"
                | "header_timeout" | "threads" => {
                    let n = as_u64(value).filter(|n| *n > 0).ok_or_else(|| format!("{key} must be a positive integer"))?;
                    let size = usize::try_from(n).map_err(|_| format!("{key} is too large"))?;
                    let limits = &mut options.http;
                    match key {
                        "max_request_line" => limits.max_request_line = size,
                        "max_header_block" => limits.max_header_block = size,
                        "max_header_count" => limits.max_header_count = size.min(65536),
                        "max_body_size" => limits.max_body_size = n,
                        "keepalive_timeout" => limits.keepalive_timeout = std::time::Duration::from_millis(n),
                        "header_timeout" => limits.header_timeout = std::time::Duration::from_millis(n),
                        _ => limits.threads = size.min(1024),
                    }
                }
                "lifespan" => {
                    let mode = text("lifespan")?;
                    if !["auto", "on", "off"].contains(&mode.as_str()) {
                        return Err("lifespan must be auto, on or off".into());
                    }
                    options.lifespan = Some(mode);
                }
                "access_log" => {
                    options.http.access_log = match as_atom(value) {
                        Some("true") => true,
                        Some("false") => false,
                        _ => return Err("access_log must be a boolean".into()),
                    }
                }
                "multiprocess" => {
                    options.http.multiprocess = match as_atom(value) {
                        Some("true") => true,
                        Some("false") => false,
                        _ => return Err("multiprocess must be a boolean".into()),
                    }
                }
                // Options the VM uses itself may pass through; unknown ones are an error.
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(options)
    }
}

impl ListenOptions {
    fn from_term(term: &Term) -> Result<ListenOptions, String> {
        let Term::Map(map) = term else {
            return Err("options must be a map".into());
        };
        let mut options = ListenOptions { max_connections: 0, paused: false, reactor_pid: None };
        let mut limit = None;
        for (key, value) in &map.map {
            match as_atom(key) {
                Some("max_connections") => {
                    limit = Some(as_u64(value).ok_or("max_connections must be a non-negative integer")?)
                }
                Some("paused") => {
                    options.paused = match as_atom(value) {
                        Some("true") => true,
                        Some("false") => false,
                        _ => return Err("paused must be true or false".into()),
                    }
                }
                Some("reactor_pid") => options.reactor_pid = Some(value.clone()),
                _ => return Err(format!("unknown option {}", brief(key))),
            }
        }
        options.max_connections = limit.ok_or("max_connections is missing")?;
        Ok(options)
    }
}

/// UTF-8 text from a binary, a string or an atom.
fn text_of(term: &Term) -> Option<String> {
    if let Some(a) = as_atom(term) {
        return Some(a.to_string());
    }
    as_bytes(term).and_then(|b| String::from_utf8(b.to_vec()).ok())
}

/// A short rendering of a term for error messages: at most 200 bytes of its
/// Erlang syntax, whatever the size of the term.
pub fn brief(term: &Term) -> String {
    terms::erlang_syntax_brief(term, 200)
}

/// A Python exception, as the VM sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonError {
    pub kind: String,
    pub message: String,
    pub traceback: String,
}

impl std::fmt::Display for PythonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl PythonError {
    pub fn to_term(&self) -> Term {
        tuple(vec![
            atom("python"),
            binary(self.kind.as_bytes()),
            binary(self.message.as_bytes()),
            binary(self.traceback.as_bytes()),
        ])
    }
}

/// Why a connection is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    Normal,
    Eof,
    Io(nix::errno::Errno),
    Python(PythonError),
    BadAction(String),
    Stopped,
    MaxConnections,
    NotSetUp,
    DuplicateId,
    FdNotReceived,
    /// The handed-off descriptor is a listening socket (`SO_ACCEPTCONN`).
    ListeningSocket,
    /// The handed-off descriptor is a stream socket with no peer.
    NotConnected,
    /// The `handoff` frame could not be decoded (too deep, too many terms,
    /// a tag the port does not take) or had the wrong shape.
    BadTerm(String),
    /// No readiness event for the context's `idle_timeout`.
    IdleTimeout,
}

impl CloseReason {
    pub fn to_term(&self) -> Term {
        match self {
            CloseReason::Normal => atom("normal"),
            CloseReason::Eof => atom("eof"),
            CloseReason::Io(errno) => tuple(vec![atom("error"), atom(&errno_name(*errno))]),
            CloseReason::Python(e) => e.to_term(),
            CloseReason::BadAction(text) => tuple(vec![atom("bad_action"), binary(text.as_bytes())]),
            CloseReason::Stopped => atom("stopped"),
            CloseReason::MaxConnections => atom("max_connections"),
            CloseReason::NotSetUp => atom("not_set_up"),
            CloseReason::DuplicateId => atom("duplicate_id"),
            CloseReason::FdNotReceived => atom("fd_not_received"),
            CloseReason::ListeningSocket => atom("listening_socket"),
            CloseReason::NotConnected => atom("not_connected"),
            CloseReason::BadTerm(text) => tuple(vec![atom("bad_term"), binary(text.as_bytes())]),
            CloseReason::IdleTimeout => atom("idle_timeout"),
        }
    }
}

/// `ECONNRESET` becomes `econnreset`, as `inet` names errors.
pub fn errno_name(errno: nix::errno::Errno) -> String {
    format!("{errno:?}").to_ascii_lowercase()
}

/// Failure of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestFailure {
    Python(PythonError),
    NotSetUp,
    AlreadySetUp,
    BadRequest(String),
    Unconvertible(String),
    /// The request's frame could not be decoded: too deep, too many terms,
    /// a tag the port does not take.
    BadTerm(String),
    /// The ASGI application failed its `lifespan.startup`, with its message.
    LifespanStartupFailed(String),
}

impl RequestFailure {
    pub fn to_term(&self) -> Term {
        let reason = match self {
            RequestFailure::Python(e) => e.to_term(),
            RequestFailure::NotSetUp => atom("not_set_up"),
            RequestFailure::AlreadySetUp => atom("already_set_up"),
            RequestFailure::BadRequest(t) => tuple(vec![atom("bad_request"), binary(t.as_bytes())]),
            RequestFailure::Unconvertible(t) => tuple(vec![atom("unconvertible"), binary(t.as_bytes())]),
            RequestFailure::BadTerm(t) => tuple(vec![atom("bad_term"), binary(t.as_bytes())]),
            RequestFailure::LifespanStartupFailed(t) => {
                tuple(vec![atom("lifespan_startup_failed"), binary(t.as_bytes())])
            }
        };
        tuple(vec![atom("error"), reason])
    }
}

/// Counters reported by `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub active_connections: u64,
    pub total_connections: u64,
    pub total_requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub python_errors: u64,
    pub refused_handoffs: u64,
    pub pending_fds: u64,
}

/// A message from the port to the VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    Hello { os_pid: u32, socket_path: String, max_frame: usize },
    Reply { reference: Term, result: Term },
    Closed { conn_id: u64, reason: CloseReason },
    Accepted { conn_id: u64, client_info: Term },
    Log { level: LogLevel, text: String },
    Send { pid: Term, message: Term },
    /// A request from Python that waits for the VM's `{vm_reply, Id, Result}`.
    VmRequest { id: u64, request: Term },
    FrameError(String),
    AuxError(String),
}

/// Level of a `log` notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }

    pub fn from_name(name: &str) -> Option<LogLevel> {
        match name {
            "info" => Some(LogLevel::Info),
            "warning" => Some(LogLevel::Warning),
            "error" => Some(LogLevel::Error),
            _ => None,
        }
    }
}

impl Notice {
    /// `{reply, Ref, ok}`.
    pub fn ok(reference: Term) -> Notice {
        Notice::Reply { reference, result: atom("ok") }
    }

    /// `{reply, Ref, {ok, Value}}`.
    pub fn ok_value(reference: Term, value: Term) -> Notice {
        Notice::Reply { reference, result: tuple(vec![atom("ok"), value]) }
    }

    /// `{reply, Ref, {error, Reason}}`.
    pub fn failed(reference: Term, failure: &RequestFailure) -> Notice {
        Notice::Reply { reference, result: failure.to_term() }
    }

    pub fn stats(reference: Term, s: &Stats) -> Notice {
        let map = atom_map(vec![
            ("active_connections", integer(s.active_connections)),
            ("total_connections", integer(s.total_connections)),
            ("total_requests", integer(s.total_requests)),
            ("bytes_in", integer(s.bytes_in)),
            ("bytes_out", integer(s.bytes_out)),
            ("python_errors", integer(s.python_errors)),
            ("refused_handoffs", integer(s.refused_handoffs)),
            ("pending_fds", integer(s.pending_fds)),
        ]);
        Notice::ok_value(reference, map)
    }

    pub fn to_term(&self) -> Term {
        match self {
            Notice::Hello { os_pid, socket_path, max_frame } => tuple(vec![
                atom("hello"),
                atom_map(vec![
                    ("protocol", integer(PROTOCOL_VERSION)),
                    ("os_pid", integer(u64::from(*os_pid))),
                    ("socket_path", binary(socket_path.as_bytes())),
                    ("max_frame", integer(*max_frame as u64)),
                ]),
            ]),
            Notice::Reply { reference, result } => tuple(vec![atom("reply"), reference.clone(), result.clone()]),
            Notice::Closed { conn_id, reason } => tuple(vec![atom("closed"), integer(*conn_id), reason.to_term()]),
            Notice::Accepted { conn_id, client_info } => {
                tuple(vec![atom("accepted"), integer(*conn_id), client_info.clone()])
            }
            Notice::Log { level, text } => tuple(vec![atom("log"), atom(level.name()), binary(text.as_bytes())]),
            Notice::Send { pid, message } => tuple(vec![atom("send"), pid.clone(), message.clone()]),
            Notice::VmRequest { id, request } => tuple(vec![atom("vm_request"), integer(*id), request.clone()]),
            Notice::FrameError(text) => tuple(vec![atom("frame_error"), binary(text.as_bytes())]),
            Notice::AuxError(text) => tuple(vec![atom("aux_error"), binary(text.as_bytes())]),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        terms::encode(&self.to_term())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_too_deep_for_a_reply_is_not_answered_with_it() {
        // `{stats, Ref}` with `Ref` nested `n` tuples deep.
        let frame = |n: usize| {
            let mut bytes = vec![131, 104, 2, 119, 5];
            bytes.extend_from_slice(b"stats");
            for _ in 0..n {
                bytes.extend_from_slice(&[104, 1]);
            }
            bytes.extend_from_slice(&[97, 1]);
            bytes
        };
        let mut answered = 0;
        for n in terms::MAX_DEPTH - 5..terms::MAX_DEPTH + 5 {
            if let Some(Carrier::Reply(reference)) = Carrier::of_frame(&frame(n)) {
                answered += 1;
                let reply = Notice::failed(reference, &RequestFailure::BadTerm("too deep".into())).encode();
                assert!(terms::decode(&reply).is_ok(), "the reply to a reference {n} deep cannot be decoded");
            }
        }
        assert!(answered > 0 && answered < 10, "{answered} of 10 answered");
    }
    use crate::terms::list;

    fn req(t: Term) -> Result<Request, RequestError> {
        Request::from_term(terms::decode(&terms::encode(&t)).unwrap())
    }

    #[test]
    fn decodes_every_request() {
        let r = integer(7);
        assert_eq!(req(tuple(vec![atom("stats"), r.clone()])), Ok(Request::Stats { reference: r.clone() }));
        assert_eq!(req(tuple(vec![atom("stop"), r.clone()])), Ok(Request::Stop { reference: r.clone() }));
        assert_eq!(
            req(tuple(vec![atom("exec"), r.clone(), binary(b"x = 1".to_vec())])),
            Ok(Request::Exec { reference: r.clone(), code: "x = 1".into() })
        );
        assert_eq!(
            req(tuple(vec![atom("eval"), r.clone(), binary(b"x".to_vec())])),
            Ok(Request::Eval { reference: r.clone(), expr: "x".into() })
        );
        assert_eq!(
            req(tuple(vec![atom("call"), r.clone(), binary(b"m".to_vec()), atom("f"), list(vec![integer(1)])])),
            Ok(Request::Call { reference: r.clone(), module: "m".into(), function: "f".into(), args: vec![integer(1)], fds: vec![] })
        );
        assert_eq!(
            req(tuple(vec![atom("handoff"), integer(9), atom_map(vec![])])),
            Ok(Request::Handoff { conn_id: 9, client_info: atom_map(vec![]), initial_data: vec![] })
        );
        let fd_args = list(vec![tuple(vec![integer(0), integer(7)])]);
        assert_eq!(
            req(tuple(vec![atom("call"), r.clone(), atom("m"), atom("f"), list(vec![atom("undefined")]), fd_args])),
            Ok(Request::Call {
                reference: r.clone(),
                module: "m".into(),
                function: "f".into(),
                args: vec![atom("undefined")],
                fds: vec![(0, 7)]
            })
        );
        let out_of_range = list(vec![tuple(vec![integer(1), integer(7)])]);
        assert!(matches!(
            req(tuple(vec![atom("call"), r.clone(), atom("m"), atom("f"), list(vec![integer(1)]), out_of_range])),
            Err(RequestError::Bad { .. })
        ));
        assert_eq!(
            req(tuple(vec![atom("handoff"), integer(9), atom_map(vec![]), binary(b"GET".to_vec())])),
            Ok(Request::Handoff { conn_id: 9, client_info: atom_map(vec![]), initial_data: b"GET".to_vec() })
        );
        assert!(matches!(
            req(tuple(vec![atom("handoff"), integer(9), atom_map(vec![]), atom("x")])),
            Err(RequestError::BadHandoff { conn_id: 9, .. })
        ));
        let opts = atom_map(vec![
            ("setup_code", binary(b"pass".to_vec())),
            ("max_connections", integer(2)),
            ("python_path", list(vec![binary(b"/x".to_vec())])),
        ]);
        let Ok(Request::Setup { options, .. }) = req(tuple(vec![atom("setup"), r.clone(), opts])) else {
            panic!("setup not decoded");
        };
        assert_eq!(options.setup_code.as_deref(), Some("pass"));
        assert_eq!(options.max_connections, Some(2));
        assert_eq!(options.python_path, vec!["/x".to_string()]);
        let idle = |v: Term| match req(tuple(vec![atom("setup"), r.clone(), atom_map(vec![("idle_timeout", v)])])) {
            Ok(Request::Setup { options, .. }) => Ok(options.idle_timeout),
            Ok(other) => panic!("not a setup: {other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(idle(integer(1500)), Ok(Some(std::time::Duration::from_millis(1500))));
        assert_eq!(idle(atom("infinity")), Ok(None));
        assert!(idle(integer(0)).is_err());
        assert!(idle(atom("never")).is_err());
        let multiprocess = |v: Term| match req(tuple(vec![atom("setup"), r.clone(), atom_map(vec![("multiprocess", v)])])) {
            Ok(Request::Setup { options, .. }) => Ok(options.http.multiprocess),
            Ok(other) => panic!("not a setup: {other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(multiprocess(atom("true")), Ok(true));
        assert_eq!(multiprocess(atom("false")), Ok(false));
        assert!(multiprocess(integer(1)).is_err());
    }

    #[test]
    fn bad_fields_name_the_problem_and_keep_the_ref() {
        let r = integer(3);
        match req(tuple(vec![atom("exec"), r.clone(), integer(1)])) {
            Err(RequestError::Bad { name: "exec", reference, reason }) => {
                assert_eq!(reference, r);
                assert!(reason.contains("UTF-8 binary"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            req(tuple(vec![atom("setup"), r.clone(), atom_map(vec![("max_connections", integer(0))])])),
            Err(RequestError::Bad { name: "setup", .. })
        ));
        assert!(matches!(
            req(tuple(vec![atom("setup"), r, atom_map(vec![("bogus", integer(0))])])),
            Err(RequestError::Bad { name: "setup", .. })
        ));
    }

    #[test]
    fn decodes_listen_requests() {
        let opts = atom_map(vec![("max_connections", integer(3)), ("paused", atom("true"))]);
        assert_eq!(
            req(tuple(vec![atom("listen"), integer(4), opts.clone()])),
            Ok(Request::Listen {
                listen_id: 4,
                options: ListenOptions { max_connections: 3, paused: true, reactor_pid: None }
            })
        );
        assert_eq!(
            req(tuple(vec![atom("listen_control"), integer(1), opts])),
            Ok(Request::ListenControl {
                reference: integer(1),
                options: ListenOptions { max_connections: 3, paused: true, reactor_pid: None }
            })
        );
        assert!(matches!(
            req(tuple(vec![atom("listen"), integer(4), atom_map(vec![("paused", atom("false"))])])),
            Err(RequestError::Unknown(text)) if text.contains("max_connections is missing")
        ));
        assert!(matches!(
            req(tuple(vec![atom("listen_control"), integer(1), atom_map(vec![("max_connections", atom("x"))])])),
            Err(RequestError::Bad { name: "listen_control", .. })
        ));
    }

    #[test]
    fn unknown_messages_are_named() {
        match req(tuple(vec![atom("launch"), integer(1)])) {
            Err(RequestError::Unknown(text)) => assert!(text.contains("launch"), "{text}"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(req(atom("stats")), Err(RequestError::Unknown(_))));
        assert!(matches!(req(tuple(vec![atom("stats")])), Err(RequestError::Unknown(_))));
        assert!(matches!(
            req(tuple(vec![atom("handoff"), integer(0), atom_map(vec![])])),
            Err(RequestError::Unknown(_))
        ));
    }

    #[test]
    fn notices_encode_as_documented() {
        let closed = Notice::Closed { conn_id: 5, reason: CloseReason::Io(nix::errno::Errno::ECONNRESET) };
        assert_eq!(
            terms::decode(&closed.encode()).unwrap(),
            tuple(vec![atom("closed"), integer(5), tuple(vec![atom("error"), atom("econnreset")])])
        );
    }
}
