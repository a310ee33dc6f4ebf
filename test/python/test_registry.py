"""The module functions the port calls: factory, registry, callbacks, close."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

import _py_reactor
import erlang.reactor as reactor


class Recorder(reactor.Protocol):
    """Records every callback; answers with the actions it is told to."""

    instances: ClassVar[list[Recorder]] = []

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []
        self.read_action = reactor.CONTINUE
        self.write_action = reactor.READ_PENDING
        Recorder.instances.append(self)

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        super().connection_made(fd, client_info)
        self.events.append(("made", fd, client_info, reactor.get_protocol(fd) is self))

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        self.events.append(("data", data))
        return self.read_action

    def write_ready(self) -> str:
        self.events.append(("write",))
        return self.write_action

    def connection_lost(self) -> None:
        self.events.append(("lost", self.closed, reactor.get_protocol(self.fd)))


@pytest.fixture(autouse=True)
def forget_instances() -> None:
    Recorder.instances.clear()


def test_no_protocol_is_registered_at_first() -> None:
    assert reactor.get_protocol(3) is None


def test_factory_must_be_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        reactor.set_protocol_factory(42)  # type: ignore[arg-type]


def test_init_connection_without_factory_raises() -> None:
    with pytest.raises(RuntimeError, match="set_protocol_factory"):
        reactor.init_connection(10, {})
    assert reactor.get_protocol(10) is None


def test_factory_can_be_removed() -> None:
    reactor.set_protocol_factory(Recorder)
    reactor.set_protocol_factory(None)
    with pytest.raises(RuntimeError):
        reactor.init_connection(10, {})


def test_init_connection_creates_registers_and_starts_the_protocol() -> None:
    reactor.set_protocol_factory(Recorder)
    info = {"addr": "10.0.0.1", "port": 1234, "type": "tcp"}
    proto = reactor.init_connection(10, info)
    assert isinstance(proto, Recorder)
    assert reactor.get_protocol(10) is proto
    assert proto.fd == 10
    assert proto.client_info is info
    assert proto.closed is False
    # registered before connection_made ran
    assert proto.events == [("made", 10, info, True)]


def test_each_connection_gets_its_own_protocol() -> None:
    reactor.set_protocol_factory(Recorder)
    a = reactor.init_connection(10, {})
    b = reactor.init_connection(11, {})
    assert a is not b
    assert len(Recorder.instances) == 2
    assert reactor.get_protocol(10) is a
    assert reactor.get_protocol(11) is b


def test_factory_is_called_without_arguments() -> None:
    calls: list[tuple[Any, ...]] = []

    def factory(*args: Any, **kwargs: Any) -> reactor.Protocol:
        calls.append((args, kwargs))
        return Recorder()

    reactor.set_protocol_factory(factory)
    reactor.init_connection(10, {})
    assert calls == [((), {})]


def test_lambda_factory() -> None:
    class Tagged(reactor.Protocol):
        def __init__(self, tag: str) -> None:
            super().__init__()
            self.tag = tag

    reactor.set_protocol_factory(lambda: Tagged("custom"))
    proto = reactor.init_connection(10, {})
    assert isinstance(proto, Tagged)
    assert proto.tag == "custom"


def test_protocol_that_skips_super_connection_made_still_has_fd() -> None:
    class Forgetful(reactor.Protocol):
        def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
            pass

    reactor.set_protocol_factory(Forgetful)
    proto = reactor.init_connection(10, {"a": 1})
    assert proto.fd == 10
    assert proto.client_info == {"a": 1}


def test_factory_error_propagates_and_registers_nothing() -> None:
    def broken() -> reactor.Protocol:
        raise ValueError("factory broke")

    reactor.set_protocol_factory(broken)
    with pytest.raises(ValueError, match="factory broke"):
        reactor.init_connection(10, {})
    assert reactor.get_protocol(10) is None


def test_factory_must_return_a_protocol() -> None:
    reactor.set_protocol_factory(object)
    with pytest.raises(TypeError, match=r"not an erlang\.reactor\.Protocol"):
        reactor.init_connection(10, {})
    assert reactor.get_protocol(10) is None


def test_connection_made_error_leaves_the_protocol_for_close_connection() -> None:
    class Failing(Recorder):
        def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
            super().connection_made(fd, client_info)
            raise KeyError("bad client")

    reactor.set_protocol_factory(Failing)
    with pytest.raises(KeyError):
        reactor.init_connection(10, {})
    proto = reactor.get_protocol(10)
    assert isinstance(proto, Failing)
    reactor.close_connection(10)
    assert proto.events[-1] == ("lost", True, None)
    assert reactor.get_protocol(10) is None


def test_new_factory_applies_to_new_connections_only() -> None:
    class Other(reactor.Protocol):
        pass

    reactor.set_protocol_factory(Recorder)
    first = reactor.init_connection(10, {})
    reactor.set_protocol_factory(Other)
    second = reactor.init_connection(11, {})
    assert reactor.get_protocol(10) is first
    assert isinstance(first, Recorder)
    assert isinstance(second, Other)


def test_on_read_ready_passes_the_data_and_returns_the_action() -> None:
    reactor.set_protocol_factory(Recorder)
    proto = reactor.init_connection(10, {})
    data = reactor.ReactorBuffer(b"payload")
    assert reactor.on_read_ready(10, data) == reactor.CONTINUE
    proto.read_action = reactor.WRITE_PENDING
    assert reactor.on_read_ready(10, data) == reactor.WRITE_PENDING
    assert proto.events[1:] == [("data", data), ("data", data)]
    assert proto.events[1][1] is data


def test_on_read_ready_returns_any_action_unchanged() -> None:
    """Validating actions is the port's job (it closes with bad_action)."""
    reactor.set_protocol_factory(Recorder)
    proto = reactor.init_connection(10, {})
    proto.read_action = "bogus"
    assert reactor.on_read_ready(10, reactor.ReactorBuffer(b"x")) == "bogus"


