//! End-to-end harness: drives the real `py_reactor_port` binary exactly as an
//! Erlang VM would.
//!
//! * the port is spawned as `py_reactor_port serve --vm-pid <our pid>` with
//!   stdin/stdout piped; stderr is captured into a buffer by a thread;
//! * frames are `{packet,4}` + ETF (the `eetf` crate), read by a thread and
//!   handed over a channel, so that every wait has a timeout and no test can
//!   hang;
//! * the auxiliary Unix socket announced in `hello` is connected with a plain
//!   Unix stream socket, and descriptors are passed with `sendmsg` +
//!   `SCM_RIGHTS`, one 8-byte big-endian id per descriptor;
//! * notices are sorted as they arrive: `log` and `send` notices go to their
//!   own lists, everything else to a pending queue that `wait_for` searches.
//!
//! Each test file includes this module with
//! `#[path = "driver/mod.rs"] mod driver;`.
//!
//! Environment knobs (all optional):
//! * `PY_REACTOR_PORT_EXE`: test this binary instead of the one Cargo built
//!   (for instance an installed `priv/py_reactor_port`);
//! * `PORT_TEST_STDERR`: echo the port's stderr live;
//! * `PORT_TEST_LOGS`: echo `{log, Level, Text}` notices live.
//!
//! A failing test prints the port's stderr and its last notices.
#![allow(dead_code)]

mod http_client;
#[allow(unused_imports)] // only the HTTP tests use the client
pub use http_client::{check_expect_100_continue, Client, Reply};

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Cursor, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use eetf::{Atom, BigInteger, Binary, FixInteger, Float, List, Map, Pid, Term, Tuple};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

/// Default timeout for anything the port should do promptly.
pub const T: Duration = Duration::from_secs(10);

/// The port binary under test: the one Cargo built for this package, or the
/// one named by `PY_REACTOR_PORT_EXE` (to test an installed `priv/` copy).
pub fn port_exe() -> PathBuf {
    match std::env::var_os("PY_REACTOR_PORT_EXE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_py_reactor_port")),
    }
}

/// The repository root (the Cargo package directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory holding the `erlang` Python package.
pub fn python_dir() -> PathBuf {
    repo_root().join("python")
}

// ---------------------------------------------------------------------------
// Terms: building, inspecting, normalising, matching
// ---------------------------------------------------------------------------

pub fn atom(s: &str) -> Term {
    Term::from(Atom::from(s))
}

pub fn bin(b: impl AsRef<[u8]>) -> Term {
    Term::from(Binary::from(b.as_ref()))
}

pub fn int(i: i64) -> Term {
    match i32::try_from(i) {
        Ok(v) => Term::from(FixInteger::from(v)),
        Err(_) => Term::from(BigInteger::from(i)),
    }
}

pub fn uint(u: u64) -> Term {
    match i32::try_from(u) {
        Ok(v) => Term::from(FixInteger::from(v)),
        Err(_) => Term::from(BigInteger::from(u)),
    }
}

/// An integer of any size, given as a sign and little-endian magnitude
/// (encoded as SMALL_BIG_EXT and decoded, so no bignum crate is needed).
pub fn big_le(negative: bool, magnitude_le: &[u8]) -> Term {
    assert!(magnitude_le.len() < 256);
    let mut raw = vec![131, 110, magnitude_le.len() as u8, negative as u8];
    raw.extend_from_slice(magnitude_le);
    Term::decode(Cursor::new(raw)).expect("big integer")
}

/// 2^k (k < 2040), optionally negated.
pub fn pow2(k: usize, negative: bool) -> Term {
    let mut mag = vec![0u8; k / 8 + 1];
    mag[k / 8] = 1 << (k % 8);
    big_le(negative, &mag)
}

pub fn float(f: f64) -> Term {
    Term::from(Float::try_from(f).expect("finite float"))
}

pub fn tup(v: Vec<Term>) -> Term {
    Term::from(Tuple::from(v))
}

pub fn list(v: Vec<Term>) -> Term {
    Term::from(List::from(v))
}

pub fn map(v: Vec<(Term, Term)>) -> Term {
    Term::from(Map::from(v.into_iter().collect::<HashMap<Term, Term>>()))
}

pub fn pid(id: u32, serial: u32, creation: u32) -> Term {
    Term::from(Pid::new("nonode@nohost", id, serial, creation))
}

/// The wildcard used by [`matches`].
pub fn any() -> Term {
    atom("_")
}

/// `term_to_binary/1`, as the VM does it.
///
/// Not `Term::encode`: eetf's encoder writes any list of fixnums below 256,
/// negative ones included, as a byte string (`[-1]` becomes `[255]`).
pub fn encode(t: &Term) -> Vec<u8> {
    let mut v = vec![131];
    encode_into(t, &mut v);
    v
}

