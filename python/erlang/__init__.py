"""The Python side of py_reactor.

This package runs inside ``py_reactor_port``, the port program that an Erlang
VM starts for each ``py_reactor_context``.  The VM accepts connections and hands
their file descriptors to the port; the port polls them and calls the protocol
objects defined with :mod:`erlang.reactor`::

    import erlang.reactor as reactor

    class EchoProtocol(reactor.Protocol):
        def data_received(self, data):
            self.write_buffer.extend(data)
            return reactor.WRITE_PENDING

    reactor.set_protocol_factory(EchoProtocol)

Names exported here:

``Pid``
    An Erlang process identifier, as received from the VM.  Opaque, hashable,
    comparable with ``==``; it converts back to the same pid.
``ReactorBuffer``
    The type of the data passed to
    :meth:`erlang.reactor.Protocol.data_received`: a subclass of ``bytes``
    whose storage the port reads into (no copy), with one method of its own,
    ``memoryview()``.
``send(pid, term)``
    Sends ``term`` to the Erlang process ``pid``.  Callable from any thread.
``reactor``
    The protocol API (:mod:`erlang.reactor`).

The names above come from ``_py_reactor``, a module built into the port
program: this package cannot be imported by a plain ``python`` interpreter.
Run Python code that needs it with ``py_reactor_port python ...``.
"""

from __future__ import annotations

try:
    from _py_reactor import Pid, ReactorBuffer, send
except ModuleNotFoundError as exc:  # pragma: no cover - only outside the port
    if exc.name != "_py_reactor":
        raise
    raise ImportError(
        "the 'erlang' package needs the built-in module '_py_reactor', which exists only "
        "inside py_reactor_port; run this code with 'py_reactor_port python ...' or from a "
        "py_reactor_context"
    ) from exc

from . import reactor

__all__ = ["Pid", "ReactorBuffer", "reactor", "send"]
