//! The Python bridge: starting the embedded interpreter, running the
//! context's setup, and calling protocols.
//!
//! The interpreter is configured through `PyConfig`: isolated (no
//! `PYTHON*` variables, no user site), no signal handlers, unbuffered stdio,
//! and the home of the interpreter the port was built against, so it starts
//! the same way whatever environment the VM gives it. On an orderly exit of
//! `serve` it is finalised ([`finalize`]), so that `atexit` handlers run and
//! open files are flushed.

pub mod buffer;
pub mod convert;
pub mod native;
pub mod wsgi;
pub mod asgi;
pub mod timers;

use std::ffi::{CString, NulError};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use eetf::Term;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::message::{LogLevel, Notice, PythonError, RequestFailure, SetupOptions};
use convert::{py_to_term, term_to_py};
use native::Shared;

/// Why the interpreter could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("Python initialisation failed: {0}")]
    Status(String),
    #[error("argument contains a NUL byte: {0}")]
    Nul(#[from] NulError),
    #[error("cannot prepare the Python package path: {0}")]
    Path(PythonError),
}

/// The interpreter's home and executable, fixed when the port was built.
const PYTHON_HOME: &str = env!("PY_REACTOR_PYTHON_HOME");
const PYTHON_EXECUTABLE: &str = env!("PY_REACTOR_PYTHON_EXECUTABLE");

/// Starts the interpreter with `_py_reactor` built in, `argv` as `sys.argv`,
/// and `package_dir` (the directory holding the `erlang` package) first on
/// `sys.path`. Call once, before any other Python use.
pub fn initialize(package_dir: &Path, argv: &[String]) -> Result<(), InitError> {
    initialize_with(package_dir, argv, None)
}

/// [`initialize`], with `python` (a Python executable of the built minor
/// version, see `crate::interpreter`) as `sys.executable`: the `site`
/// module then takes on its environment (a virtualenv's prefix,
/// site-packages and `.pth` files) as when that executable runs. The
/// standard library stays that of the home the port was built against.
pub fn initialize_with(package_dir: &Path, argv: &[String], python: Option<&Path>) -> Result<(), InitError> {
    use native::_py_reactor;
    pyo3::append_to_inittab!(_py_reactor);
    let home = CString::new(PYTHON_HOME)?;
    let executable = match python {
        // Not canonicalised: a virtualenv's bin/python is a symbolic link
        // to the base interpreter, and its own path is what finds pyvenv.cfg.
        Some(path) => CString::new(path.as_os_str().as_encoded_bytes())?,
        None => CString::new(PYTHON_EXECUTABLE)?,
    };
    let args: Vec<CString> = argv.iter().map(|a| CString::new(a.as_str())).collect::<Result<_, _>>()?;
    let mut arg_ptrs: Vec<*const std::os::raw::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    // SAFETY: plain use of CPython's documented initialisation API from the
    // only thread running at this point; every string passed is a live
    // NUL-terminated buffer that CPython copies; the config is cleared on
    // every path.
    unsafe {
        use pyo3::ffi;
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitIsolatedConfig(config.as_mut_ptr());
        let config = config.as_mut_ptr();
        (*config).install_signal_handlers = 0;
        (*config).buffered_stdio = 0;
        (*config).parse_argv = 0;
        let status = (|| {
            check(ffi::PyConfig_SetBytesString(config, &mut (*config).home, home.as_ptr()))?;
            check(ffi::PyConfig_SetBytesString(config, &mut (*config).executable, executable.as_ptr()))?;
            check(ffi::PyConfig_SetBytesString(config, &mut (*config).program_name, executable.as_ptr()))?;
            check(ffi::PyConfig_SetBytesArgv(config, arg_ptrs.len() as ffi::Py_ssize_t, arg_ptrs.as_mut_ptr()))?;
            check(ffi::Py_InitializeFromConfig(config))
        })();
        ffi::PyConfig_Clear(config);
        status?;
        // Release the GIL taken by initialisation; `Python::attach` takes it
        // back whenever the port calls Python.
        ffi::PyEval_SaveThread();
    }
    Python::attach(|py| -> PyResult<()> {
        let path = py.import("sys")?.getattr("path")?;
        path.call_method1("insert", (0, package_dir.to_string_lossy().as_ref()))?;
        Ok(())
    })
    .map_err(|e| Python::attach(|py| InitError::Path(python_error(py, e))))
}