fn encode_into(t: &Term, out: &mut Vec<u8>) {
    match t {
        Term::List(l) => {
            let bytes: Option<Vec<u8>> = l
                .elements
                .iter()
                .map(|e| match e {
                    Term::FixInteger(i) => u8::try_from(i.value).ok(),
                    _ => None,
                })
                .collect();
            match bytes {
                _ if l.elements.is_empty() => out.push(106),
                Some(b) if b.len() <= 65535 => {
                    out.push(107);
                    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
                    out.extend_from_slice(&b);
                }
                _ => {
                    out.push(108);
                    out.extend_from_slice(&(l.elements.len() as u32).to_be_bytes());
                    for e in &l.elements {
                        encode_into(e, out);
                    }
                    out.push(106);
                }
            }
        }
        Term::ImproperList(l) => {
            out.push(108);
            out.extend_from_slice(&(l.elements.len() as u32).to_be_bytes());
            for e in &l.elements {
                encode_into(e, out);
            }
            encode_into(&l.last, out);
        }
        Term::Tuple(x) => {
            if x.elements.len() < 256 {
                out.push(104);
                out.push(x.elements.len() as u8);
            } else {
                out.push(105);
                out.extend_from_slice(&(x.elements.len() as u32).to_be_bytes());
            }
            for e in &x.elements {
                encode_into(e, out);
            }
        }
        Term::Map(m) => {
            out.push(116);
            out.extend_from_slice(&(m.map.len() as u32).to_be_bytes());
            for (k, v) in &m.map {
                encode_into(k, out);
                encode_into(v, out);
            }
        }
        _ => {
            let mut v = Vec::new();
            t.encode(&mut v).expect("encode term");
            out.extend_from_slice(&v[1..]);
        }
    }
}

pub fn as_atom(t: &Term) -> Option<&str> {
    match t {
        Term::Atom(a) => Some(a.name.as_str()),
        _ => None,
    }
}

pub fn is_atom(t: &Term, name: &str) -> bool {
    as_atom(t) == Some(name)
}

pub fn as_bin(t: &Term) -> Option<&[u8]> {
    match t {
        Term::Binary(b) => Some(&b.bytes),
        _ => None,
    }
}

/// A binary as (lossy) text.
pub fn as_text(t: &Term) -> Option<String> {
    as_bin(t).map(|b| String::from_utf8_lossy(b).into_owned())
}

pub fn as_int(t: &Term) -> Option<i128> {
    match t {
        Term::FixInteger(i) => Some(i.value as i128),
        Term::BigInteger(b) => b.value.to_string().parse().ok(),
        _ => None,
    }
}

/// Decimal text of an integer term of any size.
pub fn int_text(t: &Term) -> Option<String> {
    match t {
        Term::FixInteger(i) => Some(i.value.to_string()),
        Term::BigInteger(b) => Some(b.value.to_string()),
        _ => None,
    }
}

pub fn elems(t: &Term) -> Option<&[Term]> {
    match t {
        Term::Tuple(x) => Some(&x.elements),
        _ => None,
    }
}

/// Elements of a proper list (a byte list counts).
pub fn list_elems(t: &Term) -> Option<Vec<Term>> {
    match t {
        Term::List(l) => Some(l.elements.clone()),
        Term::ByteList(b) => Some(b.bytes.iter().map(|&x| int(x as i64)).collect()),
        _ => None,
    }
}

pub fn map_get<'a>(t: &'a Term, key: &Term) -> Option<&'a Term> {
    match t {
        Term::Map(m) => m.map.get(key),
        _ => None,
    }
}

pub fn map_get_atom<'a>(t: &'a Term, key: &str) -> Option<&'a Term> {
    map_get(t, &atom(key))
}

/// Puts a term in one canonical shape: byte lists become lists of integers,
/// big integers that fit an i32 become fixed integers, recursively.
pub fn norm(t: &Term) -> Term {
    match t {
        Term::ByteList(_) => list(list_elems(t).unwrap()),
        Term::BigInteger(b) => match b.value.to_string().parse::<i32>() {
            Ok(v) => Term::from(FixInteger::from(v)),
            Err(_) => t.clone(),
        },
        Term::List(l) => list(l.elements.iter().map(norm).collect()),
        Term::Tuple(x) => tup(x.elements.iter().map(norm).collect()),
        Term::Map(m) => map(m.map.iter().map(|(k, v)| (norm(k), norm(v))).collect()),
        Term::ImproperList(l) => Term::from(eetf::ImproperList::from((
            l.elements.iter().map(norm).collect::<Vec<_>>(),
            norm(&l.last),
        ))),
        _ => t.clone(),
    }
}

pub fn term_eq(a: &Term, b: &Term) -> bool {
    norm(a) == norm(b)
}

/// Structural match; the atom `_` in the pattern matches anything, and a map
/// pattern matches a map that has (at least) its keys with matching values.
pub fn matches(t: &Term, pat: &Term) -> bool {
    fn go(t: &Term, p: &Term) -> bool {
        if is_atom(p, "_") {
            return true;
        }
        match (t, p) {
            (Term::Tuple(a), Term::Tuple(b)) => {
                a.elements.len() == b.elements.len() && a.elements.iter().zip(&b.elements).all(|(x, y)| go(x, y))
            }
            (Term::List(a), Term::List(b)) => {
                a.elements.len() == b.elements.len() && a.elements.iter().zip(&b.elements).all(|(x, y)| go(x, y))
            }
            (Term::Map(a), Term::Map(b)) => b
                .map
                .iter()
                .all(|(k, v)| a.map.get(k).map(|x| go(x, v)).unwrap_or(false)),
            _ => t == p,
        }
    }
    go(&norm(t), &norm(pat))
}

