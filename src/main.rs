//! `py_reactor_port`: the port program behind `py_reactor_context`.
//!
//! `serve` is what the VM runs: `{packet,4}` frames on stdin/stdout,
//! descriptors over an auxiliary Unix socket, the user's Python protocol on
//! each connection. `python` runs a Python program in the same embedded
//! interpreter (with `_py_reactor` available), which is how the Python tests
//! run.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use py_reactor_port::outbound::{Outbound, Sink};
use py_reactor_port::python::{self, native::Shared};
use py_reactor_port::recording::{self, Recorder};
use py_reactor_port::replay::{self, ReplayOptions};
use py_reactor_port::{lifeline, reactor, stdio, Error};

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
        /// Record every frame (and with --record-bytes, every connection byte) to this file.
        #[arg(long)]
        record: Option<PathBuf>,
        /// Also record the bytes read from and written to each connection.
        #[arg(long, requires = "record")]
        record_bytes: bool,
    },
    /// Re-run a recorded session offline and compare what the protocol does
    /// now with the recording. Exit status 0 when they match, 1 at the first
    /// difference (printed), 2 when the recording cannot be read.
    Replay {
        /// The recording (made with `serve --record`).
        file: PathBuf,
        /// Use the setup code in this file instead of the recorded one.
        #[arg(long)]
        setup_code: Option<PathBuf>,
        /// Import this module instead of the recorded app_module.
        #[arg(long)]
        app_module: Option<String>,
        /// Put this directory first on the Python path (repeatable).
        #[arg(long)]
        python_path: Vec<String>,
        /// Do not compare log lines (Python output).
        #[arg(long)]
        ignore_logs: bool,
        /// Check a fix: connections the recording shows closed by a Python
        /// error or a bad action must not fail now (what they wrote before
        /// failing must still be written); everything else must match.
        #[arg(long)]
        expect_fixed: bool,
        /// Seconds one recorded read may take to be consumed before the replay gives up.
        #[arg(long, default_value_t = 5.0)]
        step_timeout: f64,
        /// Directory holding the `erlang` Python package (default: found next to this binary).
        #[arg(long)]
        python_dir: Option<PathBuf>,
    },
    /// Print a recording, one event a line, terms in Erlang syntax.
    Dump {
        /// The recording.
        file: PathBuf,
        /// One JSON object per line instead.
        #[arg(long)]
        json: bool,
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
        Command::Serve { vm_pid, python_dir, socket_dir, record, record_bytes } => {
            serve(vm_pid, python_dir, &socket_dir, record.as_deref(), record_bytes)
        }
        Command::Python { python_dir, args } => run_python(python_dir, &args),
        Command::Replay {
            file,
            setup_code,
            app_module,
            python_path,
            ignore_logs,
            expect_fixed,
            step_timeout,
            python_dir,
        } => {
            let setup_code = match setup_code.map(std::fs::read_to_string).transpose() {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("py_reactor_port: cannot read the setup code: {e}");
                    return ExitCode::from(2);
                }
            };
            let options = ReplayOptions {
                setup_code,
                app_module,
                python_path,
                ignore_logs,
                expect_fixed,
                step_timeout: std::time::Duration::from_secs_f64(step_timeout.max(0.0)),
            };
            Ok(run_replay(&file, &options, python_dir))
        }
        Command::Dump { file, json } => Ok(dump(&file, json)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("py_reactor_port: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(
    vm_pid: i32,
    python_dir: Option<PathBuf>,
    socket_dir: &Path,
    record: Option<&Path>,
    record_bytes: bool,
) -> Result<ExitCode, Error> {
    // First of all, before anything can print: the frame stream moves to
    // private descriptors.
    let stream = stdio::take_frame_stream()?;
    lifeline::watch(&stream.input)?;
    let package_dir = python::find_package_dir(python_dir).ok_or(Error::NoPackageDir)?;
    let output = stream.output.try_clone()?;
    let recorder = record.map(|path| Recorder::create(path, record_bytes)).transpose()?.map(Arc::new);
    let outbound = Outbound::new(Sink::Frames(output), recorder.clone());
    let shared = Shared::install(Arc::new(outbound), recorder);
    python::initialize(&package_dir, &["py_reactor_port".to_string()])?;
    stdio::set_signal_dispositions()?;
    if let Err(e) = pyo3::Python::attach(python::redirect_streams) {
        eprintln!("py_reactor_port: Python output stays on stderr: {}", e.message);
    }
    let reactor = reactor::Reactor::serve(stream, shared, vm_pid, socket_dir)?;
    reactor.run();
    Ok(ExitCode::SUCCESS)
}

fn run_python(python_dir: Option<PathBuf>, args: &[String]) -> Result<ExitCode, Error> {
    let package_dir = python::find_package_dir(python_dir).ok_or(Error::NoPackageDir)?;
    Shared::install(Arc::new(Outbound::new(Sink::Stderr, None)), None);
    let mut argv = vec!["py_reactor_port".to_string()];
    argv.extend(args.iter().cloned());
    python::initialize(&package_dir, &argv)?;
    let status = pyo3::Python::attach(|py| python::run_program(py, args));
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(1)))
}

