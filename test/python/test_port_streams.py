"""erlang._port: stdout and stderr as line-buffered streams to the VM's log."""

from __future__ import annotations

import io
import sys
import threading

import pytest

import _py_reactor
from erlang import _port


class Sink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, level: str, text: str) -> None:
        self.lines.append((level, text))


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def stream(sink: Sink) -> _port.LogStream:
    return _port.LogStream("info", "<stdout>", sink)


def test_complete_lines_are_sent_without_newline(stream, sink) -> None:
    assert stream.write("hello\n") == 6
    assert sink.lines == [("info", "hello")]


def test_partial_lines_wait_for_the_newline(stream, sink) -> None:
    stream.write("par")
    stream.write("tial")
    assert sink.lines == []
    stream.write(" line\nnext")
    assert sink.lines == [("info", "partial line")]


def test_one_write_of_several_lines_is_one_event(stream, sink) -> None:
    stream.write("pending ")
    assert stream.write("a\n\nb\nc") == 6
    assert sink.lines == [("info", "pending a\n\nb")]
    stream.write("\n")
    assert sink.lines == [("info", "pending a\n\nb"), ("info", "c")]


def test_a_logged_traceback_is_one_event(stream, sink) -> None:
    import logging

    logger = logging.getLogger("test_port_streams")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    try:
        try:
            raise ZeroDivisionError("division by zero")
        except ZeroDivisionError:
            logger.exception("the request failed")
    finally:
        logger.removeHandler(handler)
    assert len(sink.lines) == 1, sink.lines
    level, text = sink.lines[0]
    assert level == "info"
    assert text.startswith("the request failed\nTraceback (most recent call last):\n")
    assert text.endswith("ZeroDivisionError: division by zero")


def test_flush_sends_a_partial_line_once(stream, sink) -> None:
    stream.write("prompt> ")
    stream.flush()
    stream.flush()
    assert sink.lines == [("info", "prompt> ")]
    stream.write("rest\n")
    assert sink.lines == [("info", "prompt> "), ("info", "rest")]


def test_flush_without_pending_text_sends_nothing(stream, sink) -> None:
    stream.flush()
    stream.write("line\n")
    stream.flush()
    assert sink.lines == [("info", "line")]


def test_print_goes_through(stream, sink) -> None:
    print("x =", 42, file=stream)
    print("no newline", end="", file=stream, flush=True)
    assert sink.lines == [("info", "x = 42"), ("info", "no newline")]


def test_unicode_is_kept(stream, sink) -> None:
    stream.write("héllo ✓\n")
    assert sink.lines == [("info", "héllo ✓")]


def test_level_is_the_streams(sink) -> None:
    err = _port.LogStream("warning", "<stderr>", sink)
    err.write("careful\n")
    assert sink.lines == [("warning", "careful")]
    assert err.level == "warning"


def test_write_takes_only_str(stream) -> None:
    with pytest.raises(TypeError, match="must be str, not bytes"):
        stream.write(b"bytes\n")  # type: ignore[arg-type]


def test_stream_properties(stream) -> None:
    assert isinstance(stream, io.TextIOBase)
    assert stream.writable() is True
    assert stream.readable() is False
    assert stream.seekable() is False
    assert stream.isatty() is False
    assert stream.encoding == "utf-8"
    assert stream.fileno() == 2
    assert stream.name == "<stdout>"
    assert stream.closed is False


def test_close_flushes_and_refuses_writes(stream, sink) -> None:
    stream.write("last words")
    stream.close()
    assert sink.lines == [("info", "last words")]
    assert stream.closed is True
    with pytest.raises(ValueError):
        stream.write("more\n")


def test_lines_from_many_threads_stay_whole(stream, sink) -> None:
    threads_count, lines_each = 8, 200

    def work(n: int) -> None:
        for i in range(lines_each):
            stream.write(f"thread {n} line {i} " + "-" * (i % 17) + "\n")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {
        f"thread {n} line {i} " + "-" * (i % 17)
        for n in range(threads_count)
        for i in range(lines_each)
    }
    assert len(sink.lines) == threads_count * lines_each
    assert {text for _, text in sink.lines} == expected


def test_concurrent_writes_lose_nothing(stream, sink) -> None:
    """Pieces written by many threads all reach the sink (no lost updates)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    threads_count, pieces_each = 8, 10_000

    def work() -> None:
        for i in range(pieces_each):
            stream.write("x\n" if i % 50 == 49 else "x")

    try:
        threads = [threading.Thread(target=work) for _ in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    stream.flush()
    assert sum(len(text) for _, text in sink.lines) == threads_count * pieces_each


def test_default_sink_is_the_port_log(monkeypatch) -> None:
    logged: list[tuple[str, str]] = []
    monkeypatch.setattr(_py_reactor, "log", lambda level, text: logged.append((level, text)))
    stream = _port.LogStream("info", "<stdout>")
    stream.write("to the vm\n")
    assert logged == [("info", "to the vm")]


def test_install_replaces_stdout_and_stderr(monkeypatch, sink) -> None:
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    _port.install(sink)
    assert isinstance(sys.stdout, _port.LogStream)
    assert isinstance(sys.stderr, _port.LogStream)
    print("to stdout")
    print("to stderr", file=sys.stderr)
    sys.stdout.write("partial")
    sys.stdout.flush()
    assert sink.lines == [("info", "to stdout"), ("warning", "to stderr"), ("info", "partial")]


def test_install_flushes_the_streams_it_replaces(monkeypatch, sink) -> None:
    old_out, old_err = io.StringIO(), io.StringIO()
    flushed: list[str] = []
    old_out.flush = lambda: flushed.append("out")  # type: ignore[method-assign]
    old_err.flush = lambda: flushed.append("err")  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdout", old_out)
    monkeypatch.setattr(sys, "stderr", old_err)
    _port.install(sink)
    assert flushed == ["out", "err"]