/// A short printable form of a term (binaries as text when they are text).
pub fn show(t: &Term) -> String {
    match t {
        Term::Binary(b) => match std::str::from_utf8(&b.bytes) {
            Ok(s) if s.len() <= 2000 => format!("<<{:?}>>", s),
            Ok(s) => format!(
                "<<{:?}...>>",
                &s[..s.char_indices().nth(2000).map(|x| x.0).unwrap_or(s.len())]
            ),
            Err(_) => format!("{}", t),
        },
        Term::Tuple(x) => format!("{{{}}}", x.elements.iter().map(show).collect::<Vec<_>>().join(", ")),
        Term::List(x) => format!("[{}]", x.elements.iter().map(show).collect::<Vec<_>>().join(", ")),
        Term::Map(m) => format!(
            "#{{{}}}",
            m.map
                .iter()
                .map(|(k, v)| format!("{} => {}", show(k), show(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => format!("{}", t),
    }
}

// ---------------------------------------------------------------------------
// The port process
// ---------------------------------------------------------------------------

enum Ev {
    Frame(Term),
    Bad(String),
    Eof,
}

/// How to start the port.
#[derive(Clone, Debug)]
pub struct Opts {
    /// The pid passed as `--vm-pid` (default: this test process).
    pub vm_pid: Option<u32>,
    /// Connect to the auxiliary socket right after `hello` (default: yes).
    pub connect_aux: bool,
    /// Start the binary with an empty environment.
    pub env_clear: bool,
    /// Replace the whole argument list (default:
    /// `serve --vm-pid <pid> --python-dir <repo>/python`).
    pub args: Option<Vec<OsString>>,
    /// Start the port with this many descriptors at most (`RLIMIT_NOFILE`,
    /// soft and hard), as `prlimit --nofile=N:N` would.
    pub nofile: Option<u64>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            vm_pid: None,
            connect_aux: true,
            env_clear: false,
            args: None,
            nofile: None,
        }
    }
}

/// Python helpers installed (with `exec`) by [`Port::start_std`] after setup:
/// `report(*args)` sends the tuple `args` to the test's fake VM pid with
/// `erlang.send`.
pub const PRELUDE: &str = r#"
import erlang as _t_erlang
_t_vm_pid = None
def _t_set_pid(p):
    global _t_vm_pid
    _t_vm_pid = p
    return p
def report(*args):
    _t_erlang.send(_t_vm_pid, args)
"#;

/// Setup code, appended by [`Port::start_queued`], that gives each handoff
/// the protocol `make_protocol(name)` (defined by the test's own code), with
/// the names queued beforehand by `__main__.use(name)`, one per handoff.
pub const QUEUED_PROTOCOLS: &str = r#"
import erlang.reactor as _t_reactor
_t_queued = []
def use(name):
    _t_queued.append(name)
def _t_next_protocol():
    return make_protocol(_t_queued.pop(0))
_t_reactor.set_protocol_factory(_t_next_protocol)
"#;

/// The fake pid that plays the VM-side process receiving `erlang.send`.
pub fn vm_pid_term() -> Term {
    pid(4242, 7, 3)
}

static CONN_IDS: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id (unique within this test binary).
pub fn conn_id() -> u64 {
    CONN_IDS.fetch_add(1, Ordering::Relaxed)
}

pub struct Port {
    pub child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<Ev>,
    stderr: Arc<Mutex<Vec<u8>>>,
    pub hello: Term,
    pub socket_path: PathBuf,
    pub max_frame: u64,
    pub aux: Option<UnixStream>,
    pending: VecDeque<Term>,
    /// `{log, Level, Text}` notices, in order, as (level, text).
    pub logs: Vec<(String, String)>,
    /// `{send, Pid, Term}` notices not yet consumed, as (pid, term).
    sends: VecDeque<(Term, Term)>,
    /// Every notice received, in order.
    pub history: Vec<Term>,
    next_ref: i64,
    pub eof: bool,
    exited: Option<ExitStatus>,
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut off = 0;
    while off < buf.len() {
        match r.read(&mut buf[off..]) {
            Ok(0) => {
                return if off == 0 {
                    Ok(false)
                } else {
                    Err(ErrorKind::UnexpectedEof.into())
                }
            }
            Ok(n) => off += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

impl Port {
    /// Starts the port with default options: hello read, aux connected.
    pub fn start() -> Port {
        Port::start_with(Opts::default())
    }

    pub fn start_with(opts: Opts) -> Port {
        let vm_pid = opts.vm_pid.unwrap_or_else(std::process::id);
        let args: Vec<OsString> = opts.args.clone().unwrap_or_else(|| {
            vec![
                "serve".into(),
                "--vm-pid".into(),
                vm_pid.to_string().into(),
                "--python-dir".into(),
                python_dir().into_os_string(),
            ]
        });
        let mut cmd = Command::new(port_exe());
        cmd.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if opts.env_clear {
            cmd.env_clear();
        }
        if let Some(n) = opts.nofile {
            use std::os::unix::process::CommandExt;
            let limit = nix::libc::rlimit { rlim_cur: n as nix::libc::rlim_t, rlim_max: n as nix::libc::rlim_t };
            // SAFETY: setrlimit is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(move || {
                    if nix::libc::setrlimit(nix::libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn py_reactor_port");
        let stdin = child.stdin.take().unwrap();
        // Our end of the stdin pipe is non-blocking so that a port that stops
        // reading makes a test fail instead of hanging it.
        set_nonblocking(stdin.as_fd());
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sbuf = stderr.clone();
        let echo = std::env::var_os("PORT_TEST_STDERR").is_some();
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match stderr_pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if echo {
                            let _ = io::stderr().write_all(&chunk[..n]);
                        }
                        sbuf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                }
            }
        });

        let (tx, rx) = mpsc::channel();
        thread::spawn(move || loop {
            let mut len = [0u8; 4];
            match read_full(&mut stdout, &mut len) {
                Ok(true) => {}
                Ok(false) => {
                    let _ = tx.send(Ev::Eof);
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Ev::Bad(format!("stdout ended inside a frame header: {e}")));
                    let _ = tx.send(Ev::Eof);
                    return;
                }
            }
            let n = u32::from_be_bytes(len) as usize;
            if n > 64 * 1024 * 1024 {
                let _ = tx.send(Ev::Bad(format!(
                    "frame header announces {n} bytes (bytes {len:?}): the frame stream is corrupt"
                )));
                let _ = tx.send(Ev::Eof);
                return;
            }
            let mut buf = vec![0u8; n];
            if let Err(e) = read_full(&mut stdout, &mut buf).and_then(|full| {
                if full || n == 0 {
                    Ok(())
                } else {
                    Err(ErrorKind::UnexpectedEof.into())
                }
            }) {
                let _ = tx.send(Ev::Bad(format!("stdout ended inside a {n}-byte frame: {e}")));
                let _ = tx.send(Ev::Eof);
                return;
            }
            let mut cur = Cursor::new(&buf[..]);
            match Term::decode(&mut cur) {
                Ok(t) if cur.position() as usize == n => {
                    if tx.send(Ev::Frame(t)).is_err() {
                        return;
                    }
                }
                Ok(t) => {
                    let _ = tx.send(Ev::Bad(format!(
                        "frame of {n} bytes holds a term of {} bytes ({}) and trailing bytes {:?}",
                        cur.position(),
                        show(&t),
                        String::from_utf8_lossy(&buf[cur.position() as usize..])
                    )));
                }
                Err(e) => {
                    let _ = tx.send(Ev::Bad(format!(
                        "undecodable frame ({e}): {:?}",
                        String::from_utf8_lossy(&buf[..n.min(200)])
                    )));
                }
            }
        });

        let mut port = Port {
            child,
            stdin: Some(stdin),
            rx,
            stderr,
            hello: atom("none"),
            socket_path: PathBuf::new(),
            max_frame: 0,
            aux: None,
            pending: VecDeque::new(),
            logs: Vec::new(),
            sends: VecDeque::new(),
            history: Vec::new(),
            next_ref: 1000,
            eof: false,
            exited: None,
        };
        let hello = port.wait_for("hello", T, |t| {
            elems(t)
                .map(|e| e.len() == 2 && is_atom(&e[0], "hello"))
                .unwrap_or(false)
        });
        let info = elems(&hello).unwrap()[1].clone();
        port.socket_path = PathBuf::from(
            as_text(map_get_atom(&info, "socket_path").expect("hello has socket_path"))
                .expect("socket_path is a binary"),
        );
        port.max_frame = as_int(map_get_atom(&info, "max_frame").expect("hello has max_frame"))
            .expect("max_frame is an integer") as u64;
        port.hello = info;
        if opts.connect_aux {
            port.aux = Some(connect_aux(&port.socket_path).expect("connect to the auxiliary socket"));
        }
        port
    }

    /// Starts the port and runs `setup` with `setup_code` = `code` (plus any
    /// extra options), asserts `ok`, installs [`PRELUDE`] and the fake VM pid.
    pub fn start_std(code: &str) -> Port {
        let mut p = Port::start();
        p.setup_std(code, vec![]);
        p
    }

    /// [`Port::start_std`] with [`QUEUED_PROTOCOLS`] after `code`.
    pub fn start_queued(code: &str) -> Port {
        Port::start_std(&format!("{code}\n{QUEUED_PROTOCOLS}"))
    }

    pub fn setup_std(&mut self, code: &str, extra: Vec<(&str, Term)>) {
        let mut opts = vec![("setup_code", bin(code))];
        opts.extend(extra);
        let r = self.setup(opts);
        assert!(
            is_atom(&r, "ok"),
            "setup failed: {}\nstderr:\n{}",
            show(&r),
            self.stderr_text()
        );
        self.install_prelude();
    }

    pub fn install_prelude(&mut self) {
        let r = self.exec(PRELUDE);
        assert!(is_atom(&r, "ok"), "exec of the test prelude failed: {}", show(&r));
        let r = self.call("__main__", "_t_set_pid", vec![vm_pid_term()]);
        assert!(
            matches(&r, &tup(vec![atom("ok"), any()])),
            "call __main__._t_set_pid failed: {}",
            show(&r)
        );
    }

    pub fn os_pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    // --- raw output ------------------------------------------------------

    /// Writes raw bytes to the port's stdin (nothing added).
    pub fn write_raw(&mut self, data: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin already closed");
        let deadline = Instant::now() + T;
        let mut off = 0;
        while off < data.len() {
            match stdin.write(&data[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    assert!(
                        !left.is_zero(),
                        "the port stopped reading its stdin ({off}/{} bytes written)",
                        data.len()
                    );
                    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLOUT)];
                    let ms = left.as_millis().min(1000) as u16;
                    let _ = poll(&mut fds, PollTimeout::from(ms));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("writing to the port's stdin: {e}\nstderr:\n{}", self.stderr_text()),
            }
        }
    }

    /// Sends one `{packet,4}` frame holding `payload`.
    pub fn send_frame(&mut self, payload: &[u8]) {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        self.write_raw(&v);
    }

    pub fn send_term(&mut self, t: &Term) {
        let b = encode(t);
        self.send_frame(&b);
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    // --- receiving ----------------------------------------------------------

    fn take_event(&mut self, ev: Ev) {
        match ev {
            Ev::Eof => self.eof = true,
            Ev::Bad(msg) => panic!(
                "the port's frame stream is broken: {msg}\nstderr:\n{}",
                self.stderr_text()
            ),
            Ev::Frame(t) => {
                self.history.push(t.clone());
                if let Some(e) = elems(&t) {
                    if e.len() == 3 && is_atom(&e[0], "log") {
                        let level = as_atom(&e[1]).map(str::to_owned).unwrap_or_else(|| show(&e[1]));
                        let text = as_text(&e[2]).unwrap_or_else(|| show(&e[2]));
                        if std::env::var_os("PORT_TEST_LOGS").is_some() {
                            eprintln!("[port log {level}] {text}");
                        }
                        self.logs.push((level, text));
                        return;
                    }
                    if e.len() == 3 && is_atom(&e[0], "send") {
                        self.sends.push_back((e[1].clone(), e[2].clone()));
                        return;
                    }
                }
                self.pending.push_back(t);
            }
        }
    }

    /// Waits for one more event; false on timeout or end of stream.
    fn pump(&mut self, deadline: Instant) -> bool {
        if self.eof {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(ev) => {
                self.take_event(ev);
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.eof = true;
                false
            }
        }
    }

    /// Reads events until the port's frame stream ends or `timeout` passes;
    /// whether it ended. The reader thread may see the end only after the
    /// process has been reaped, so a test that needs it waits for it.
    pub fn wait_eof(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.eof && self.pump(deadline) {}
        self.eof
    }

    /// Reads whatever has already arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.take_event(ev);
        }
    }

    fn context(&self) -> String {
        format!(
            "\npending notices: [{}]\nlogs: {:?}\nunconsumed sends: [{}]\nstream ended: {}\nstderr:\n{}",
            self.pending.iter().map(show).collect::<Vec<_>>().join(", "),
            self.logs,
            self.sends
                .iter()
                .map(|(p, t)| format!("{} ! {}", show(p), show(t)))
                .collect::<Vec<_>>()
                .join(", "),
            self.eof,
            self.stderr_text()
        )
    }

    /// Waits for (and removes) the first pending notice satisfying `pred`.
    pub fn try_wait_for(&mut self, timeout: Duration, pred: impl Fn(&Term) -> bool) -> Option<Term> {
        let deadline = Instant::now() + timeout;
        let mut scanned = 0;
        loop {
            while scanned < self.pending.len() {
                if pred(&self.pending[scanned]) {
                    return self.pending.remove(scanned);
                }
                scanned += 1;
            }
            if !self.pump(deadline) {
                // one last look at what is already there
                self.drain();
                while scanned < self.pending.len() {
                    if pred(&self.pending[scanned]) {
                        return self.pending.remove(scanned);
                    }
                    scanned += 1;
                }
                return None;
            }
        }
    }

    pub fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&Term) -> bool) -> Term {
        match self.try_wait_for(timeout, pred) {
            Some(t) => t,
            None => panic!("timed out after {timeout:?} waiting for {what}{}", self.context()),
        }
    }

    /// Waits for a pending notice matching `pat` (see [`matches`]).
    pub fn wait_match(&mut self, pat: &Term) -> Term {
        let p = pat.clone();
        self.wait_for(&show(pat), T, move |t| matches(t, &p))
    }

    /// Asserts that no notice satisfying `pred` arrives within `dur`.
    pub fn expect_no(&mut self, what: &str, dur: Duration, pred: impl Fn(&Term) -> bool) {
        if let Some(t) = self.try_wait_for(dur, pred) {
            panic!("unexpected {what}: {}{}", show(&t), self.context());
        }
    }

    /// Waits for (and removes) the first `erlang.send` payload satisfying
    /// `pred`; asserts it was addressed to the fake VM pid.
    pub fn try_wait_send(&mut self, timeout: Duration, pred: impl Fn(&Term) -> bool) -> Option<Term> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.sends.iter().position(|(_, t)| pred(t)) {
                let (p, t) = self.sends.remove(i).unwrap();
                assert!(
                    term_eq(&p, &vm_pid_term()),
                    "send addressed to {} instead of {}",
                    show(&p),
                    show(&vm_pid_term())
                );
                return Some(t);
            }
            if !self.pump(deadline) {
                self.drain();
                if let Some(i) = self.sends.iter().position(|(_, t)| pred(t)) {
                    return Some(self.sends.remove(i).unwrap().1);
                }
                return None;
            }
        }
    }

    pub fn wait_send(&mut self, what: &str, pred: impl Fn(&Term) -> bool) -> Term {
        match self.try_wait_send(T, pred) {
            Some(t) => t,
            None => panic!("timed out waiting for an erlang.send of {what}{}", self.context()),
        }
    }

    /// Waits for an `erlang.send` whose payload is a tuple starting with the
    /// string `tag` (Python `report("tag", ...)`); returns the other elements.
    pub fn wait_report(&mut self, tag: &str) -> Vec<Term> {
        let t = self.wait_send(&format!("report({tag:?}, ...)"), |t| {
            report_tag(t) == Some(tag.to_owned())
        });
        elems(&t).unwrap()[1..].to_vec()
    }

    pub fn try_wait_report(&mut self, tag: &str, timeout: Duration) -> Option<Vec<Term>> {
        self.try_wait_send(timeout, |t| report_tag(t) == Some(tag.to_owned()))
            .map(|t| elems(&t).unwrap()[1..].to_vec())
    }

    /// All unconsumed reports with this tag that have arrived so far.
    pub fn take_reports(&mut self, tag: &str) -> Vec<Vec<Term>> {
        self.drain();
        let mut out = Vec::new();
        let mut rest = VecDeque::new();
        while let Some((p, t)) = self.sends.pop_front() {
            if report_tag(&t) == Some(tag.to_owned()) {
                out.push(elems(&t).unwrap()[1..].to_vec());
            } else {
                rest.push_back((p, t));
            }
        }
        self.sends = rest;
        out
    }

    /// Waits until a log line satisfying `pred` has arrived (logs are kept).
    pub fn wait_log(&mut self, what: &str, pred: impl Fn(&str, &str) -> bool) -> (String, String) {
        let deadline = Instant::now() + T;
        let mut seen = 0;
        loop {
            while seen < self.logs.len() {
                let (l, t) = &self.logs[seen];
                if pred(l, t) {
                    return (l.clone(), t.clone());
                }
                seen += 1;
            }
            if !self.pump(deadline) {
                self.drain();
                if let Some((l, t)) = self.logs.iter().find(|(l, t)| pred(l, t)) {
                    return (l.clone(), t.clone());
                }
                panic!("timed out waiting for log line {what}{}", self.context());
            }
        }
    }

    // --- requests -------------------------------------------------------------

    pub fn new_ref(&mut self) -> Term {
        self.next_ref += 1;
        int(self.next_ref)
    }

    /// Sends the request built from a fresh `Ref` and returns the reply's
    /// `Result`.
    pub fn request(&mut self, build: impl FnOnce(Term) -> Term) -> Term {
        let r = self.new_ref();
        let req = build(r.clone());
        self.send_term(&req);
        self.reply_for(&r, &req)
    }

    fn reply_for(&mut self, r: &Term, req: &Term) -> Term {
        let rr = r.clone();
        let what = format!("the reply to {}", show(req));
        let t = self.wait_for(&what, T, move |t| {
            elems(t)
                .map(|e| e.len() == 3 && is_atom(&e[0], "reply") && e[1] == rr)
                .unwrap_or(false)
        });
        elems(&t).unwrap()[2].clone()
    }

    pub fn setup(&mut self, opts: Vec<(&str, Term)>) -> Term {
        let m = map(opts.into_iter().map(|(k, v)| (atom(k), v)).collect());
        self.request(|r| tup(vec![atom("setup"), r, m]))
    }

    pub fn exec(&mut self, code: &str) -> Term {
        self.request(|r| tup(vec![atom("exec"), r, bin(code)]))
    }

    pub fn exec_ok(&mut self, code: &str) {
        let r = self.exec(code);
        assert!(
            is_atom(&r, "ok"),
            "exec failed: {}\ncode:\n{code}{}",
            show(&r),
            self.context()
        );
    }

    pub fn eval(&mut self, expr: &str) -> Term {
        self.request(|r| tup(vec![atom("eval"), r, bin(expr)]))
    }

    /// `eval` that must succeed; returns the value.
    pub fn eval_ok(&mut self, expr: &str) -> Term {
        let r = self.eval(expr);
        match elems(&r) {
            Some([ok, v]) if is_atom(ok, "ok") => v.clone(),
            _ => panic!("eval {expr:?} failed: {}{}", show(&r), self.context()),
        }
    }

    pub fn call(&mut self, module: &str, function: &str, args: Vec<Term>) -> Term {
        self.request(|r| tup(vec![atom("call"), r, bin(module), bin(function), list(args)]))
    }

    pub fn call_ok(&mut self, module: &str, function: &str, args: Vec<Term>) -> Term {
        let r = self.call(module, function, args);
        match elems(&r) {
            Some([ok, v]) if is_atom(ok, "ok") => v.clone(),
            _ => panic!("call {module}.{function} failed: {}{}", show(&r), self.context()),
        }
    }

    /// `{stats, Ref}` → the stats map as name → value.
    pub fn stats(&mut self) -> HashMap<String, i128> {
        let r = self.request(|r| tup(vec![atom("stats"), r]));
        let m = match elems(&r) {
            Some([ok, m]) if is_atom(ok, "ok") => m.clone(),
            _ => panic!("stats failed: {}{}", show(&r), self.context()),
        };
        let mut out = HashMap::new();
        if let Term::Map(mm) = &m {
            for (k, v) in &mm.map {
                if let (Some(k), Some(v)) = (as_atom(k), as_int(v)) {
                    out.insert(k.to_owned(), v);
                }
            }
        } else {
            panic!("stats result is not a map: {}", show(&m));
        }
        out
    }

    pub fn stat(&mut self, name: &str) -> i128 {
        let s = self.stats();
        *s.get(name).unwrap_or_else(|| panic!("stats has no {name}: {s:?}"))
    }

    /// `{stop, Ref}` → the reply.
    pub fn stop(&mut self) -> Term {
        self.request(|r| tup(vec![atom("stop"), r]))
    }

    // --- descriptors ---------------------------------------------------------

    pub fn aux_fd(&self) -> RawFd {
        self.aux.as_ref().expect("aux socket not connected").as_raw_fd()
    }

    /// One `sendmsg` on the auxiliary socket: the ids (8 bytes big-endian
    /// each) as data and `fds` in one `SCM_RIGHTS` message (none if empty).
    pub fn send_fds(&self, ids: &[u64], fds: &[RawFd]) {
        let mut data = Vec::new();
        for id in ids {
            data.extend_from_slice(&id.to_be_bytes());
        }
        send_fds_on(self.aux_fd(), &data, fds).expect("sendmsg on the auxiliary socket");
    }

    pub fn send_handoff_frame(&mut self, id: u64, info: Term) {
        self.send_term(&tup(vec![atom("handoff"), uint(id), info]));
    }

    /// The fd first, then the `handoff` frame (as the VM does).
    pub fn handoff(&mut self, id: u64, fd: RawFd, info: Term) {
        self.send_fds(&[id], &[fd]);
        self.send_handoff_frame(id, info);
    }

    /// Hands off the accepted side of a fresh loopback TCP connection and
    /// closes the test's own copy of it; returns the client side and the id.
    pub fn handoff_tcp(&mut self) -> (TcpStream, u64) {
        let (client, server) = tcp_pair();
        let id = conn_id();
        let info = tcp_info(&server);
        self.handoff(id, server.as_raw_fd(), info);
        drop(server);
        (client, id)
    }

    /// Waits for `{closed, Id, Reason}`; returns `Reason`.
    pub fn wait_closed(&mut self, id: u64) -> Term {
        let idt = uint(id);
        let t = self.wait_for(&format!("{{closed, {id}, _}}"), T, move |t| {
            elems(t)
                .map(|e| e.len() == 3 && is_atom(&e[0], "closed") && term_eq(&e[1], &idt))
                .unwrap_or(false)
        });
        elems(&t).unwrap()[2].clone()
    }

    pub fn wait_closed_within(&mut self, id: u64, timeout: Duration) -> Term {
        let idt = uint(id);
        let t = self.wait_for(&format!("{{closed, {id}, _}}"), timeout, move |t| {
            elems(t)
                .map(|e| e.len() == 3 && is_atom(&e[0], "closed") && term_eq(&e[1], &idt))
                .unwrap_or(false)
        });
        elems(&t).unwrap()[2].clone()
    }

    /// Waits for `{aux_error, Text}`; returns the text.
    pub fn wait_aux_error(&mut self, timeout: Duration) -> String {
        let t = self.wait_for("{aux_error, _}", timeout, |t| {
            elems(t)
                .map(|e| e.len() == 2 && is_atom(&e[0], "aux_error"))
                .unwrap_or(false)
        });
        as_text(&elems(&t).unwrap()[1]).unwrap_or_else(|| show(&t))
    }

    /// Waits for `{frame_error, Text}`; returns the text.
    pub fn wait_frame_error(&mut self) -> String {
        let t = self.wait_for("{frame_error, _}", T, |t| {
            elems(t)
                .map(|e| e.len() == 2 && is_atom(&e[0], "frame_error"))
                .unwrap_or(false)
        });
        let e = &elems(&t).unwrap()[1];
        as_text(e).unwrap_or_else(|| panic!("frame_error text is not a binary: {}", show(e)))
    }

    /// Number of descriptors the port process has open.
    pub fn fd_count(&self) -> usize {
        fd_count(self.os_pid())
    }

    /// Polls until the port has `n` descriptors open; returns the last count.
    pub fn wait_fd_count(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.fd_count();
            if c == n || Instant::now() >= deadline {
                return c;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    // --- process ---------------------------------------------------------------

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exited {
            return Some(s);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(s);
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.exited.is_none() && self.child.try_wait().expect("try_wait").is_none()
    }

    /// Asserts the port is alive and serving requests.
    pub fn assert_serving(&mut self) {
        assert!(
            self.is_running(),
            "the port exited: {:?}{}",
            self.child.try_wait(),
            self.context()
        );
        let r = self.request(|r| tup(vec![atom("stats"), r]));
        assert!(
            matches(&r, &tup(vec![atom("ok"), any()])) || matches(&r, &tup(vec![atom("error"), atom("not_set_up")])),
            "stats gave {}",
            show(&r)
        );
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- port stderr ---\n{}\n--- history ---", self.stderr_text());
            for t in self.history.iter().rev().take(60).rev() {
                eprintln!("  {}", show(t));
            }
        }
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A port killed before a VM connected had no chance to remove its
        // socket and private directory; leave nothing behind in /tmp.
        if let Some(dir) = self.socket_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::remove_file(&self.socket_path);
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The tag of a `report("tag", ...)` payload.
pub fn report_tag(t: &Term) -> Option<String> {
    elems(t).and_then(|e| e.first()).and_then(as_text)
}

// ---------------------------------------------------------------------------
// Sockets and descriptors
// ---------------------------------------------------------------------------

pub fn set_nonblocking(fd: BorrowedFd<'_>) {
    let fl = fcntl(fd, FcntlArg::F_GETFL).expect("F_GETFL");
    let fl = OFlag::from_bits_retain(fl) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(fl)).expect("F_SETFL");
}

pub fn is_nonblocking(fd: BorrowedFd<'_>) -> bool {
    let fl = fcntl(fd, FcntlArg::F_GETFL).expect("F_GETFL");
    OFlag::from_bits_retain(fl).contains(OFlag::O_NONBLOCK)
}

/// Connects to the auxiliary socket.
pub fn connect_aux(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path)
}

