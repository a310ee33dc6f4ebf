"""Connection identity (ConnectionFd), eof_received and timer handles, in
the port's interpreter without its loop."""

from __future__ import annotations

import copy
import os
import pickle

import pytest

import erlang.reactor as reactor


class Recorder(reactor.Protocol):
    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def connection_lost(self) -> None:
        self.lost += 1


def test_connection_fd_is_the_int_it_names(pair) -> None:
    ours, _peer = pair
    fd = reactor.ConnectionFd(ours.fileno(), 41)
    assert fd == ours.fileno() and hash(fd) == hash(ours.fileno())
    assert isinstance(fd, int) and fd.conn_id == 41
    assert f"{fd}" == str(ours.fileno()) and repr(fd) == repr(ours.fileno())
    assert os.fstat(fd).st_ino == os.fstat(ours.fileno()).st_ino
    assert type(pickle.loads(pickle.dumps(fd))) is int
    assert copy.copy(fd) == fd


def test_init_connection_gives_the_protocol_a_connection_fd(pair) -> None:
    ours, _peer = pair
    reactor.set_protocol_factory(Recorder)
    proto = reactor.init_connection(ours.fileno(), {}, 7)
    assert isinstance(proto.fd, reactor.ConnectionFd)
    assert proto.fd.conn_id == 7 and proto.conn_id == 7
    assert reactor.get_protocol(proto.fd) is proto
    assert reactor.get_protocol(ours.fileno()) is proto


def test_a_protocol_given_the_connection_by_another_gets_its_id(pair) -> None:
    ours, _peer = pair
    reactor.set_protocol_factory(Recorder)
    outer = reactor.init_connection(ours.fileno(), {}, 9)
    inner = Recorder()
    inner.connection_made(outer.fd, outer.client_info)
    assert inner.conn_id == 9 and inner.fd.conn_id == 9


def test_a_stale_connection_fd_reaches_no_other_connection(pair) -> None:
    ours, _peer = pair
    reactor.set_protocol_factory(Recorder)
    old = reactor.init_connection(ours.fileno(), {}, 1)
    stale = old.fd
    reactor.close_connection(ours.fileno())
    assert old.closed and old.lost == 1
    # The same number, handed over again for another connection.
    new = reactor.init_connection(ours.fileno(), {}, 2)
    assert reactor.get_protocol(stale) is None
    assert reactor.on_write_ready(stale) == reactor.CLOSE
    assert reactor.on_read_ready(stale, reactor.ReactorBuffer(b"x")) == reactor.CLOSE
    reactor.close_connection(stale)
    assert not new.closed and new.lost == 0
    assert reactor.get_protocol(ours.fileno()) is new
    # The bound form of a closed protocol does nothing.
    assert old.signal_write_ready() is False


def test_eof_received_closes_by_default() -> None:
    assert reactor.Protocol().eof_received() == reactor.CLOSE


def test_call_later_returns_a_timer_handle_that_cancels(pair) -> None:
    ours, _peer = pair
    reactor.set_protocol_factory(Recorder)
    proto = reactor.init_connection(ours.fileno(), {})
    before = reactor.time()
    handle = proto.call_later(30, print, "never")
    assert isinstance(handle, reactor.TimerHandle)
    assert before + 30 <= handle.when() <= reactor.time() + 30
    assert not handle.cancelled()
    handle.cancel()
    handle.cancel()
    assert handle.cancelled()
    assert "cancelled" in repr(handle)
    with pytest.raises(TypeError):
        proto.call_later(1, "not callable")
    reactor.close_connection(ours.fileno())
    with pytest.raises(RuntimeError):
        proto.call_later(1, print)


def test_a_factory_that_makes_no_protocol_says_what_app_callable_should_be(pair) -> None:
    ours, _peer = pair

    def index() -> str:  # a Flask view named by app_callable, say
        return "Hello!"

    reactor.set_protocol_factory(index)
    with pytest.raises(TypeError) as raised:
        reactor.init_connection(ours.fileno(), {}, 3)
    message = str(raised.value)
    assert "returned str, not an erlang.reactor.Protocol" in message
    assert "(environ, start_response)" in message and "(scope, receive, send)" in message
