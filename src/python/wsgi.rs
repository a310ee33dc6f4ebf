//! The WSGI layer (PEP 3333): `environ` from a parsed request, the
//! application called on a worker thread, `start_response` and `write()`,
//! the response iterable sent and closed whatever happens, `wsgi.input`
//! streaming the body, `wsgi.file_wrapper` sent with `sendfile(2)`.
//!
//! The HTTP engine (`crate::http`) hands each request over as an
//! [`Exchange`] and gets a [`Done`] back; everything Python-specific is here.
//! The worker holds the GIL while Python runs and releases it whenever it
//! waits for the socket.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};

use crate::http::body::{Body, BodyError};
use crate::http::engine::{App, Done, Exchange};
use crate::http::pool::{blocking, Hold};
use crate::http::response::{KnownLength, Response};
use crate::http::stream::{Direction, Stream};
use crate::message::LogLevel;
use crate::python::{log, log_python_error};

/// Bytes of an unread request body read and dropped after the response so
/// that the connection can serve another request; past it, it is closed.
const DISCARD_BUDGET: u64 = 1024 * 1024;

/// A WSGI application and what every request shares.
pub struct WsgiApp {
    app: Py<PyAny>,
    /// What every `environ` starts as ([`environ_template`]).
    template: Py<PyDict>,
    file_wrapper: Py<PyType>,
    body_error: Py<PyType>,
    access_log: bool,
}

impl WsgiApp {
    /// Wraps `app`, taking `erlang.wsgi`'s helpers.
    pub fn new(py: Python<'_>, app: Py<PyAny>, limits: &crate::http::Limits) -> PyResult<WsgiApp> {
        let module = py.import("erlang.wsgi")?;
        let file_wrapper = module.getattr("FileWrapper")?.cast_into::<PyType>()?;
        let errors = module.getattr("errors")?;
        Ok(WsgiApp {
            app,
            template: environ_template(py, &errors, file_wrapper.as_any(), limits.multiprocess)?.unbind(),
            file_wrapper: file_wrapper.unbind(),
            body_error: module.getattr("RequestBodyError")?.cast_into::<PyType>()?.unbind(),
            access_log: limits.access_log,
        })
    }
}

/// The GIL, which a worker thread keeps (with its Python thread state)
/// from one request to the next, and releases while it waits for one.
#[derive(Debug, Default)]
pub struct Gil;

impl Hold for Gil {
    fn hold(&self, body: &mut dyn FnMut()) {
        Python::attach(|_| body())
    }

    fn release(&self, wait: &mut (dyn FnMut() + Send)) {
        Python::attach(|py| py.detach(wait))
    }
}

impl App for WsgiApp {
    fn serve(&self, exchange: Exchange) -> Done {
        Python::attach(|py| self.serve_with(py, exchange))
    }
}

/// How a request ended, for the loop and the log.
struct Outcome {
    keep_alive: bool,
    python_error: bool,
}

impl WsgiApp {
    fn serve_with(&self, py: Python<'_>, exchange: Exchange) -> Done {
        let Exchange { fd, conn_id, head, raw, peer, limits } = exchange;
        let stream = Stream { fd };
        let timeout = limits.header_timeout;
        let body = Arc::new(Mutex::new(Body::new(stream, head.framing, raw, limits, head.expect_continue)));
        let responder = StartResponse {
            status: None,
            headers: Vec::new(),
            response: Response::new(head.minor, head.is_head(), head.keep_alive),
            stream,
            timeout,
            failed: None,
            finished: false,
        };
        let outcome = match Bound::new(py, responder) {
            Ok(responder) => {
                let outcome = self.run(py, &head, &peer, &body, &responder);
                let mut r = responder.borrow_mut();
                r.finished = true;
                if self.access_log {
                    let method = &head.method;
                    let target = String::from_utf8_lossy(&head.target);
                    let status = if r.response.started { r.response.status } else { 0 };
                    log(
                        LogLevel::Info,
                        format!(
                            "{} \"{method} {target} {}\" {status} {}",
                            peer.remote_addr,
                            head.protocol(),
                            r.response.body_bytes
                        ),
                    );
                }
                outcome
            }
            Err(e) => {
                log_python_error(py, e);
                Outcome { keep_alive: false, python_error: true }
            }
        };
        let mut body = lock(py, &body);
        let complete = outcome.keep_alive && {
            let mut wait = waiter(py, timeout);
            body.discard_rest(DISCARD_BUDGET, &mut wait)
        };
        let leftover = body.take_leftover();
        Done { fd, conn_id, leftover, keep_alive: outcome.keep_alive && complete, python_error: outcome.python_error }
    }