/// One `sendmsg` with `data` and (if any) one `SCM_RIGHTS` message.
pub fn send_fds_on(sock: RawFd, data: &[u8], fds: &[RawFd]) -> nix::Result<usize> {
    let iov = [io::IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<UnixAddr>(sock, &iov, cmsgs, MsgFlags::empty(), None)
}

pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// A connected loopback TCP pair: (client, accepted server side).
pub fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(l.local_addr().unwrap()).expect("connect");
    let (server, _) = l.accept().expect("accept");
    client.set_read_timeout(Some(T)).unwrap();
    client.set_nodelay(true).unwrap();
    (client, server)
}

/// A connected Unix stream pair: (test side with a read timeout, side to hand off).
pub fn unix_pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_read_timeout(Some(T)).unwrap();
    (a, b)
}

pub fn unix_info() -> Term {
    map(vec![(atom("type"), atom("unix"))])
}

/// `#{addr => <<"127.0.0.1">>, port => P, type => tcp}` for an accepted socket.
pub fn tcp_info(server: &TcpStream) -> Term {
    let peer = server.peer_addr().unwrap();
    map(vec![
        (atom("addr"), bin(peer.ip().to_string())),
        (atom("port"), int(peer.port() as i64)),
        (atom("type"), atom("tcp")),
    ])
}

