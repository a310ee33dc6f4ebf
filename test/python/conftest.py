"""Fixtures for the tests of the ``erlang`` package.

These tests run inside the port program, where the built-in module
``_py_reactor`` exists:

    priv/py_reactor_port python -m pytest -q test/python
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for directory in (ROOT / "python", ROOT / "examples"):
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))

import erlang.reactor as reactor  # noqa: E402


@pytest.fixture(autouse=True)
def clean_reactor() -> Iterator[None]:
    """Give each test an empty registry and no factory, and leave them so."""
    saved_factory = reactor._factory
    saved_protocols = dict(reactor._protocols)
    reactor._protocols.clear()
    reactor.set_protocol_factory(None)
    yield
    reactor._protocols.clear()
    reactor._protocols.update(saved_protocols)
    reactor._factory = saved_factory


SocketPair = tuple[socket.socket, socket.socket]


@pytest.fixture
def make_pair() -> Iterator[Callable[..., SocketPair]]:
    """Return a function that makes connected socket pairs, closed after the test.

    The first socket plays the handed-over connection: it is non-blocking,
    as the port makes it.  The second is the peer, blocking with a timeout.
    """
    made: list[socket.socket] = []

    def make(family: socket.AddressFamily = socket.AF_UNIX) -> SocketPair:
        if family == socket.AF_INET:
            listener = socket.create_server(("127.0.0.1", 0))
            with listener:
                peer = socket.create_connection(listener.getsockname(), timeout=5)
                ours, _ = listener.accept()
        else:
            ours, peer = socket.socketpair(family)
        made.extend((ours, peer))
        ours.setblocking(False)
        peer.settimeout(5)
        return ours, peer

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
def pair(make_pair: Callable[..., SocketPair]) -> SocketPair:
    """A connected Unix socket pair: (connection, peer)."""
    return make_pair()