/// # Safety
/// `status` must come from a CPython initialisation call.
unsafe fn check(status: pyo3::ffi::PyStatus) -> Result<(), InitError> {
    // SAFETY: reading a status returned by CPython.
    if unsafe { pyo3::ffi::PyStatus_Exception(status) } == 0 {
        return Ok(());
    }
    let text = if status.err_msg.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: CPython's error messages are static NUL-terminated strings.
        unsafe { std::ffi::CStr::from_ptr(status.err_msg) }.to_string_lossy().into_owned()
    };
    Err(InitError::Status(text))
}

/// Sends Python's `sys.stdout` and `sys.stderr` to the VM as log notices.
pub fn redirect_streams(py: Python<'_>) -> Result<(), PythonError> {
    py.import("erlang._port")
        .and_then(|m| m.call_method0("install"))
        .map(|_| ())
        .map_err(|e| python_error(py, e))
}

/// Runs Python's own exit sequence, as a `python` process ending normally
/// would: waits for the threads that are not daemons, runs the `atexit`
/// handlers, flushes the standard streams, and finalises the interpreter,
/// which closes (and so flushes) the files still open. Returns `false` when
/// finalisation reported an error (a stream that could not be flushed).
///
/// Call last, on the main thread that initialised Python, after every
/// connection got `connection_lost` and every Python object the port holds
/// has been released: no Python may run afterwards. Its time is not bounded
/// here: an `atexit` handler or a thread that never ends keeps the port
/// alive until the VM kills it (the context's `stop_timeout`), or, when the
/// VM is gone, until the lifeline's grace period ends.
pub fn finalize() -> bool {
    // SAFETY: called once, from the main thread, with no pyo3 GIL guard
    // alive; the GIL state taken here is never released, because the
    // interpreter no longer exists once `Py_FinalizeEx` has returned.
    unsafe {
        pyo3::ffi::PyGILState_Ensure();
        pyo3::ffi::Py_FinalizeEx() == 0
    }
}

/// Flushes Python's streams, for the exits that do not finalise Python.
pub fn flush_streams(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        for name in ["stdout", "stderr"] {
            if let Ok(stream) = sys.getattr(name) {
                let _ = stream.call_method0("flush");
            }
        }
    }
}

/// The `erlang` package's directory: given, or found next to the binary
/// (`priv/py_reactor_port` sits beside `python/` in the source tree and in a
/// release alike; a `cargo` build sits two levels further down).
pub fn find_package_dir(given: Option<PathBuf>) -> Option<PathBuf> {
    if given.is_some() {
        return given;
    }
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    exe.ancestors()
        .skip(1)
        .take(4)
        .map(|dir| dir.join("python"))
        .find(|dir| dir.join("erlang").join("__init__.py").is_file())
}

/// Turns a Python exception into what the VM sees.
pub fn python_error(py: Python<'_>, err: PyErr) -> PythonError {
    let value = err.value(py);
    let ty = value.get_type();
    let qualname = ty.qualname().map(|q| q.to_string()).unwrap_or_else(|_| "Exception".into());
    let kind = match ty.module().map(|m| m.to_string()) {
        Ok(module) if module != "builtins" => format!("{module}.{qualname}"),
        _ => qualname,
    };
    let message = value.str().map(|s| s.to_string()).unwrap_or_default();
    // The traceback is kept beside the value, not on it: pass all three.
    let traceback = py
        .import("traceback")
        .and_then(|tb| tb.call_method1("format_exception", (ty, value, err.traceback(py))))
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| format!("{kind}: {message}\n"));
    PythonError { kind, message, traceback }
}

/// Sends a line to the VM's logger, from any thread; a line that cannot
/// reach the VM (it is gone) has nowhere else to go.
pub(crate) fn log(level: LogLevel, text: String) {
    if let Some(shared) = native::Shared::get() {
        let _ = shared.outbound.send(&Notice::Log { level, text });
    }
}

/// Logs an exception's traceback (an application's error) at `error`.
pub(crate) fn log_python_error(py: Python<'_>, err: PyErr) {
    let error = python_error(py, err);
    log(LogLevel::Error, error.traceback.trim_end().to_string());
}