/// Reads exactly `n` bytes (panics on timeout or early EOF).
pub fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    let mut off = 0;
    while off < n {
        match s.read(&mut buf[off..]) {
            Ok(0) => panic!(
                "EOF after {off} of {n} bytes: {:?}",
                String::from_utf8_lossy(&buf[..off])
            ),
            Ok(k) => off += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "read failed after {off} of {n} bytes: {e}: {:?}",
                String::from_utf8_lossy(&buf[..off])
            ),
        }
    }
    buf
}

/// Reads until EOF (panics on timeout).
pub fn read_to_eof(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return out,
            Ok(k) => out.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!(
                "no EOF ({e}) after {} bytes: {:?}",
                out.len(),
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// What a read on a socket the peer should have closed returns within
/// `timeout`: Ok(bytes read before EOF/reset) or Err(description) when the
/// socket is still open.
pub fn sees_close(fd: BorrowedFd<'_>, timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("still open after {timeout:?} (read {} bytes)", got.len()));
        }
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        let ms = left.as_millis().min(10_000) as u16;
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::ECONNRESET) => return Ok(got),
            Err(nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A fresh private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "py_reactor_port_test_{}_{}_{}",
            tag,
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The path as a Python string literal.
    pub fn py(&self, name: &str) -> String {
        format!("{:?}", self.join(name).to_string_lossy())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// Python protocols shared by several tests
// ---------------------------------------------------------------------------

/// The specification's EchoProtocol, verbatim.
pub const ECHO: &str = r#"
import erlang.reactor as reactor

class EchoProtocol(reactor.Protocol):
    """Simple echo protocol - sends back whatever it receives."""

    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        print(f"Connection from {client_info.get('addr')}:{client_info.get('port')}")

    def data_received(self, data):
        """Echo received data back to client."""
        if not data:
            return "close"

        # Buffer the data for writing
        self.write_buffer.extend(data)
        return "write_pending"

    def write_ready(self):
        """Write buffered data."""
        if not self.write_buffer:
            return "read_pending"

        written = self.write(bytes(self.write_buffer))
        del self.write_buffer[:written]

        if self.write_buffer:
            return "continue"  # More data to write
        return "read_pending"  # Done, wait for more input

    def connection_lost(self):
        print(f"Connection closed: fd={self.fd}")

# Register the factory
reactor.set_protocol_factory(EchoProtocol)
"#;

/// The specification's SimpleHTTPProtocol, verbatim.
pub const HTTP: &str = r#"
import erlang.reactor as reactor

class SimpleHTTPProtocol(reactor.Protocol):
    """Minimal HTTP/1.0 protocol."""

    def __init__(self):
        super().__init__()
        self.request_buffer = bytearray()

    def data_received(self, data):
        self.request_buffer.extend(data)

        # Check for end of headers
        if b'\r\n\r\n' in self.request_buffer:
            self.handle_request()
            return "write_pending"
        return "continue"

    def handle_request(self):
        """Parse request and prepare response."""
        request = self.request_buffer.decode('utf-8', errors='replace')
        first_line = request.split('\r\n')[0]
        method, path, _ = first_line.split(' ', 2)

        # Simple response
        body = f"Hello! You requested {path}"
        response = (
            f"HTTP/1.0 200 OK\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Content-Type: text/plain\r\n"
            f"\r\n"
            f"{body}"
        )
        self.write_buffer.extend(response.encode())

    def write_ready(self):
        if not self.write_buffer:
            return "close"  # HTTP/1.0: close after response

        written = self.write(bytes(self.write_buffer))
        del self.write_buffer[:written]

        if self.write_buffer:
            return "continue"
        return "close"

reactor.set_protocol_factory(SimpleHTTPProtocol)
"#;

/// Writes `msg` on `s` and asserts the same bytes come back.
pub fn echo_roundtrip(s: &mut (impl Read + Write), msg: &[u8]) {
    s.write_all(msg).expect("write to the echo connection");
    let got = read_n(s, msg.len());
    assert_eq!(got, msg, "echo returned different bytes");
}

/// CPU time (user + system, all threads) of a process.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14 and stime 15 (man 5 proc).
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
    assert!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}