    fn run(
        &self,
        py: Python<'_>,
        head: &crate::http::request::Head,
        peer: &crate::http::engine::Peer,
        body: &Arc<Mutex<Body>>,
        responder: &Bound<'_, StartResponse>,
    ) -> Outcome {
        let input = Input { body: Arc::clone(body), timeout: responder.borrow().timeout, error: self.body_error.clone_ref(py) };
        let result = environ(py, head, peer, input, self).and_then(|env| self.app.call1(py, (env, responder.clone())));
        let result = match result {
            Ok(result) => result.into_bound(py),
            Err(e) => return self.failed(py, e, body, responder),
        };
        let sent = self.send(py, &result, responder);
        // close() is called whatever happened, as PEP 3333 requires. A list
        // or tuple (the usual result) has none; for the rest, a missing
        // attribute is looked up without raising (and formatting) an error.
        let closed = if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
            Ok(())
        } else {
            match result.getattr_opt(pyo3::intern!(py, "close")) {
                Ok(Some(close)) => close.call0().map(|_| ()),
                Ok(None) | Err(_) => Ok(()),
            }
        };
        match sent.and(closed) {
            Ok(()) => {
                let r = responder.borrow();
                let io_failed = r.failed.is_some();
                Outcome { keep_alive: r.response.keep_alive && !io_failed, python_error: false }
            }
            Err(e) => self.failed(py, e, body, responder),
        }
    }

    /// Sends the iterable `result`: the fast way for a file wrapper of a
    /// regular file, piece by piece otherwise.
    fn send(&self, py: Python<'_>, result: &Bound<'_, PyAny>, responder: &Bound<'_, StartResponse>) -> PyResult<()> {
        if result.is_instance(self.file_wrapper.bind(py))? {
            if let Some(done) = send_file(py, result, responder)? {
                return done;
            }
        }
        // A body of one piece has a known length: Content-Length rather than chunks.
        let mut known = KnownLength::Unknown;
        if let Ok(list) = result.cast::<PyList>() {
            if list.len() == 1 {
                if let Ok(item) = list.get_item(0)?.cast_into::<PyBytes>() {
                    known = KnownLength::Exactly(item.as_bytes().len() as u64);
                }
            }
        } else if let Ok(tuple) = result.cast::<PyTuple>() {
            if tuple.len() == 1 {
                if let Ok(item) = tuple.get_item(0)?.cast_into::<PyBytes>() {
                    known = KnownLength::Exactly(item.as_bytes().len() as u64);
                }
            }
        }
        for item in result.try_iter()? {
            let item = item?;
            let bytes = item.cast::<PyBytes>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "the response iterable yielded {}, not bytes",
                    item.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                ))
            })?;
            let data = bytes.as_bytes();
            if data.is_empty() {
                continue;
            }
            let mut r = responder.borrow_mut();
            if r.failed.is_some() {
                break;
            }
            r.begin(known)?;
            r.response.body(data);
            // Each block goes out before the next is asked for (PEP 3333:
            // no delaying); a body of one block goes out with its head.
            r.flush(py);
        }
        let mut r = responder.borrow_mut();
        if !r.response.started {
            // Nothing yielded: an empty body, of known length.
            r.begin(KnownLength::Exactly(0))?;
        }
        r.response.finish();
        r.flush(py);
        Ok(())
    }

    /// The application raised (or its iterable, or `close()`): a 500 when
    /// nothing was sent yet, else the connection is closed. A failure of
    /// `wsgi.input` caused by the client gets the client's status instead.
    fn failed(&self, py: Python<'_>, err: PyErr, body: &Arc<Mutex<Body>>, responder: &Bound<'_, StartResponse>) -> Outcome {
        let client_fault = match lock(py, body).failure() {
            Some(BodyError::Http(e)) => Some(Some(e)),
            Some(_) => Some(None),
            None => None,
        };
        let mut r = responder.borrow_mut();
        let python_error = client_fault.is_none();
        if python_error {
            log_python_error(py, err);
        }
        if r.response.started {
            // What the application produced before failing still goes out;
            // the close then tells the client the body is cut short.
            r.flush(py);
        } else if r.failed.is_none() {
            let error = match client_fault {
                Some(Some(e)) => e.response(),
                Some(None) => return Outcome { keep_alive: false, python_error },
                None => internal_error(),
            };
            r.response.out = error;
            r.response.started = true;
            r.response.status = if let Some(Some(e)) = client_fault { e.status() } else { 500 };
            r.flush(py);
        }
        Outcome { keep_alive: false, python_error }
    }
}

