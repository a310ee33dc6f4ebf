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
use py_reactor_port::{forkguard, framing, interpreter, lifeline, reactor, stdio, terms, Error};

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
        /// A Python executable (a virtualenv's bin/python) whose environment
        /// the interpreter takes on; it must be of the built minor version.
        #[arg(long)]
        python: Option<PathBuf>,
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
    /// Run Python in the port's embedded interpreter, where the `erlang`
    /// package works: `-c CODE [ARGS]`, `-m MODULE [ARGS]`, `SCRIPT [ARGS]`,
    /// `-` (the program on stdin), `--version`; no argument gives an
    /// interactive interpreter (or runs stdin when it is not a terminal).
    Python {
        /// Directory holding the `erlang` Python package (default: found next to this binary).
        #[arg(long)]
        python_dir: Option<PathBuf>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { vm_pid, python_dir, socket_dir, record, record_bytes, python } => {
            serve(vm_pid, python_dir, &socket_dir, record.as_deref(), record_bytes, python.as_deref())
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
    python: Option<&Path>,
) -> Result<ExitCode, Error> {
    // First of all, before anything can print: the frame stream moves to
    // private descriptors.
    let mut stream = stdio::take_frame_stream()?;
    lifeline::watch(&stream.input, vm_pid)?;
    forkguard::install()?;
    if let Some(Err(unusable)) = python.map(interpreter::check) {
        // Said instead of `hello`: start_link returns it as its error.
        framing::write_frame(&mut stream.output, &terms::encode(&unusable.to_term()))?;
        return Ok(ExitCode::from(4));
    }
    let package_dir = python::find_package_dir(python_dir).ok_or(Error::NoPackageDir)?;
    let recorder = record.map(|path| Recorder::create(path, record_bytes)).transpose()?.map(Arc::new);
    let outbound = Outbound::new(Sink::Frames(stream.output), recorder.clone());
    let shared = Shared::install(Arc::new(outbound), recorder);
    python::initialize_with(&package_dir, &["py_reactor_port".to_string()], python)?;
    stdio::set_signal_dispositions()?;
    if let Err(e) = pyo3::Python::attach(python::redirect_streams) {
        eprintln!("py_reactor_port: Python output stays on stderr: {}", e.message);
    }
    let reactor = reactor::Reactor::serve(stream.input, shared, vm_pid, socket_dir)?;
    reactor.run();
    // Every connection got connection_lost: now Python's own exit (atexit
    // handlers, open files flushed), as when a Python program ends.
    if !python::finalize() {
        eprintln!("py_reactor_port: Python's exit sequence reported an error");
    }
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
    // The protocol may end the process (os._exit, a segfault), as it may
    // have ended the recorded port: the replay runs in a child that mirrors
    // everything it captures to this process, which judges it either way.
    let (mirror_read, mirror_write) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("py_reactor_port: cannot create a pipe: {e}");
            return ExitCode::from(2);
        }
    };
    // SAFETY: this process has started no thread and no interpreter yet, so
    // the child starts from a consistent copy of a single-threaded process.
    match unsafe { nix::unistd::fork() } {
        Err(e) => {
            eprintln!("py_reactor_port: cannot fork the replay: {e}");
            ExitCode::from(2)
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(mirror_read);
            let code = replay_in_child(&recording, options, python_dir, std::fs::File::from(mirror_write));
            std::process::exit(code);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(mirror_write);
            let mut mirrored = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::fs::File::from(mirror_read), &mut mirrored);
            let status = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            let mirrored = recording::parse(&mirrored).ok();
            let death = match status {
                Ok(nix::sys::wait::WaitStatus::Exited(_, code))
                    if mirrored.as_ref().is_some_and(replay::finished) =>
                {
                    return ExitCode::from(u8::try_from(code).unwrap_or(2));
                }
                Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => format!("exit status {code}"),
                Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => format!("killed by {signal}"),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("lost: {e}"),
            };
            let Some(mirrored) = mirrored else {
                // The child failed before the replay began and said why.
                eprintln!("py_reactor_port: the replay could not start ({death})");
                return ExitCode::from(2);
            };
            match replay::judge_death(&recording, &mirrored, options, &death) {
                Ok(m) => {
                    println!(
                        "replay matches: {} records, {} frames to the VM, {} bytes written; the replay died \
                         ({death}) where the recording was cut short by the death of the recorded port",
                        m.records, m.frames, m.bytes
                    );
                    ExitCode::SUCCESS
                }
                Err(divergence) => {
                    println!("replay differs: {divergence}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// The replay itself, in the child: returns the exit status.
fn replay_in_child(
    recording: &recording::Recording,
    options: &ReplayOptions,
    python_dir: Option<PathBuf>,
    mirror: std::fs::File,
) -> i32 {
    let recorder = match Recorder::in_memory(Some(mirror)) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("py_reactor_port: replay failed: {e}");
            return 2;
        }
    };
    let result = (|| -> Result<_, Error> {
        let package_dir = python::find_package_dir(python_dir).ok_or(Error::NoPackageDir)?;
        let outbound = Outbound::new(Sink::Memory(Vec::new()), Some(Arc::clone(&recorder)));
        let shared = Shared::install(Arc::new(outbound), Some(Arc::clone(&recorder)));
        python::initialize(&package_dir, &["py_reactor_port".to_string()])?;
        stdio::set_signal_dispositions()?;
        let tty = std::io::stderr().is_terminal();
        let mut last = std::time::Instant::now();
        let verdict = pyo3::Python::attach(|py| {
            if let Err(e) = python::redirect_streams(py) {
                eprintln!("py_reactor_port: Python output stays on stderr: {}", e.message);
            }
            replay::replay(py, shared, recording, options, |done, total| {
                if tty && (done == total || last.elapsed().as_millis() >= 100) {
                    last = std::time::Instant::now();
                    eprint!("\rreplaying: {done}/{total} records");
                    if done == total {
                        eprintln!();
                    }
                }
            })
        })?;
        Ok(verdict)
    })();
    let code = match result {
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
            0
        }
        Ok(Err(divergence)) => {
            println!("replay differs: {divergence}");
            1
        }
        Err(e) => {
            eprintln!("py_reactor_port: replay failed: {e}");
            2
        }
    };
    let _ = std::io::stdout().flush();
    recorder.end(replay::FINISHED);
    code
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
