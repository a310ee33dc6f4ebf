"""reactor.Protocol: defaults and the read/write helpers on real sockets."""

from __future__ import annotations

import errno
import signal
import socket

import pytest

import _py_reactor
import erlang
import erlang.reactor as reactor
from support import fill, recv_exactly


def connected(sock: socket.socket, info: dict | None = None) -> reactor.Protocol:
    proto = reactor.Protocol()
    proto.connection_made(sock.fileno(), info if info is not None else {})
    return proto


def test_action_constants() -> None:
    assert reactor.CONTINUE == "continue"
    assert reactor.WRITE_PENDING == "write_pending"
    assert reactor.READ_PENDING == "read_pending"
    assert reactor.CLOSE == "close"
    assert reactor.ASYNC_PENDING == "async_pending"


def test_reexports_come_from_the_port() -> None:
    assert reactor.ReactorBuffer is _py_reactor.ReactorBuffer
    assert erlang.ReactorBuffer is _py_reactor.ReactorBuffer
    assert erlang.Pid is _py_reactor.Pid
    assert erlang.send is _py_reactor.send
    assert erlang.reactor is reactor


def test_fresh_protocol_attributes() -> None:
    proto = reactor.Protocol()
    assert proto.fd == -1
    assert proto.client_info == {}
    assert isinstance(proto.write_buffer, bytearray)
    assert proto.write_buffer == b""
    assert proto.closed is False


def test_protocols_do_not_share_state() -> None:
    a, b = reactor.Protocol(), reactor.Protocol()
    a.write_buffer.extend(b"x")
    a.client_info["k"] = 1
    assert b.write_buffer == b""
    assert b.client_info == {}


def test_connection_made_stores_fd_and_client_info() -> None:
    proto = reactor.Protocol()
    info = {"addr": "127.0.0.1", "port": 4242, "type": "tcp"}
    proto.connection_made(7, info)
    assert proto.fd == 7
    assert proto.client_info is info


def test_default_data_received_continues() -> None:
    proto = reactor.Protocol()
    assert proto.data_received(reactor.ReactorBuffer(b"ignored")) == reactor.CONTINUE
    assert proto.write_buffer == b""


def test_default_connection_lost_does_nothing() -> None:
    proto = reactor.Protocol()
    assert proto.connection_lost() is None
    assert proto.closed is False


def test_repr_names_class_fd_and_state() -> None:
    proto = reactor.Protocol()
    proto.connection_made(5, {})
    assert repr(proto) == "<Protocol fd=5 open>"
    proto.closed = True
    assert repr(proto) == "<Protocol fd=5 closed>"


def test_read_returns_what_the_peer_sent(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    peer.sendall(b"hello world")
    assert proto.read(5) == b"hello"
    assert proto.read(100) == b" world"


def test_read_returns_empty_when_nothing_is_there(pair) -> None:
    ours, _peer = pair
    proto = connected(ours)
    assert proto.read(100) == b""


def test_read_returns_empty_at_eof(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    peer.sendall(b"last")
    peer.shutdown(socket.SHUT_WR)
    assert proto.read(100) == b"last"
    assert proto.read(100) == b""


def test_read_returns_empty_on_error() -> None:
    ours, peer = socket.socketpair()
    proto = connected(ours)
    ours.close()
    peer.close()
    assert proto.read(100) == b""  # EBADF


def test_read_after_close_returns_empty_without_touching_the_fd(pair, monkeypatch) -> None:
    ours, peer = pair
    proto = connected(ours)
    peer.sendall(b"unread")
    proto.closed = True
    monkeypatch.setattr(_py_reactor, "read", pytest.fail)
    assert proto.read(100) == b""


def test_write_sends_to_the_peer(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    assert proto.write(b"ping") == 4
    assert recv_exactly(peer, 4) == b"ping"


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview, "ReactorBuffer"])
def test_write_takes_bytes_like_objects(pair, kind) -> None:
    ours, peer = pair
    proto = connected(ours)
    data = reactor.ReactorBuffer(b"abc") if kind == "ReactorBuffer" else kind(b"abc")
    assert proto.write(data) == 3
    assert recv_exactly(peer, 3) == b"abc"


def test_write_returns_zero_when_the_socket_is_full(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    queued = fill(ours)
    assert proto.write(b"more") == 0
    # Once the peer drains the socket, writes go through again.
    recv_exactly(peer, queued)
    assert proto.write(b"more") == 4
    assert recv_exactly(peer, 4) == b"more"


def test_write_may_be_partial(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    big = b"x" * (8 * 1024 * 1024)
    written = proto.write(big)
    assert 0 < written < len(big)
    assert recv_exactly(peer, written) == big[:written]


def test_write_to_a_closed_peer_raises_oserror(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    peer.close()
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        with pytest.raises(OSError) as info:
            proto.write(b"nobody listens")
    finally:
        signal.signal(signal.SIGPIPE, previous)
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)


def test_write_after_close_raises_ebadf(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    proto.closed = True
    with pytest.raises(OSError) as info:
        proto.write(b"late")
    assert info.value.errno == errno.EBADF
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(10)


def test_write_before_connection_raises_ebadf() -> None:
    with pytest.raises(OSError) as info:
        reactor.Protocol().write(b"x")
    assert info.value.errno == errno.EBADF


def test_helpers_go_through_the_port_module(pair, monkeypatch) -> None:
    """read and write are _py_reactor.read/write, which count bytes_in/bytes_out."""
    ours, peer = pair
    proto = connected(ours)
    calls: list[tuple[str, int, object]] = []
    real_read, real_write = _py_reactor.read, _py_reactor.write

    def read(fd: int, size: int, conn_id: int | None = None) -> bytes:
        calls.append(("read", fd, size))
        return real_read(fd, size, conn_id)

    def write(fd: int, data: object, conn_id: int | None = None) -> int:
        calls.append(("write", fd, bytes(data)))  # type: ignore[call-overload]
        return real_write(fd, data, conn_id)

    monkeypatch.setattr(_py_reactor, "read", read)
    monkeypatch.setattr(_py_reactor, "write", write)
    peer.sendall(b"in")
    assert proto.read(10) == b"in"
    assert proto.write(b"out") == 3
    assert calls == [("read", ours.fileno(), 10), ("write", ours.fileno(), b"out")]


def test_write_ready_with_empty_buffer_goes_back_to_reading(pair) -> None:
    ours, _peer = pair
    proto = connected(ours)
    assert proto.write_ready() == reactor.READ_PENDING


def test_write_ready_sends_the_write_buffer(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    proto.write_buffer.extend(b"response")
    assert proto.write_ready() == reactor.READ_PENDING
    assert proto.write_buffer == b""
    assert recv_exactly(peer, 8) == b"response"


def test_write_ready_continues_while_data_remains(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    queued = fill(ours)
    proto.write_buffer.extend(b"tail")
    assert proto.write_ready() == reactor.CONTINUE
    assert proto.write_buffer == b"tail"
    recv_exactly(peer, queued)
    assert proto.write_ready() == reactor.READ_PENDING
    assert recv_exactly(peer, 4) == b"tail"


def test_write_ready_keeps_the_unwritten_part(pair) -> None:
    ours, peer = pair
    proto = connected(ours)
    payload = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than a socket buffer
    proto.write_buffer.extend(payload)
    assert proto.write_ready() == reactor.CONTINUE
    sent = len(payload) - len(proto.write_buffer)
    assert 0 < sent < len(payload)
    assert proto.write_buffer == payload[sent:]
    assert recv_exactly(peer, sent) == payload[:sent]