def test_on_read_ready_for_unknown_fd_closes() -> None:
    assert reactor.on_read_ready(99, reactor.ReactorBuffer(b"x")) == reactor.CLOSE


def test_on_write_ready_calls_write_ready() -> None:
    reactor.set_protocol_factory(Recorder)
    proto = reactor.init_connection(10, {})
    proto.write_action = reactor.CONTINUE
    assert reactor.on_write_ready(10) == reactor.CONTINUE
    proto.write_action = reactor.CLOSE
    assert reactor.on_write_ready(10) == reactor.CLOSE
    assert proto.events[1:] == [("write",), ("write",)]


def test_on_write_ready_for_unknown_fd_closes() -> None:
    assert reactor.on_write_ready(99) == reactor.CLOSE


def test_callback_exceptions_propagate() -> None:
    class Raising(reactor.Protocol):
        def data_received(self, data: reactor.ReactorBuffer) -> str:
            raise ZeroDivisionError("in data_received")

        def write_ready(self) -> str:
            raise ZeroDivisionError("in write_ready")

    reactor.set_protocol_factory(Raising)
    reactor.init_connection(10, {})
    with pytest.raises(ZeroDivisionError, match="data_received"):
        reactor.on_read_ready(10, reactor.ReactorBuffer(b"x"))
    with pytest.raises(ZeroDivisionError, match="write_ready"):
        reactor.on_write_ready(10)


def test_close_connection_calls_connection_lost_once() -> None:
    reactor.set_protocol_factory(Recorder)
    proto = reactor.init_connection(10, {})
    reactor.close_connection(10)
    reactor.close_connection(10)
    lost = [event for event in proto.events if event[0] == "lost"]
    # closed is already set and the protocol unregistered when it runs
    assert lost == [("lost", True, None)]
    assert proto.closed is True
    assert reactor.get_protocol(10) is None


def test_close_connection_leaves_other_connections_alone() -> None:
    reactor.set_protocol_factory(Recorder)
    a = reactor.init_connection(10, {})
    b = reactor.init_connection(11, {})
    reactor.close_connection(10)
    assert a.closed is True
    assert b.closed is False
    assert reactor.get_protocol(11) is b
    assert b.events == [("made", 11, {}, True)]


def test_close_connection_of_unknown_fd_does_nothing() -> None:
    assert reactor.close_connection(99) is None


def test_connection_lost_error_propagates_after_unregistering() -> None:
    class Raising(reactor.Protocol):
        lost = 0

        def connection_lost(self) -> None:
            Raising.lost += 1
            raise OSError("cleanup failed")

    reactor.set_protocol_factory(Raising)
    proto = reactor.init_connection(10, {})
    with pytest.raises(OSError, match="cleanup failed"):
        reactor.close_connection(10)
    assert proto.closed is True
    assert reactor.get_protocol(10) is None
    reactor.close_connection(10)
    assert Raising.lost == 1


def test_callbacks_after_close_see_no_protocol() -> None:
    reactor.set_protocol_factory(Recorder)
    proto = reactor.init_connection(10, {})
    reactor.close_connection(10)
    assert reactor.on_read_ready(10, reactor.ReactorBuffer(b"x")) == reactor.CLOSE
    assert reactor.on_write_ready(10) == reactor.CLOSE
    assert [event[0] for event in proto.events] == ["made", "lost"]


def test_fd_handed_over_again_replaces_the_stale_protocol() -> None:
    reactor.set_protocol_factory(Recorder)
    stale = reactor.init_connection(10, {})
    with pytest.warns(RuntimeWarning, match="fd 10"):
        fresh = reactor.init_connection(10, {})
    assert stale.closed is True
    assert stale.events[-1] == ("lost", True, None)
    assert reactor.get_protocol(10) is fresh
    assert fresh.closed is False


def test_signal_write_ready_delegates_to_the_port(monkeypatch) -> None:
    calls: list[tuple[int, int | None]] = []

    def fake(fd: int, conn_id: int | None = None) -> bool:
        calls.append((fd, conn_id))
        return True

    monkeypatch.setattr(_py_reactor, "signal_write_ready", fake)
    assert reactor.signal_write_ready(12) is True
    # A descriptor the port gave a protocol carries its connection's id.
    assert reactor.signal_write_ready(reactor.ConnectionFd(12, 7)) is True
    assert calls == [(12, None), (12, 7)]


def test_signal_write_ready_is_false_without_such_connection() -> None:
    # No connection was handed to this process: the port knows no fd.
    assert reactor.signal_write_ready(12345) is False
