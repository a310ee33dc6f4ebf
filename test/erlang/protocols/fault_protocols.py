"""Protocols used by test/erlang/py_reactor_fault_SUITE.erl.

A context selects one with ``setup_code``::

    import fault_protocols
    fault_protocols.use("Echo")

``client_info`` may carry ``test_pid`` (an Erlang pid) and ``tag``: the
protocol then sends ``("made", tag)`` from ``connection_made`` and
``("lost", tag)`` from ``connection_lost`` to that pid, and ``("stuck", tag)``
just before ``spin`` or ``sleep`` blocks.

``Echo`` echoes what it receives, except input starting with:

- ``crash``: dereferences NULL through ctypes (the port dies with SIGSEGV);
- ``exit N``: ``os._exit(N)``;
- ``spin``: loops forever in ``data_received``;
- ``sleep``: ``time.sleep(600)`` in ``data_received``;
- ``close``: returns ``"close"``.

Every protocol keeps ``ACTIVE`` (connections made and not yet lost) and
``PEAK`` (the most ``ACTIVE`` ever was) up to date.

``Faulty`` fails the way ``client_info["fault"]`` says (see ``Faulty``), and
the factory fails once, for the next connection, after ``fail_factory(how)``.
"""

import ctypes
import os
import resource
import time

import erlang
import erlang.reactor as reactor

ACTIVE = 0
PEAK = 0


class Echo(reactor.Protocol):
    def connection_made(self, fd, client_info):
        global ACTIVE, PEAK
        super().connection_made(fd, client_info)
        ACTIVE += 1
        PEAK = max(PEAK, ACTIVE)
        self._notify("made")

    def _notify(self, what):
        pid = self.client_info.get("test_pid")
        if pid is not None:
            erlang.send(pid, (what, self.client_info.get("tag")))

    def data_received(self, data):
        if data.startswith(b"crash"):
            # No core file for a crash on purpose.
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            ctypes.string_at(0)
        if data.startswith(b"exit "):
            os._exit(int(bytes(data[5:]).strip()))
        if data.startswith(b"spin"):
            self._notify("stuck")
            while True:
                pass
        if data.startswith(b"sleep"):
            self._notify("stuck")
            time.sleep(600)
        if data.startswith(b"close"):
            return "close"
        self.write_buffer.extend(data)
        return "write_pending"

    def connection_lost(self):
        global ACTIVE
        ACTIVE -= 1
        self._notify("lost")


class Faulty(Echo):
    """Fails as ``client_info["fault"]`` says; echoes when it has no ``fault``.

    - ``made_raise``: ``connection_made`` raises;
    - ``data_raise``: ``data_received`` raises;
    - ``write_raise``: ``data_received`` asks for ``write_ready``, which raises;
    - ``lost_raise``: input closes the connection, ``connection_lost`` raises;
    - ``data_unknown``, ``data_wrong_type``, ``data_none``: ``data_received``
      returns ``"explode"``, ``b"continue"``, ``None``;
    - ``write_wrong_type``, ``write_none``: ``write_ready`` returns ``42``,
      ``None``.

    Exception messages are ``fault-in-<fault>``.
    """

    def fault(self):
        return self.client_info.get("fault")

    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        if self.fault() == "made_raise":
            raise RuntimeError("fault-in-made_raise")

    def data_received(self, data):
        fault = self.fault()
        if fault == "data_raise":
            raise ValueError("fault-in-data_raise")
        if fault == "data_unknown":
            return "explode"
        if fault == "data_wrong_type":
            return b"continue"
        if fault == "data_none":
            return None
        if fault == "lost_raise":
            return "close"
        return super().data_received(data)

    def write_ready(self):
        fault = self.fault()
        if fault == "write_raise":
            raise KeyError("fault-in-write_raise")
        if fault == "write_wrong_type":
            return 42
        if fault == "write_none":
            return None
        return super().write_ready()

    def connection_lost(self):
        super().connection_lost()
        if self.fault() == "lost_raise":
            raise RuntimeError("fault-in-lost_raise")


_factory_fault = None


def fail_factory(how):
    """Makes the factory fail for the next connection: ``"raise"`` raises,
    ``"none"`` returns ``None`` instead of a protocol."""
    global _factory_fault
    _factory_fault = how


def faulty_factory():
    global _factory_fault
    how, _factory_fault = _factory_fault, None
    if how == "raise":
        raise RuntimeError("fault-in-factory_raise")
    if how == "none":
        return None
    return Faulty()


def use(name):
    if name == "Faulty":
        reactor.set_protocol_factory(faulty_factory)
    else:
        reactor.set_protocol_factory(globals()[name])
