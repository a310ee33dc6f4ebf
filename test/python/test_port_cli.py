"""``py_reactor_port python`` with no argument on a terminal is an
interactive interpreter in which the ``erlang`` package works."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{marker!r} not seen in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side is closed
                chunk = b""
            assert chunk, f"end of output before {marker!r}: {bytes(seen)!r}"
            seen.extend(chunk)


def test_repl_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(ROOT / "priv/py_reactor_port"), "python"],
        stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True,
    )
    os.close(terminal)
    seen = bytearray()
    try:
        read_until(controller, b">>> ", seen)
        assert b"py_reactor_port" in seen
        os.write(controller, b"import erlang; print(6 * 7, erlang.Pid.__name__)\n")
        read_until(controller, b"42 Pid", seen)
        del seen[: seen.index(b"42 Pid")]
        read_until(controller, b">>> ", seen)
        os.write(controller, b"\x04")  # Ctrl-D: end of input
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