fn code(text: &str) -> Result<CString, PythonError> {
    CString::new(text).map_err(|_| PythonError {
        kind: "ValueError".into(),
        message: "source code contains a NUL byte".into(),
        traceback: String::new(),
    })
}

/// What `py_reactor_port python` accepts.
pub const PROGRAM_USAGE: &str = "usage: py_reactor_port python [-c CODE | -m MODULE | SCRIPT | -] [ARGS...]
       py_reactor_port python --version
With no argument: an interactive interpreter when stdin is a terminal, else the
program read from stdin. No other option of `python3` is accepted.";

/// Runs `source` as the program `__main__`, named `filename` in tracebacks.
fn run_source(py: Python<'_>, source: &str, filename: &str) -> PyResult<()> {
    let builtins = py.import("builtins")?;
    let code = builtins.call_method1("compile", (source, filename, "exec"))?;
    builtins.call_method1("exec", (code, main_dict(py)?))?;
    Ok(())
}

fn main_dict(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    Ok(py.import("__main__")?.dict())
}

/// A web application returned by [`setup`], for the loop to serve over HTTP.
#[derive(Debug)]
pub enum WebApp {
    Wsgi(Py<PyAny>),
    Asgi(Py<PyAny>),
}

/// Runs the context's setup: extra paths, `setup_code`, `app_module` and
/// `app_callable`. A protocol factory is installed; a WSGI or ASGI
/// application is returned, for the loop to serve over HTTP
/// (`app_interface`, see `erlang.wsgi.interface_of`).
pub fn setup(py: Python<'_>, options: &SetupOptions) -> Result<Option<WebApp>, PythonError> {
    let err = |e| python_error(py, e);
    let path = py.import("sys").and_then(|s| s.getattr("path")).map_err(err)?;
    for (i, dir) in options.python_path.iter().enumerate() {
        path.call_method1("insert", (i + 1, dir)).map_err(err)?;
    }
    if let Some(text) = &options.setup_code {
        exec(py, text)?;
    }
    if let Some(module) = &options.app_module {
        let module = py.import(module.as_str()).map_err(|e| app_module_error(py, e, module))?;
        if let Some(name) = &options.app_callable {
            let app = module.getattr(name.as_str()).map_err(err)?;
            if !app.is_callable() {
                return Err(PythonError {
                    kind: "TypeError".into(),
                    message: format!("app_callable {name} is not callable"),
                    traceback: String::new(),
                });
            }
            let interface = options.app_interface.as_deref().unwrap_or("auto");
            let interface: String = py
                .import("erlang.wsgi")
                .and_then(|w| w.call_method1("interface_of", (&app, interface)))
                .and_then(|i| i.extract())
                .map_err(err)?;
            if interface == "wsgi" {
                return Ok(Some(WebApp::Wsgi(app.unbind())));
            }
            if interface == "asgi" {
                return Ok(Some(WebApp::Asgi(app.unbind())));
            }
            py.import("erlang.reactor")
                .and_then(|r| r.call_method1("set_protocol_factory", (app,)))
                .map_err(err)?;
        }
    }
    Ok(None)
}

/// The error of importing `app_module`; when the module itself is not
/// found (not one it imports), the message says where it was looked for and
/// that `python_path` adds directories: the usual first mistake.
fn app_module_error(py: Python<'_>, err: PyErr, module: &str) -> PythonError {
    let not_found = err.is_instance_of::<pyo3::exceptions::PyModuleNotFoundError>(py)
        && err
            .value(py)
            .getattr("name")
            .and_then(|n| n.extract::<String>())
            .is_ok_and(|name| module == name || module.starts_with(&format!("{name}.")));
    let mut error = python_error(py, err);
    if not_found {
        let path = py
            .import("sys")
            .and_then(|s| s.getattr("path"))
            .and_then(|p| p.repr())
            .map(|r| r.to_string())
            .unwrap_or_default();
        error.message = format!(
            "{} (looked for in sys.path, {path}; the python_path option adds the directory that holds it)",
            error.message
        );
    }
    error
}

