"""Python's standard streams inside the port program.

The port's real stdout carries the ``{packet,4}`` frames to the VM, so Python
must never write to it.  The port points fd 1 at stderr before Python starts,
and at start-up calls :func:`install`, which replaces ``sys.stdout`` and
``sys.stderr`` with streams that send what each write completes (up to its
last newline) to the VM as one ``{log, Level, Text}`` notice (``info`` for
stdout, ``warning`` for stderr).
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Callable

import _py_reactor

__all__ = ["LogStream", "install"]

LogSink = Callable[[str, str], object]
"""Receives ``(level, line)`` for each line; ``_py_reactor.log`` by default."""


class LogStream(io.TextIOBase):
    """A text stream that hands complete lines to a log function.

    Text is buffered until a newline.  A write that completes lines sends
    them, with what was pending before it and without the last newline, as
    one ``sink(level, text)`` call: a logging handler's record, a traceback
    included, is one log event in the VM, not one per line.  :meth:`flush`
    sends a pending partial line.  Writes from several threads are
    serialised, so lines never interleave.
    """

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, level: str, name: str, sink: LogSink | None = None) -> None:
        super().__init__()
        self._level = level
        self._name = name
        self._sink = sink
        self._pending = ""
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<erlang._port.LogStream name={self._name!r} level={self._level!r}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def level(self) -> str:
        """The log level each line is sent with."""
        return self._level

    @property
    def line_buffering(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        """Return 2: the port points fd 1 at stderr, so both streams end there.

        Code that writes to the descriptor directly (``faulthandler``, child
        processes) bypasses the log and reaches the VM's stderr.
        """
        return 2

    def _emit(self, line: str) -> None:
        sink = self._sink if self._sink is not None else _py_reactor.log
        sink(self._level, line)

    def write(self, s: str) -> int:
        if self.closed:
            raise ValueError("I/O operation on closed file.")
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        with self._lock:
            complete, newline, self._pending = (self._pending + s).rpartition("\n")
            if newline:
                self._emit(complete)
        return len(s)

    def flush(self) -> None:
        if self.closed:
            return
        with self._lock:
            if self._pending:
                line, self._pending = self._pending, ""
                self._emit(line)


def _replace(old: object, new: LogStream) -> LogStream:
    flush = getattr(old, "flush", None)
    if callable(flush):
        with contextlib.suppress(OSError, ValueError):
            flush()
    return new


def install(sink: LogSink | None = None) -> None:
    """Replace ``sys.stdout`` and ``sys.stderr`` with :class:`LogStream` objects.

    ``sys.stdout`` logs at level ``info``, ``sys.stderr`` at ``warning``.  The
    streams being replaced are flushed first.  ``sink`` defaults to
    ``_py_reactor.log``.
    """
    sys.stdout = _replace(sys.stdout, LogStream("info", "<stdout>", sink))
    sys.stderr = _replace(sys.stderr, LogStream("warning", "<stderr>", sink))
