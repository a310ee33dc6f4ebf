"""``data`` is bytes: every member of ``bytes`` and its consumers, compared.

Each test runs :mod:`bytes_differential` on ``ReactorBuffer`` objects and on
plain copies of them, for many inputs: objects made in Python, and objects
made by the port's own read path (``Protocol.read`` reads with the function
the loop uses for ``data_received``) from real TCP and Unix connections.
"""

from __future__ import annotations

import ctypes
import gc
import json
import pickle
import random
import socket
import subprocess
import sys
import zlib

import pytest

import _py_reactor
import bytes_differential as diff
import erlang
import erlang.reactor as reactor

RB = reactor.ReactorBuffer

_random = random.Random(20260101)

SAMPLES: dict[str, bytes] = {
    "empty": b"",
    "one": b"a",
    "abc": b"abc",
    "repeats": b"abababab",
    "nul": b"ab\x00ab",
    "http": b"GET /index.html?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "whitespace": b"  a  b\tc\n\x0bd\x0c e \x1c f  \r\n",
    "tabs": b"a\tbb\tccc\t\n\tx",
    "lines": b"one\ntwo\r\nthree\rfour\n\n",
    "quotes": b"both ' and \" quotes, it's",
    "cases": b"hello World ABC def 123 Title Case",
    "digits": b"12345",
    "float": b" -1.5e3 ",
    "hex": b"0a1b2C",
    "utf8": "café, 日本語, 🙂".encode(),
    "latin1": "café".encode("latin-1"),
    "invalid utf8": b"\xff\xfe\x00caf\xc3\xa9\xed\xa0\x80",
    "all bytes": bytes(range(256)),
    "json object": b'{"a": 1, "b": [true, null, 2.5], "c": "\\u00e9"}',
    "json utf8": '["é", {"k": "日本"}]'.encode(),
    "json utf16": '{"a": "b"}'.encode("utf-16"),
    "json bad": b'{"a": }',
    "pickle": pickle.dumps({"a": [1, 2], "b": b"x"}),
    "zlib": zlib.compress(b"hello " * 20),
    "base64": b"aGVsbG8gd29ybGQ=",
    "query": b"a=1&b=%20x+y&c=%E2%82%AC&c=2&empty=",
    "url": b"http://user@host.example:8080/p/a/t/h?query=1&x=%41#frag",
    "path": b"/usr/lib/../bin/./archive.tar.gz",
    "home": b"~/notes.txt",
    "regex": b"(a|b)+c[0-9]{2}",
    "format": b"%s and %d and %%",
    "ipv4": b"\x7f\x00\x00\x01",
    "ipv6": bytes(15) + b"\x01",
    "struct": b"\x01\x02\x03\x04\x05\x06\x07\x08",
    "binary": _random.randbytes(300),
    "64 KiB": b"x" * 65536,
    "70 KiB lines": b"".join(b"line %05d: %s\r\n" % (i, b"abc" * (i % 7)) for i in range(3000)),
    "256 KiB": _random.randbytes(256 * 1024),
}

NON_EMPTY = {name: data for name, data in SAMPLES.items() if data}


def assert_behaves_as_bytes(data: bytes, counts: dict[str, int] | None = None) -> None:
    bad = diff.differences(data, counts)
    shown = "\n".join(bad[:20])
    assert not bad, f"{len(bad)} differences from bytes, e.g.:\n{shown}"


@pytest.fixture
def tcp_connection(make_pair):
    ours, peer = make_pair(socket.AF_INET)
    proto = reactor.Protocol()
    proto.connection_made(ours.fileno(), {})
    return proto, peer


def read_all(proto: reactor.Protocol, peer: socket.socket, sent: bytes, size: int) -> list[bytes]:
    """Buffers from ``proto.read(size)`` until ``sent`` has arrived."""
    peer.sendall(sent)
    chunks: list[bytes] = []
    got = 0
    while got < len(sent):
        chunk = proto.read(size)
        if chunk:
            chunks.append(chunk)
            got += len(chunk)
    assert b"".join(chunks) == sent
    return chunks


# --- the check itself -------------------------------------------------------