/// Runs statements in `__main__`.
pub fn exec(py: Python<'_>, text: &str) -> Result<(), PythonError> {
    let source = code(text)?;
    let globals = main_dict(py).map_err(|e| python_error(py, e))?;
    py.run(&source, Some(&globals), None).map_err(|e| python_error(py, e))
}

/// Evaluates an expression in `__main__`.
pub fn eval(py: Python<'_>, text: &str) -> Result<Term, RequestFailure> {
    let source = code(text).map_err(RequestFailure::Python)?;
    let globals = main_dict(py).map_err(|e| RequestFailure::Python(python_error(py, e)))?;
    let value = py
        .eval(&source, Some(&globals), None)
        .map_err(|e| RequestFailure::Python(python_error(py, e)))?;
    py_to_term(&value).map_err(|e| RequestFailure::Unconvertible(e.to_string()))
}

/// Calls `module.function(*args)`. A coroutine function runs as a task on
/// the context's asyncio loop: `Ok(None)` then, and the reply is sent when
/// the task completes, under the token `defer` gives.
pub fn call(
    py: Python<'_>,
    module: &str,
    function: &str,
    args: &[Term],
    defer: impl FnOnce() -> u64,
) -> Result<Option<Term>, RequestFailure> {
    let py_err = |e| RequestFailure::Python(python_error(py, e));
    let args = args
        .iter()
        .map(|a| term_to_py(py, a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RequestFailure::BadRequest(e.to_string()))?;
    let args = PyTuple::new(py, args).map_err(py_err)?;
    // Through `erlang.aio.run_call`: a plain function runs outside the
    // context's asyncio loop, so that `asyncio.run()` inside it works.
    let value = py
        .import(module)
        .and_then(|m| m.getattr(function))
        .and_then(|f| {
            let aio = py.import("erlang.aio")?;
            if aio.call_method1("is_coroutine_function", (&f,))?.is_truthy()? {
                aio.call_method1("start_call", (f, args, defer()))?;
                return Ok(None);
            }
            aio.call_method1("run_call", (f, args)).map(Some)
        })
        .map_err(py_err)?;
    match value {
        None => Ok(None),
        Some(value) => py_to_term(&value).map(Some).map_err(|e| RequestFailure::Unconvertible(e.to_string())),
    }
}

/// What a protocol asked for after a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    WritePending,
    ReadPending,
    AsyncPending,
    Close,
}

/// A callback that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackError {
    Python(PythonError),
    BadAction(String),
    BadClientInfo(String),
    /// The callback let through the `OSError` of a failed `write` to its own
    /// connection (the peer reset it, say): an I/O error, not a fault of the
    /// protocol.
    WriteFailed(nix::errno::Errno),
}

/// The `erlang.reactor` entry points the loop calls, looked up once.
#[derive(Debug)]
pub struct Bridge {
    init_connection: Py<PyAny>,
    close_connection: Py<PyAny>,
    data_received: Py<PyString>,
    write_ready: Py<PyString>,
    eof_received: Py<PyString>,
    /// The action names, interned: a protocol returning the module's
    /// constants or string literals returns these very objects, so most
    /// results are recognised by identity without reading the string.
    actions: [(Py<PyString>, Action); 5],
}

impl Bridge {
    pub fn load(py: Python<'_>) -> Result<Bridge, PythonError> {
        let reactor = py.import("erlang.reactor").map_err(|e| python_error(py, e))?;
        let get = |name: &str| reactor.getattr(name).map(Bound::unbind).map_err(|e| python_error(py, e));
        Ok(Bridge {
            init_connection: get("init_connection")?,
            close_connection: get("close_connection")?,
            data_received: PyString::intern(py, "data_received").unbind(),
            write_ready: PyString::intern(py, "write_ready").unbind(),
            eof_received: PyString::intern(py, "eof_received").unbind(),
            actions: ACTION_NAMES.map(|(name, action)| (PyString::intern(py, name).unbind(), action)),
        })
    }