fn internal_error() -> Vec<u8> {
    let body = "500 Internal Server Error\n";
    format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{body}",
        body.len(),
        crate::http::response::date_header()
    )
    .into_bytes()
}

/// Sends a file wrapper's regular file with `sendfile(2)`; `None` when the
/// file-like object has no usable descriptor (it is then iterated).
fn send_file(py: Python<'_>, wrapper: &Bound<'_, PyAny>, responder: &Bound<'_, StartResponse>) -> PyResult<Option<PyResult<()>>> {
    let filelike = wrapper.getattr("filelike")?;
    let Ok(fileno) = filelike.call_method0("fileno").and_then(|n| n.extract::<RawFd>()) else {
        return Ok(None);
    };
    // SAFETY: the file object keeps the descriptor open for the call.
    let file = unsafe { std::os::fd::BorrowedFd::borrow_raw(fileno) };
    let Ok(stat) = nix::sys::stat::fstat(file) else { return Ok(None) };
    if stat.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
        return Ok(None);
    }
    let position: i64 = match filelike.call_method0("tell").and_then(|p| p.extract()) {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    let available = u64::try_from(stat.st_size - position).unwrap_or(0);
    let mut r = responder.borrow_mut();
    r.begin(KnownLength::Exactly(available))?;
    r.flush(py);
    let mut left = r.response.raw_body_room(available);
    let mut offset = position;
    let (stream, timeout) = (r.stream, r.timeout);
    while left > 0 && r.failed.is_none() {
        let chunk = usize::try_from(left).unwrap_or(usize::MAX).min(1 << 30);
        match stream.try_sendfile(file.as_raw_fd(), &mut offset, chunk) {
            Ok(0) if offset >= stat.st_size => {
                // The file shrank: the declared length cannot be met.
                r.response.keep_alive = false;
                break;
            }
            Ok(0) => {
                if let Err(e) = py.detach(|| blocking(|| stream.wait(Direction::Write, timeout))) {
                    r.failed = Some(e);
                }
            }
            Ok(n) => left -= n as u64,
            Err(e) => r.failed = Some(e),
        }
    }
    r.response.finish();
    r.flush(py);
    Ok(Some(Ok(())))
}

/// `start_response`, and the `write()` callable it returns.
#[pyclass(module = "erlang.wsgi", name = "StartResponse")]
pub struct StartResponse {
    status: Option<String>,
    headers: Vec<(String, String)>,
    response: Response,
    stream: Stream,
    timeout: Duration,
    /// Writing to the client failed: nothing more is sent.
    failed: Option<Errno>,
    /// The request is over: `write()` refuses.
    finished: bool,
}

impl StartResponse {
    /// Produces the head, once, from what `start_response` was given.
    fn begin(&mut self, known: KnownLength) -> PyResult<()> {
        if self.response.started {
            return Ok(());
        }
        let Some(status) = self.status.clone() else {
            return Err(PyRuntimeError::new_err("the application sent body bytes before calling start_response"));
        };
        self.response.start(&status, &self.headers, known);
        Ok(())
    }

    /// Writes out what is buffered, releasing the GIL while the socket is full.
    fn flush(&mut self, py: Python<'_>) {
        if self.failed.is_some() {
            self.response.out.clear();
            return;
        }
        let (stream, timeout) = (self.stream, self.timeout);
        let mut sent = 0;
        let out = &self.response.out;
        while sent < out.len() {
            match stream.try_write(&out[sent..]) {
                Ok(0) => {
                    if let Err(e) = py.detach(|| blocking(|| stream.wait(Direction::Write, timeout))) {
                        self.failed = Some(e);
                        break;
                    }
                }
                Ok(n) => sent += n,
                Err(e) => {
                    self.failed = Some(e);
                    break;
                }
            }
        }
        self.response.out.clear();
    }
}

