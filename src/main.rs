//! `py_reactor_port`: the port program behind `py_reactor_context`.
//!
//! `serve` is what the VM runs: `{packet,4}` frames on stdin/stdout,
//! descriptors over an auxiliary Unix socket, the user's Python protocol on
//! each connection. `python` runs a Python program in the same embedded
//! interpreter (with `_py_reactor` available), which is how the Python tests
//! run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use py_reactor_port::outbound::{Outbound, Sink};
use py_reactor_port::python::{self, native::Shared};
use py_reactor_port::{reactor, stdio, Error};

#[derive(Debug, Parser)]
#[command(name = "py_reactor_port", version, about = "Runs Python reactor protocols for an Erlang VM")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one reactor context for the VM that spawned this process
    /// (`{packet,4}` ETF frames on stdin/stdout; see docs/protocol.md).
    Serve {
        /// OS pid of the VM: the only process allowed on the auxiliary socket.
        #[arg(long)]
        vm_pid: i32,
        /// Directory holding the `erlang` Python package (default: found next to this binary).
        #[arg(long)]
        python_dir: Option<PathBuf>,
        /// Where the private directory of the auxiliary socket is created.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        socket_dir: PathBuf,
    },
    /// Run a Python program in the port's embedded interpreter:
    /// `-m MODULE [ARGS]`, `-c CODE [ARGS]` or `SCRIPT [ARGS]`.
    Python {
        /// Directory holding the `erlang` Python package (default: found next to this binary).
        #[arg(long)]
        python_dir: Option<PathBuf>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { vm_pid, python_dir, socket_dir } => serve(vm_pid, python_dir, &socket_dir),
        Command::Python { python_dir, args } => run_python(python_dir, &args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("py_reactor_port: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(vm_pid: i32, python_dir: Option<PathBuf>, socket_dir: &std::path::Path) -> Result<ExitCode, Error> {
    // First of all, before anything can print: the frame stream moves to
    // private descriptors.
    let stream = stdio::take_frame_stream()?;
    let package_dir = python::find_package_dir(python_dir).ok_or(Error::NoPackageDir)?;
    let output = stream.output.try_clone()?;
    let shared = Shared::install(Arc::new(Outbound::new(Sink::Frames(output))));
    python::initialize(&package_dir, &["py_reactor_port".to_string()])?;
    stdio::set_signal_dispositions()?;
    if let Err(e) = pyo3::Python::attach(python::redirect_streams) {
        eprintln!("py_reactor_port: Python output stays on stderr: {}", e.message);
    }
    let reactor = reactor::Reactor::new(stream, shared, vm_pid, socket_dir)?;
    reactor.run();
    Ok(ExitCode::SUCCESS)
}

fn run_python(python_dir: Option<PathBuf>, args: &[String]) -> Result<ExitCode, Error> {
    let package_dir = python::find_package_dir(python_dir).ok_or(Error::NoPackageDir)?;
    Shared::install(Arc::new(Outbound::new(Sink::Stderr)));
    let mut argv = vec!["py_reactor_port".to_string()];
    argv.extend(args.iter().cloned());
    python::initialize(&package_dir, &argv)?;
    let status = pyo3::Python::attach(|py| python::run_program(py, args));
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(1)))
}