    /// Creates the protocol for the new connection `conn_id` on `fd`
    /// (factory, then `connection_made`).
    pub fn init_connection(
        &self,
        py: Python<'_>,
        fd: RawFd,
        conn_id: u64,
        client_info: &Term,
    ) -> Result<Py<PyAny>, CallbackError> {
        let info = term_to_py(py, client_info).map_err(|e| CallbackError::BadClientInfo(e.to_string()))?;
        before_callback();
        let result = self.init_connection.call1(py, (fd, info, conn_id));
        crate::forkguard::exit_if_child("connection_made");
        result.map_err(|e| callback_error(py, fd, e))
    }

    /// `protocol.eof_received()`: the peer of the connection on `fd` half-closed.
    pub fn eof_received(&self, py: Python<'_>, fd: RawFd, protocol: &Py<PyAny>) -> Result<Action, CallbackError> {
        before_callback();
        let result = protocol.bind(py).call_method0(self.eof_received.bind(py));
        self.action(py, fd, result)
    }

    /// `callback(*args)` of a timer, belonging to the connection on `fd`
    /// (or to none, `fd` -1): `None` or the action it returned.
    pub fn call_timer(
        &self,
        py: Python<'_>,
        fd: RawFd,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> Result<Option<Action>, CallbackError> {
        before_callback();
        match callback.call1(args) {
            Ok(value) if value.is_none() => {
                crate::forkguard::exit_if_child("a timer callback");
                Ok(None)
            }
            result => self.action(py, fd, result).map(Some),
        }
    }

    /// `protocol.data_received(data)` for the connection on `fd`, `data`
    /// being the `ReactorBuffer` the loop read into ([`buffer::read`]).
    pub fn data_received(
        &self,
        py: Python<'_>,
        fd: RawFd,
        protocol: &Py<PyAny>,
        data: Bound<'_, PyBytes>,
    ) -> Result<Action, CallbackError> {
        before_callback();
        let result = protocol.bind(py).call_method1(self.data_received.bind(py), (data,));
        self.action(py, fd, result)
    }

    /// `protocol.write_ready()` for the connection on `fd`.
    pub fn write_ready(&self, py: Python<'_>, fd: RawFd, protocol: &Py<PyAny>) -> Result<Action, CallbackError> {
        before_callback();
        let result = protocol.bind(py).call_method0(self.write_ready.bind(py));
        self.action(py, fd, result)
    }

    /// `erlang.reactor.close_connection(fd)`: `connection_lost` and unregistering.
    pub fn close_connection(&self, py: Python<'_>, fd: RawFd) -> Result<(), PythonError> {
        let result = self.close_connection.call1(py, (fd,));
        crate::forkguard::exit_if_child("connection_lost");
        result.map(|_| ()).map_err(|e| python_error(py, e))
    }

    fn action(&self, py: Python<'_>, fd: RawFd, result: PyResult<Bound<'_, PyAny>>) -> Result<Action, CallbackError> {
        crate::forkguard::exit_if_child("a protocol callback");
        let value = result.map_err(|e| callback_error(py, fd, e))?;
        if let Some((_, action)) = self.actions.iter().find(|(name, _)| value.is(name)) {
            return Ok(*action);
        }
        let parsed = value.cast::<PyString>().ok().and_then(|s| {
            let text = s.to_str().ok()?;
            ACTION_NAMES.iter().find(|(name, _)| *name == text).map(|(_, action)| *action)
        });
        parsed.ok_or_else(|| {
            let shown = value.repr().map(|r| r.to_string()).unwrap_or_else(|_| "<unprintable>".into());
            CallbackError::BadAction(shown)
        })
    }
}

fn before_callback() {
    crate::forkguard::exit_if_child("a Python call");
    if let Some(shared) = Shared::get() {
        shared.clear_write_failure();
    }
}

/// What the exception `err` escaping a callback of the connection on `fd`
/// means: [`CallbackError::WriteFailed`] when it is the `OSError` of a failed
/// `write` to `fd` during that callback, a Python error otherwise (a write to
/// another connection that failed is that protocol's business).
fn callback_error(py: Python<'_>, fd: RawFd, err: PyErr) -> CallbackError {
    let failure = Shared::get().and_then(Shared::take_write_failure);
    if let Some(failure) = failure.filter(|f| f.fd == fd) {
        let errno = err
            .is_instance_of::<pyo3::exceptions::PyOSError>(py)
            .then(|| err.value(py).getattr("errno").and_then(|e| e.extract::<i32>()).ok())
            .flatten();
        if errno == Some(failure.errno as i32) {
            return CallbackError::WriteFailed(failure.errno);
        }
    }
    CallbackError::Python(python_error(py, err))
}

const ACTION_NAMES: [(&str, Action); 5] = [
    ("continue", Action::Continue),
    ("write_pending", Action::WritePending),
    ("read_pending", Action::ReadPending),
    ("async_pending", Action::AsyncPending),
    ("close", Action::Close),
];

/// Runs a Python program the way `python ARGS` would, with `_py_reactor`
/// available: `-m MODULE ARGS`, `-c CODE ARGS` or `SCRIPT ARGS`. Returns the
/// exit status.
pub fn run_program(py: Python<'_>, args: &[String]) -> i32 {
    let result = (|| -> PyResult<i32> {
        let sys = py.import("sys")?;
        let runpy = py.import("runpy")?;
        let path = sys.getattr("path")?;
        match args {
            [flag, module, rest @ ..] if flag == "-m" => {
                sys.setattr("argv", PyList::new(py, std::iter::once(module).chain(rest))?)?;
                path.call_method1("insert", (0, std::env::current_dir()?.to_string_lossy().as_ref()))?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("run_name", "__main__")?;
                kwargs.set_item("alter_sys", true)?;
                runpy.call_method("run_module", (module,), Some(&kwargs))?;
            }
            [flag, text, rest @ ..] if flag == "-c" => {
                sys.setattr("argv", PyList::new(py, std::iter::once(&"-c".to_string()).chain(rest))?)?;
                path.call_method1("insert", (0, ""))?;
                let source = CString::new(text.as_str())?;
                py.run(&source, Some(&main_dict(py)?), None)?;
            }
            [flag] if flag == "--version" || flag == "-V" => {
                let version = sys.getattr("version")?.str()?.to_string();
                println!("Python {}", version.split_whitespace().next().unwrap_or(&version));
            }
            [flag, ..] if flag == "-h" || flag == "--help" => println!("{PROGRAM_USAGE}"),
            [] => {
                sys.setattr("argv", PyList::new(py, [""])?)?;
                path.call_method1("insert", (0, ""))?;
                let stdin = sys.getattr("stdin")?;
                if stdin.call_method0("isatty")?.is_truthy()? {
                    // Line editing and history when the readline module exists.
                    let _ = py.import("readline");
                    let kwargs = PyDict::new(py);
                    let banner = format!(
                        "Python {} in py_reactor_port (the erlang package is importable)",
                        sys.getattr("version")?.str()?
                    );
                    kwargs.set_item("banner", banner)?;
                    kwargs.set_item("exitmsg", "")?;
                    kwargs.set_item("local", main_dict(py)?)?;
                    py.import("code")?.call_method("interact", (), Some(&kwargs))?;
                } else {
                    run_source(py, &stdin.call_method0("read")?.str()?.to_string(), "<stdin>")?;
                }
            }
            [flag, rest @ ..] if flag == "-" => {
                sys.setattr("argv", PyList::new(py, std::iter::once(flag).chain(rest))?)?;
                path.call_method1("insert", (0, ""))?;
                let source = sys.getattr("stdin")?.call_method0("read")?.str()?.to_string();
                run_source(py, &source, "<stdin>")?;
            }
            [flag, ..] if flag.starts_with('-') => {
                eprintln!("py_reactor_port python: option {flag} is not supported\n{PROGRAM_USAGE}");
                return Ok(2);
            }
            [script, ..] => {
                sys.setattr("argv", PyList::new(py, args)?)?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("run_name", "__main__")?;
                runpy.call_method("run_path", (script,), Some(&kwargs))?;
            }
        }
        Ok(0)
    })();
    let status = match result {
        Ok(status) => status,
        Err(e) if e.is_instance_of::<pyo3::exceptions::PySystemExit>(py) => {
            let code = e.value(py).getattr("code").ok();
            match code {
                None => 1,
                Some(c) if c.is_none() => 0,
                Some(c) => c.extract::<i32>().unwrap_or_else(|_| {
                    eprintln!("{c}");
                    1
                }),
            }
        }
        Err(e) => {
            e.print(py);
            1
        }
    };
    flush_streams(py);
    status
}
