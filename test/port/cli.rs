//! The command line a user meets first: `python` as an interpreter command
//! line, and `replay`/`dump` errors that name the file and say what is
//! wrong with it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn port_exe() -> PathBuf {
    match std::env::var_os("PY_REACTOR_PORT_EXE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_py_reactor_port")),
    }
}

fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// Runs the port with `args`, `stdin` as its input; (status, stdout, stderr).
fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(port_exe())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run py_reactor_port");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let Output { status, stdout, stderr } = child.wait_with_output().expect("wait");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn python(args: &[&str], stdin: &str) -> (i32, String, String) {
    let dir = python_dir();
    let mut all = vec!["python", "--python-dir", dir.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    run(&all, stdin)
}

#[test]
fn python_version() {
    let (status, out, _) = python(&["--version"], "");
    assert_eq!(status, 0);
    assert!(out.starts_with("Python 3."), "{out:?}");
    let (status, short, _) = python(&["-V"], "");
    assert_eq!((status, short), (0, out));
}

#[test]
fn python_without_arguments_runs_stdin_when_it_is_not_a_terminal() {
    let (status, out, err) = python(&[], "import erlang, sys\nprint(6 * 7, sys.argv, erlang.Pid.__name__)\n");
    assert_eq!(status, 0, "{err}");
    assert_eq!(out, "42 [''] Pid\n");
}

#[test]
fn python_dash_reads_the_program_from_stdin_with_arguments() {
    let (status, out, err) = python(&["-", "a", "b"], "import sys\nprint(sys.argv)\nsys.exit(3)\n");
    assert_eq!(status, 3, "{err}");
    assert_eq!(out, "['-', 'a', 'b']\n");
}

#[test]
fn python_c_and_m() {
    let (status, out, _) = python(&["-c", "import sys; print(sys.argv[1:])", "x"], "");
    assert_eq!((status, out.as_str()), (0, "['x']\n"));
    let (status, out, _) = python(&["-m", "json.tool"], "{\"a\": 1}");
    assert_eq!(status, 0);
    assert!(out.contains("\"a\": 1"), "{out}");
}

#[test]
fn python_refuses_options_it_does_not_have() {
    let (status, _, err) = python(&["-u", "script.py"], "");
    assert_eq!(status, 2);
    assert!(err.contains("option -u is not supported"), "{err}");
    assert!(err.contains("usage: py_reactor_port python"), "{err}");
}

#[test]
fn replay_of_a_missing_file_names_it() {
    let missing = std::env::temp_dir().join(format!("py_reactor_no_such_{}.rec", std::process::id()));
    let missing = missing.to_str().expect("utf-8 path");
    for command in ["replay", "dump"] {
        let (status, _, err) = run(&[command, missing], "");
        assert_eq!(status, 2, "{command}");
        assert!(err.contains(missing), "{command}: {err}");
        assert!(err.contains("No such file or directory"), "{command}: {err}");
    }
}

#[test]
fn replay_of_a_file_that_is_no_recording_says_so() {
    let readme = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = readme.to_str().expect("utf-8 path");
    let dir = std::env::temp_dir().join(format!("py_reactor_cli_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let empty = dir.join("empty.rec");
    std::fs::write(&empty, b"").expect("write");
    // A valid term that is no header: an ETF-framed `ok`.
    let term = dir.join("term.rec");
    std::fs::write(&term, [0, 0, 0, 5, 131, 119, 2, b'o', b'k']).expect("write");
    for file in [readme, empty.to_str().expect("utf-8"), term.to_str().expect("utf-8")] {
        for command in ["replay", "dump"] {
            let (status, _, err) = run(&[command, file], "");
            assert_eq!(status, 2, "{command} {file}");
            assert!(err.contains(file) && err.contains("not a recording"), "{command} {file}: {err}");
        }
    }
    std::fs::remove_dir_all(&dir).expect("clean up");
}
