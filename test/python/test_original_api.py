"""Entry points as code written for the original project calls them."""

from __future__ import annotations

import socket

import erlang
import erlang.reactor as reactor


class Echo(reactor.Protocol):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[bytes] = []

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        self.received.append(bytes(data))
        self.write_buffer.extend(data)
        return reactor.WRITE_PENDING


def test_on_read_ready_without_data_reads_for_the_protocol() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        reactor.set_protocol_factory(Echo)
        reactor.init_connection(ours.fileno(), {"type": "test"})
        theirs.sendall(b"hello")
        assert reactor.on_read_ready(ours.fileno()) == "write_pending"
        protocol = reactor.get_protocol(ours.fileno())
        assert isinstance(protocol, Echo)
        assert bytes(protocol.write_buffer) == b"hello"
        assert protocol.received == [b"hello"]
        reactor.close_connection(ours.fileno())


def test_on_read_ready_without_data_at_end_of_file_closes() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        ours.setblocking(False)
        reactor.set_protocol_factory(Echo)
        reactor.init_connection(ours.fileno(), {})
        theirs.close()
        assert reactor.on_read_ready(ours.fileno()) == "close"
        protocol = reactor.get_protocol(ours.fileno())
        assert isinstance(protocol, Echo)
        assert protocol.received == []
        reactor.close_connection(ours.fileno())


def test_on_read_ready_with_data_passes_it_unchanged() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        reactor.set_protocol_factory(Echo)
        reactor.init_connection(ours.fileno(), {})
        given = reactor.ReactorBuffer(b"given")
        assert reactor.on_read_ready(ours.fileno(), given) == "write_pending"
        protocol = reactor.get_protocol(ours.fileno())
        assert isinstance(protocol, Echo)
        assert protocol.received == [b"given"]
        reactor.close_connection(ours.fileno())


def test_reactor_buffer_test_create() -> None:
    buf = erlang.ReactorBuffer._test_create(b"GET / HTTP/1.1\r\n")
    assert isinstance(buf, erlang.ReactorBuffer)
    assert buf == b"GET / HTTP/1.1\r\n"
    assert len(buf) == 16
    assert buf.find(b"HTTP") == 6
