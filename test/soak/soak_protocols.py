"""Protocols of the soak suite (``test/soak/py_reactor_soak_SUITE.erl``).

They are the examples' protocols (``examples/`` is on the Python path), made
fit for hundreds of thousands of connections:

- no log line per connection (``EchoProtocol`` prints two).

A peer that goes away while the protocol writes (the soak closes some
connections abruptly, on purpose) makes ``write_ready`` raise ``OSError``;
the port closes such a connection as ``{error, Errno}`` without counting a
Python error, so the soak requires ``python_errors`` to stay at zero with the
examples' ``write_ready`` unchanged.

One context serves both protocols: ``client_info["proto"]`` (``"echo"`` or
``"http"``, set by the Erlang acceptor) picks the one a connection gets.

Echo: whatever is received is sent back, except a message that is exactly
``quit``, which makes the protocol close the connection (the soak's
server-side close).

HTTP: ``KeepAliveHTTPProtocol``; ``GET /size/N`` answers ``N`` bytes of
``0123456789abcdef`` repeated, any other target the example's greeting.

``memory()`` gives the soak its figures of the port's memory from inside.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Any

import erlang.reactor as reactor
from echo_protocol import EchoProtocol
from http_protocol import KeepAliveHTTPProtocol, Request

PATTERN = b"0123456789abcdef"


class SoakEcho(EchoProtocol):
    """``EchoProtocol`` without its log lines; ``quit`` closes."""

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        reactor.Protocol.connection_made(self, fd, client_info)

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        if data == b"quit" and not self.write_buffer:
            return reactor.CLOSE
        return super().data_received(data)

    def connection_lost(self) -> None:
        pass


class SoakHTTP(KeepAliveHTTPProtocol):
    """``KeepAliveHTTPProtocol`` with ``/size/N`` bodies."""

    def handle_request(self, request: Request) -> None:
        if request.target.startswith("/size/"):
            size = int(request.target[len("/size/") :])
            body = (PATTERN * (size // len(PATTERN) + 1))[:size]
            self.respond(request, 200, "OK", body, "application/octet-stream")
        else:
            super().handle_request(request)


KINDS: dict[str, type[reactor.Protocol]] = {"echo": SoakEcho, "http": SoakHTTP}


class ByClientInfo(reactor.Protocol):
    """Delegates to the protocol ``client_info["proto"]`` names."""

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        super().connection_made(fd, client_info)
        self.inner = KINDS[client_info["proto"]]()
        self.inner.connection_made(fd, client_info)

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        return self.inner.data_received(data)

    def write_ready(self) -> str:
        return self.inner.write_ready()

    def connection_lost(self) -> None:
        self.inner.closed = True
        self.inner.connection_lost()


reactor.set_protocol_factory(ByClientInfo)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = _MallInfo2


def memory() -> dict[str, int]:
    """The port's memory as seen from inside, for the soak's figures.

    ``heap_in_use`` and ``heap_free``: bytes of the C heap (every malloc
    arena) allocated and free, from glibc's ``mallinfo2``; ``mmapped``:
    bytes in chunks malloc mapped on their own (in use); ``python_blocks``:
    blocks Python's allocator has handed out; ``gc_objects``: objects the
    cycle collector tracks.  A full collection runs first, so that garbage
    waiting for the collector is not counted.  A leak grows ``heap_in_use``
    + ``mmapped`` or the last two; free heap that glibc keeps grows RSS
    without any of them growing.
    """
    gc.collect()
    info = _libc.mallinfo2()
    return {
        "heap_in_use": info.uordblks,
        "heap_free": info.fordblks,
        "mmapped": info.hblkhd,
        "python_blocks": sys.getallocatedblocks(),
        "gc_objects": len(gc.get_objects()),
    }