fn run_replay(file: &Path, options: &ReplayOptions, python_dir: Option<PathBuf>) -> ExitCode {
    let recording = match recording::read_file(file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("py_reactor_port: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    if let Some(offset) = recording.truncated_at {
        eprintln!("py_reactor_port: the recording ends in an incomplete record at offset {offset} (the port died); replaying what precedes it");
    }
    let result = (|| -> Result<_, Error> {
        let package_dir = python::find_package_dir(python_dir).ok_or(Error::NoPackageDir)?;
        let recorder = Arc::new(Recorder::in_memory());
        let outbound = Outbound::new(Sink::Memory(Vec::new()), None);
        let shared = Shared::install(Arc::new(outbound), Some(recorder));
        python::initialize(&package_dir, &["py_reactor_port".to_string()])?;
        stdio::set_signal_dispositions()?;
        let tty = std::io::stderr().is_terminal();
        let mut last = std::time::Instant::now();
        pyo3::Python::attach(|py| {
            if let Err(e) = python::redirect_streams(py) {
                eprintln!("py_reactor_port: Python output stays on stderr: {}", e.message);
            }
            replay::replay(py, shared, &recording, options, |done, total| {
                if tty && (done == total || last.elapsed().as_millis() >= 100) {
                    last = std::time::Instant::now();
                    eprint!("\rreplaying: {done}/{total} records");
                    if done == total {
                        eprintln!();
                    }
                }
            })
        })
    })();
    match result {
        Ok(Ok(m)) => {
            println!(
                "replay matches: {} records, {} frames to the VM, {} connections, {} bytes written{}{}",
                m.records,
                m.frames,
                m.connections,
                m.bytes,
                if m.fixed > 0 { format!(", {} failing connections fixed", m.fixed) } else { String::new() },
                if m.truncated { " (recording cut short: compared up to its end)" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Ok(Err(divergence)) => {
            println!("replay differs: {divergence}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("py_reactor_port: replay failed: {e}");
            ExitCode::from(2)
        }
    }
}

fn dump(file: &Path, json: bool) -> ExitCode {
    let recording = match recording::read_file(file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("py_reactor_port: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    for record in &recording.records {
        let line = if json { replay::to_json(record).to_string() } else { replay::describe(record) };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::SUCCESS;
        }
    }
    if let Some(offset) = recording.truncated_at {
        let note = format!("incomplete record at offset {offset}: the port died while writing it");
        let line = if json { serde_json::json!({ "event": "truncated", "offset": offset }).to_string() } else { note };
        let _ = writeln!(out, "{line}");
    }
    ExitCode::SUCCESS
}