#[pymethods]
impl StartResponse {
    /// `start_response(status, response_headers, exc_info=None)`; returns `write`.
    #[pyo3(signature = (status, response_headers, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        response_headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let this = slf.borrow();
            match exc_info {
                Some(info) if this.response.started => {
                    // Too late to change the response: re-raise, as PEP 3333 says.
                    let value = info.get_item(1)?;
                    let traceback = info.get_item(2)?;
                    let value = value.call_method1("with_traceback", (traceback,))?;
                    return Err(PyErr::from_value(value));
                }
                None if this.status.is_some() => {
                    return Err(PyRuntimeError::new_err("start_response called a second time without exc_info"));
                }
                _ => {}
            }
        }
        let status = status
            .cast::<PyString>()
            .map_err(|_| PyTypeError::new_err("status must be a str such as '200 OK'"))?
            .to_str()?
            .to_string();
        let code_ok = status.len() >= 4
            && status.as_bytes()[..3].iter().all(u8::is_ascii_digit)
            && status.as_bytes()[3] == b' ';
        if !code_ok || status.contains(['\r', '\n']) {
            return Err(PyTypeError::new_err(format!("bad status {status:?}: three digits, a space and a reason phrase")));
        }
        let mut headers = Vec::new();
        for item in response_headers.try_iter()? {
            let item = item?;
            let pair = item
                .cast::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| PyTypeError::new_err("each response header must be a (name, value) tuple of str"))?;
            let name: String = pair.get_item(0)?.extract()?;
            let value: String = pair.get_item(1)?.extract()?;
            if name.is_empty() || name.contains([':', '\r', '\n', ' ']) || value.contains(['\r', '\n']) {
                return Err(PyTypeError::new_err(format!("bad response header {name:?}: {value:?}")));
            }
            headers.push((name, value));
        }
        {
            let mut this = slf.borrow_mut();
            this.status = Some(status);
            this.headers = headers;
        }
        let _ = py;
        slf.getattr(pyo3::intern!(py, "write"))
    }

    /// The `write()` callable: sends `data` at once (the head first).
    fn write(&mut self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        if self.finished {
            return Err(PyRuntimeError::new_err("write() called after the response was completed"));
        }
        if let Some(e) = self.failed {
            return Err(pyo3::exceptions::PyOSError::new_err((e as i32, e.desc())));
        }
        self.begin(KnownLength::Unknown)?;
        self.response.body(data.as_bytes());
        self.flush(py);
        match self.failed {
            Some(e) => Err(pyo3::exceptions::PyOSError::new_err((e as i32, e.desc()))),
            None => Ok(()),
        }
    }
}

/// `wsgi.input`: the request body, read from the socket as asked.
#[pyclass(module = "erlang.wsgi", name = "Input")]
pub struct Input {
    body: Arc<Mutex<Body>>,
    timeout: Duration,
    error: Py<PyType>,
}