def test_every_member_of_bytes_is_compared_or_explained() -> None:
    compared = set(diff.compared_members())
    explained = set(diff.NOT_COMPARED)
    assert explained <= set(dir(bytes)), explained - set(dir(bytes))
    public = {name for name in dir(bytes) if not name.startswith("_")}
    assert public <= compared, public - compared
    callables = {name for name in dir(bytes) if callable(getattr(bytes, name))}
    assert not callables - compared - explained, callables - compared - explained


def test_every_member_is_called_successfully_on_some_input() -> None:
    # A member that only ever raised was not really compared.
    counts: dict[str, int] = {}
    for data in SAMPLES.values():
        if len(data) <= diff.SMALL:
            diff.method_differences(RB(data), data, counts)
    never = set(diff.compared_members()) - set(counts) - {"__setattr__", "__delattr__"}
    assert not never, never


def test_the_check_finds_differences() -> None:
    class Wrong(bytes):
        def upper(self) -> bytes:
            return bytes(self)

        def split(self, sep=None, maxsplit=-1):  # type: ignore[override]
            return bytes(self).split(sep, -1 if maxsplit is None else maxsplit)

    bad = diff.differences(Wrong(b"a:b c"))
    assert any(line.startswith("upper(") for line in bad), bad[:5]
    assert any(line.startswith("split(*(b':', None)") for line in bad), bad[:5]

    class NotBytes:
        """What ReactorBuffer was: bytes-like, but not bytes."""

        def __init__(self, data: bytes) -> None:
            self._data = data

        def __bytes__(self) -> bytes:
            return self._data

    bad = diff.differences(NotBytes(b"x"))  # type: ignore[arg-type]
    assert any(line.startswith("isinstance(d, bytes)") for line in bad)
    assert any(line.startswith("json.loads(d)") for line in bad)


# --- ReactorBuffer objects -------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_a_buffer_made_in_python_behaves_as_bytes(name: str) -> None:
    assert_behaves_as_bytes(RB(SAMPLES[name]))


@pytest.mark.parametrize("name", NON_EMPTY)
def test_a_buffer_read_from_a_tcp_connection_behaves_as_bytes(name: str, tcp_connection) -> None:
    proto, peer = tcp_connection
    sent = SAMPLES[name]
    # The loop's read size: a small read is shrunk in place, a large one is
    # not; large samples arrive in several reads.
    chunks = read_all(proto, peer, sent, 65536)
    assert all(type(c) is RB for c in chunks)
    for chunk in chunks[:2] + chunks[-1:]:
        assert_behaves_as_bytes(chunk)


@pytest.mark.parametrize("name", ["one", "http", "utf8", "all bytes", "json object", "binary"])
def test_a_buffer_that_filled_its_read_behaves_as_bytes(name: str, pair) -> None:
    ours, peer = pair
    sent = SAMPLES[name]
    peer.sendall(sent)
    # Read size = the data: the buffer is neither shrunk nor cut.
    data = _py_reactor.read(ours.fileno(), len(sent))
    assert type(data) is RB and data == sent
    assert_behaves_as_bytes(data)


def test_read_returns_plain_empty_bytes_at_the_end(pair) -> None:
    ours, peer = pair
    peer.close()
    data = _py_reactor.read(ours.fileno(), 100)
    assert type(data) is bytes and data == b""


def test_read_of_an_impossible_size_raises_instead_of_aborting(pair) -> None:
    ours, _ = pair
    with pytest.raises(OverflowError):
        _py_reactor.read(ours.fileno(), sys.maxsize)


# --- what the issue listed, one by one --------------------------------------


def test_the_reported_differences_are_gone() -> None:
    d = RB(b'{"a": 1}')
    assert isinstance(d, bytes)
    assert json.loads(d) == {"a": 1}
    assert d * 2 == b'{"a": 1}{"a": 1}' and type(d * 2) is bytes
    assert __import__("copy").copy(d) == d
    assert pickle.loads(pickle.dumps(d)) == d
    assert d.hex() == b'{"a": 1}'.hex()
    assert d.replace(b"1", b"2") == b'{"a": 2}'
    assert d.partition(b":") == (b'{"a"', b":", b" 1}")
    assert RB(b"a\nb").splitlines() == [b"a", b"b"]
    assert d.upper() == b'{"A": 1}'
    assert str(d) == str(bytes(d)) == repr(bytes(d))
    with pytest.raises(TypeError):
        d.split(b":", None)
    with pytest.raises(TypeError):
        b"x".split(b":", None)


