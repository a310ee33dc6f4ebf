"""Protocols used by the Erlang test suites (test/erlang/*_SUITE.erl).

A context selects one with ``setup_code``::

    import test_protocols
    test_protocols.use("Echo")

``client_info`` may carry ``test_pid`` (an Erlang pid) and ``tag``: the
protocol then sends ``("made", tag)`` from ``connection_made`` and
``("lost", tag)`` from ``connection_lost`` to that pid.

Input starting with one of these words does something else than echo:

- ``crash``: dereferences NULL through ctypes (the port dies with SIGSEGV);
- ``raise``: raises ``RuntimeError("asked to raise")``;
- ``bad_action``: returns ``42`` instead of an action;
- ``close``: returns ``"close"``;
- ``info``: answers with ``repr`` of the client info's keys and addr/port/type.
"""

import ctypes

import erlang
import erlang.reactor as reactor

NOT_CALLABLE = 1


class Echo(reactor.Protocol):
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self._notify("made")

    def _notify(self, what):
        pid = self.client_info.get("test_pid")
        if pid is not None:
            erlang.send(pid, (what, self.client_info.get("tag")))

    def data_received(self, data):
        if data.startswith(b"crash"):
            ctypes.string_at(0)
        if data.startswith(b"raise"):
            raise RuntimeError("asked to raise")
        if data.startswith(b"bad_action"):
            return 42
        if data.startswith(b"close"):
            return "close"
        if data.startswith(b"info"):
            info = self.client_info
            keys = sorted(str(k) for k in info)
            text = repr((keys, info.get("addr"), info.get("port"), info.get("type"),
                         info.get("reactor_pid") is not None))
            self.write_buffer.extend(text.encode())
            return "write_pending"
        self.write_buffer.extend(self.transform(bytes(data)))
        return "write_pending"

    def transform(self, data):
        return data

    def connection_lost(self):
        self._notify("lost")


class Upper(Echo):
    def transform(self, data):
        return data.upper()


def use(name):
    reactor.set_protocol_factory(globals()[name])