impl Input {
    fn with_body<T>(&self, py: Python<'_>, f: impl FnOnce(&mut Body, &mut dyn FnMut(&Stream, Direction) -> Result<(), Errno>) -> Result<T, BodyError>) -> PyResult<T> {
        let mut body = lock(py, &self.body);
        let mut wait = waiter(py, self.timeout);
        f(&mut body, &mut wait).map_err(|e| PyErr::from_type(self.error.bind(py).clone(), e.to_string()))
    }
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    /// `read(size=-1)`: `size` bytes, fewer only at the end; all for -1.
    #[pyo3(signature = (size=None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with_body(py, |b, w| b.read(size_arg(size), w))?;
        Ok(PyBytes::new(py, &data))
    }

    /// `readline(size=-1)`: one line, with its newline.
    #[pyo3(signature = (size=None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with_body(py, |b, w| b.readline(size_arg(size), w))?;
        Ok(PyBytes::new(py, &data))
    }

    /// `readlines(hint=-1)`: the remaining lines.
    #[pyo3(signature = (hint=None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint).filter(|h| *h > 0);
        let list = PyList::empty(py);
        let mut total = 0;
        loop {
            let line = self.with_body(py, |b, w| b.readline(None, w))?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            list.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(list)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.with_body(py, |b, w| b.readline(None, w))?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

/// Locks the body, waiting with the GIL released if another thread holds it.
fn lock<'a>(py: Python<'_>, body: &'a Mutex<Body>) -> MutexGuard<'a, Body> {
    loop {
        match body.try_lock() {
            Ok(guard) => return guard,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            // Only an application sharing `wsgi.input` between threads gets
            // here: the holder may be waiting for the GIL we hold.
            Err(std::sync::TryLockError::WouldBlock) => py.detach(|| blocking(|| std::thread::sleep(Duration::from_millis(1)))),
        }
    }
}

/// Waits on the socket with the GIL released.
fn waiter(py: Python<'_>, timeout: Duration) -> impl FnMut(&Stream, Direction) -> Result<(), Errno> + '_ {
    move |stream: &Stream, direction| {
        let stream = *stream;
        py.detach(|| blocking(|| stream.wait(direction, timeout)))
    }
}

/// The entries every `environ` starts with: those that never change, and
/// those every request sets (with `None` until it does), so that copying
/// it gives a table with room for all of them and a few headers.
fn environ_template<'py>(
    py: Python<'py>,
    errors: &Bound<'py, PyAny>,
    file_wrapper: &Bound<'py, PyAny>,
    multiprocess: bool,
) -> PyResult<Bound<'py, PyDict>> {
    use pyo3::intern;
    let env = PyDict::new(py);
    env.set_item(intern!(py, "SCRIPT_NAME"), intern!(py, ""))?;
    env.set_item(intern!(py, "wsgi.version"), (1, 0))?;
    env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "http"))?;
    env.set_item(intern!(py, "wsgi.errors"), errors)?;
    env.set_item(intern!(py, "wsgi.multithread"), true)?;
    env.set_item(intern!(py, "wsgi.multiprocess"), multiprocess)?;
    env.set_item(intern!(py, "wsgi.run_once"), false)?;
    env.set_item(intern!(py, "wsgi.file_wrapper"), file_wrapper)?;
    for key in [
        intern!(py, "REQUEST_METHOD"),
        intern!(py, "PATH_INFO"),
        intern!(py, "QUERY_STRING"),
        intern!(py, "SERVER_NAME"),
        intern!(py, "SERVER_PORT"),
        intern!(py, "SERVER_PROTOCOL"),
        intern!(py, "REMOTE_ADDR"),
        intern!(py, "wsgi.input"),
    ] {
        env.set_item(key, py.None())?;
    }
    Ok(env)
}

/// `bytes` as a `str`, each byte one character (latin-1, as PEP 3333 has
/// it for values from the request).
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => PyString::new(py, text),
        _ => PyString::new(py, &bytes.iter().map(|&b| b as char).collect::<String>()),
    }
}

/// The request's `environ` (PEP 3333), from a copy of [`environ_template`].
fn environ<'py>(
    py: Python<'py>,
    head: &crate::http::request::Head,
    peer: &crate::http::engine::Peer,
    input: Input,
    app: &WsgiApp,
) -> PyResult<Bound<'py, PyDict>> {
    use pyo3::intern;
    let env = app.template.bind(py).copy()?;
    let (path, query) = split_target(&head.target);
    let method = match head.method.as_str() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    };
    env.set_item(intern!(py, "REQUEST_METHOD"), method)?;
    if path == b"/" {
        env.set_item(intern!(py, "PATH_INFO"), intern!(py, "/"))?;
    } else {
        env.set_item(intern!(py, "PATH_INFO"), latin1(py, &percent_decode(path)))?;
    }
    if query.is_empty() {
        env.set_item(intern!(py, "QUERY_STRING"), intern!(py, ""))?;
    } else {
        env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
    }
    env.set_item(intern!(py, "SERVER_NAME"), peer.server_name.as_str())?;
    env.set_item(intern!(py, "SERVER_PORT"), peer.server_port.as_str())?;
    let protocol = if head.minor == 0 { intern!(py, "HTTP/1.0") } else { intern!(py, "HTTP/1.1") };
    env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
    env.set_item(intern!(py, "REMOTE_ADDR"), peer.remote_addr.as_str())?;
    if !peer.remote_port.is_empty() {
        env.set_item(intern!(py, "REMOTE_PORT"), peer.remote_port.as_str())?;
    }
    let mut cookies: Option<String> = None;
    for (name, value) in &head.headers {
        // A name with `_` could pose as another header once `-` becomes `_`
        // (Content_Length as CONTENT_LENGTH): such headers are dropped.
        if name.contains('_') {
            continue;
        }
        if name.eq_ignore_ascii_case("content-type") {
            env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, value))?;
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, value.trim_ascii()))?;
            continue;
        }
        if name.eq_ignore_ascii_case("cookie") {
            // Cookies join with "; ", never with a comma.
            let value: String = value.iter().map(|&b| b as char).collect();
            match &mut cookies {
                Some(all) => {
                    all.push_str("; ");
                    all.push_str(&value);
                }
                None => cookies = Some(value),
            }
            continue;
        }
        let key = header_key(py, name);
        match env.get_item(&key)? {
            Some(earlier) => {
                let value: String = value.iter().map(|&b| b as char).collect();
                env.set_item(key, format!("{},{value}", earlier.extract::<String>()?))?
            }
            None => env.set_item(key, latin1(py, value))?,
        }
    }
    if let Some(cookies) = cookies {
        env.set_item(intern!(py, "HTTP_COOKIE"), cookies)?;
    }
    env.set_item(intern!(py, "wsgi.input"), Bound::new(py, input)?)?;
    // `wsgi.input` returns b'' at the end of the body, chunked or not: the
    // extension frameworks (werkzeug) check before reading a body that has
    // no length. Only then: with it, werkzeug reads with `read()` and no
    // size, which `wsgiref.validate` refuses.
    if head.framing == crate::http::request::Framing::Chunked {
        env.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    }
    Ok(env)
}