def test_pickles_hold_plain_bytes_that_load_without_the_port() -> None:
    d = RB(b"payload \xff")
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        dumped = pickle.dumps(d, protocol)
        assert b"ReactorBuffer" not in dumped and b"_py_reactor" not in dumped
        assert type(pickle.loads(dumped)) is bytes
    code = "import pickle, sys\nv = pickle.load(sys.stdin.buffer)\nprint(type(v).__name__, v)"
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        input=pickle.dumps([d]),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.decode().strip() == "list [b'payload \\xff']"


# --- the type ----------------------------------------------------------------


def test_the_type_is_a_bytes_subclass_reachable_by_its_names() -> None:
    assert issubclass(RB, bytes)
    assert RB is erlang.ReactorBuffer is reactor.ReactorBuffer is _py_reactor.ReactorBuffer
    assert (RB.__module__, RB.__qualname__) == ("erlang.reactor", "ReactorBuffer")
    # The layout of bytes: nothing added, no __dict__, not collected.
    assert RB.__basicsize__ == bytes.__basicsize__ and RB.__itemsize__ == 1
    assert RB.__dictoffset__ == 0 and RB.__weakrefoffset__ == 0
    d = RB(b"x")
    assert not gc.is_tracked(d)
    with pytest.raises(AttributeError):
        d.extra = 1  # type: ignore[attr-defined]


def test_the_constructor_is_that_of_bytes() -> None:
    assert RB() == b"" and type(RB()) is RB
    assert RB(3) == b"\0\0\0"
    assert RB("é", "utf-8") == "é".encode()
    assert RB([1, 2]) == b"\x01\x02"
    assert RB(memoryview(b"mv")) == b"mv"
    with pytest.raises(TypeError):
        RB("no encoding")


def test_fromhex_gives_plain_bytes() -> None:
    assert type(RB.fromhex("41 42")) is bytes and RB.fromhex("41 42") == b"AB"
    assert type(RB(b"x").fromhex("00")) is bytes


def test_a_subclass_of_reactor_buffer_works() -> None:
    class Tagged(RB):
        tag = "t"

    t = Tagged(b"abc")
    assert t == b"abc" and t.tag == "t" and t.memoryview().tobytes() == b"abc"
    t.note = 1  # a Python subclass has a __dict__, as for any bytes subclass
    assert t.upper() == b"ABC"


# --- zero copy ----------------------------------------------------------------


def data_address(data: bytes) -> int:
    address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    assert address is not None
    return address


@pytest.mark.parametrize("size", [1, 100, 40_000, 65536])
def test_read_data_lives_inside_the_object(size: int, pair) -> None:
    ours, peer = pair
    sent = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    peer.sendall(sent)
    data = _py_reactor.read(ours.fileno(), 65536)
    assert data == sent
    # The bytes follow the object header, as in any bytes: no separate
    # buffer exists.
    assert data_address(data) == id(data) + bytes.__basicsize__ - 1


def test_memoryview_method_lends_the_data_itself(pair) -> None:
    ours, peer = pair
    peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
    data = _py_reactor.read(ours.fileno(), 65536)
    view = data.memoryview()
    assert type(view) is memoryview and view.obj is data and view.readonly
    assert view[:3] == b"GET" and view.tobytes() == data
    with pytest.raises(TypeError):
        view[0] = 0
    base = sys.getrefcount(data)
    view2 = memoryview(data)
    assert sys.getrefcount(data) == base + 1
    view2.release()
    view.release()
    assert sys.getrefcount(data) == base - 1


def test_buffers_hold_their_type_and_release_it(pair) -> None:
    ours, peer = pair
    before = sys.getrefcount(RB)
    kept = []
    for size in (1, 100, 40_000, 65536):
        peer.sendall(b"x" * size)
        got = b""
        while len(got) < size:
            chunk = _py_reactor.read(ours.fileno(), 65536)
            if chunk:
                assert type(chunk) is RB
                kept.append(chunk)
                got += chunk
    del chunk
    assert sys.getrefcount(RB) == before + len(kept)
    kept.clear()
    assert sys.getrefcount(RB) == before
