"""The Makefile's user-facing targets behave as the README says.

``make run`` stops on one Ctrl-C, and the quick benchmark and the example
recording leave the committed files alone unless asked to update them.
Run from a terminal, Ctrl-C sends SIGINT to the whole foreground process
group; the test does the same to a ``make run`` whose standard input is a
pseudo-terminal.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /ctrl-c HTTP/1.0\r\nHost: localhost\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.0 200")
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_make_run_stops_on_one_ctrl_c() -> None:
    port = free_port()
    controller, terminal = pty.openpty()
    # `-o build`: the build is done (make test builds first); only run.
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "-o", "build", "run", f"PORT={port}"],
        cwd=ROOT,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # As from a terminal: whatever this process inherited, SIGINT is
        # not ignored (a shell ignores it in the jobs it puts in the background).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(terminal)
    try:
        deadline = time.monotonic() + 120
        while not serving(port):
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
            assert time.monotonic() < deadline, "make run never served"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError("make run still running 30 s after one Ctrl-C") from None
        assert not serving(port)
        deadline = time.monotonic() + 30
        while group_alive(proc.pid):
            assert time.monotonic() < deadline, "processes of make run outlived it"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(controller)


def test_bench_quick_writes_no_committed_file() -> None:
    """`make bench-quick` runs bench/run.py --quick, whose outputs are ignored files."""
    import importlib.util
    import sys

    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "bench-prepare", "bench-quick"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    commands = [line for line in dry.splitlines() if "bench/run.py" in line]
    assert len(commands) == 1 and "--update-committed" not in commands[0], dry
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench/run.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        run = importlib.util.module_from_spec(spec)
        sys.modules["bench_run"] = run  # dataclasses look their module up there
        spec.loader.exec_module(run)
    finally:
        sys.path.remove(str(ROOT / "bench"))
        sys.modules.pop("bench_run", None)
    out, chart, docs = run.output_paths(False, None, None, None)
    assert docs is None
    for path in (out, chart):
        assert path.is_relative_to(ROOT / "_build"), path
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is not ignored by git"
    committed = run.output_paths(True, None, None, None)
    assert committed == (
        ROOT / "bench/results/latest.json",
        ROOT / "bench/results/latest.png",
        ROOT / "docs/performance.md",
    )
    bench_line = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "bench-prepare", "bench"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert "bench/run.py --update-committed" in bench_line, bench_line


def test_example_recording_leaves_the_committed_recording_alone() -> None:
    committed = ROOT / "examples/recordings/http_bug.rec"
    before = committed.read_bytes()
    local = ROOT / "_build/recordings/http_bug.rec"
    local.unlink(missing_ok=True)
    done = subprocess.run(
        ["make", "--no-print-directory", "-o", "build", "example-recording"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"recorded {local}" in done.stdout, done.stdout
    assert committed.read_bytes() == before
    assert local.stat().st_size > 0
    replay = subprocess.run(
        [str(ROOT / "priv/py_reactor_port"), "replay", str(local)],
        capture_output=True, text=True, timeout=120,
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