/// The `environ` key of a header: `HTTP_` and the name in upper case with
/// `-` as `_`; the common ones interned, so their hash is computed once.
fn header_key<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyString> {
    use pyo3::intern;
    let common = |lower: &str| -> Option<&Bound<'py, PyString>> {
        Some(match lower {
            "host" => intern!(py, "HTTP_HOST"),
            "user-agent" => intern!(py, "HTTP_USER_AGENT"),
            "accept" => intern!(py, "HTTP_ACCEPT"),
            "accept-encoding" => intern!(py, "HTTP_ACCEPT_ENCODING"),
            "accept-language" => intern!(py, "HTTP_ACCEPT_LANGUAGE"),
            "connection" => intern!(py, "HTTP_CONNECTION"),
            "referer" => intern!(py, "HTTP_REFERER"),
            "origin" => intern!(py, "HTTP_ORIGIN"),
            "authorization" => intern!(py, "HTTP_AUTHORIZATION"),
            "cache-control" => intern!(py, "HTTP_CACHE_CONTROL"),
            "x-forwarded-for" => intern!(py, "HTTP_X_FORWARDED_FOR"),
            _ => return None,
        })
    };
    if name.len() <= 16 {
        let mut lower = [0u8; 16];
        lower[..name.len()].copy_from_slice(name.as_bytes());
        lower[..name.len()].make_ascii_lowercase();
        if let Some(key) = std::str::from_utf8(&lower[..name.len()]).ok().and_then(common) {
            return key.clone();
        }
    }
    PyString::new(py, &format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")))
}

/// The path and the query of a request target, in origin or absolute form.
pub(crate) fn split_target(target: &[u8]) -> (&[u8], &[u8]) {
    let mut rest = target;
    if !rest.starts_with(b"/") {
        if let Some(scheme_end) = memchr::memmem::find(rest, b"://") {
            let after = &rest[scheme_end + 3..];
            rest = match after.iter().position(|&b| b == b'/' || b == b'?') {
                Some(i) => &after[i..],
                None => b"",
            };
        }
    }
    match memchr::memchr(b'?', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, b""),
    }
}

/// `%XX` sequences decoded; a `%` not followed by two hex digits stays.
pub(crate) fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_and_decode() {
        assert_eq!(split_target(b"/a/b?x=1&y"), (&b"/a/b"[..], &b"x=1&y"[..]));
        assert_eq!(split_target(b"http://h:8/p?q"), (&b"/p"[..], &b"q"[..]));
        assert_eq!(split_target(b"http://h"), (&b""[..], &b""[..]));
        assert_eq!(percent_decode(b"/a%20b%2Fc%zz%4"), b"/a b/c%zz%4");
        assert_eq!(percent_decode(b"%e9"), vec![0xe9]);
    }
}
