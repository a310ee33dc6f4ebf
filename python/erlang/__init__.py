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
``send(dest, term)``
    Sends ``term`` to the Erlang process ``dest``: an ``erlang.Pid``, or the
    name (``str`` or ``Atom``) a process is registered under on the
    context's node.  Callable from any thread.
``Atom``, ``atom(name)``
    An Erlang atom: a ``str`` subclass, so it compares, hashes and formats as
    its name, that goes back to Erlang as the atom.  Atoms from Erlang arrive
    as ``Atom`` (except ``true``, ``false``, ``none``, ``nil`` and
    ``undefined``, which are ``True``, ``False`` and ``None``).
``whereis(name)``
    The ``Pid`` registered under ``name`` on the context's node, or ``None``.
``call(module, function, args=(), timeout=5.0)``
    Runs ``module:function(*args)`` in a fresh Erlang process on the
    context's node and returns its result; raises ``ErlangError`` with the
    Erlang exception, ``TimeoutError`` after ``timeout`` seconds.  The
    calling callback waits, and so does every connection of the context.
``ErlangError``
    What ``call`` raises when the Erlang function raised: ``args`` holds
    ``(kind, reason)``, e.g. ``(Atom('error'), Atom('badarith'))``.
``reactor``
    The protocol API (:mod:`erlang.reactor`).

The names above come from ``_py_reactor``, a module built into the port
program: this package cannot be imported by a plain ``python`` interpreter.
Run Python code that needs it with ``py_reactor_port python ...``.
"""

from __future__ import annotations

try:
    from _py_reactor import Atom, Pid, ReactorBuffer, send, vm_request
except ModuleNotFoundError as exc:  # pragma: no cover - only outside the port
    if exc.name != "_py_reactor":
        raise
    raise ImportError(
        "the 'erlang' package needs the built-in module '_py_reactor', which exists only "
        "inside py_reactor_port; run this code with 'py_reactor_port python ...' or from a "
        "py_reactor_context"
    ) from exc

from . import reactor

__all__ = [
    "Atom",
    "ErlangError",
    "Pid",
    "ReactorBuffer",
    "atom",
    "call",
    "reactor",
    "send",
    "whereis",
]

# Seconds the port waits beyond a call's own timeout for the VM's answer,
# which the VM sends when the timeout expires.
_REPLY_MARGIN = 5.0


class ErlangError(Exception):
    """An Erlang function run by :func:`call` raised: ``args`` is
    ``(kind, reason)``, with ``kind`` one of ``error``, ``exit``, ``throw``."""


def atom(name: str) -> Atom:
    """The Erlang atom ``name`` (at most 255 characters)."""
    if not isinstance(name, str):
        raise TypeError(f"an atom's name is a str, not {type(name).__name__}")
    return Atom(name)


def whereis(name: str) -> Pid | None:
    """The pid registered under ``name`` on the context's node, or None."""
    result = vm_request((Atom("whereis"), atom(name)), _REPLY_MARGIN)
    return _unwrap(result)


def call(module: str, function: str, args: list | tuple = (), timeout: float = 5.0):
    """``module:function(*args)`` run by the VM in a fresh process on the
    context's node, its result converted to Python.

    ``timeout`` is in seconds: past it the Erlang process is killed and
    ``TimeoutError`` raised.  An Erlang exception raises :class:`ErlangError`.
    A result with no Python form raises ``ValueError``.  The callback that
    calls this waits for the answer, and with it every connection of the
    context; the VM must not wait for this context meanwhile (a ``call``
    that calls back into the same context waits until its timeout).
    """
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args is a list or tuple, not {type(args).__name__}")
    if not (isinstance(timeout, (int, float)) and timeout >= 0):
        raise ValueError(f"timeout is a number of seconds, not {timeout!r}")
    request = (Atom("call"), atom(module), atom(function), list(args), int(timeout * 1000))
    return _unwrap(vm_request(request, timeout + _REPLY_MARGIN))


def _unwrap(result):
    match result:
        case ("ok", value):
            return value
        case ("error", "timeout"):
            raise TimeoutError("the Erlang call did not return in time")
        case ("error", ("unconvertible", text)):
            raise ValueError(f"the Erlang result has no Python form: {text}")
        case ("error", (kind, reason)):
            raise ErlangError(kind, reason)
        case _:
            raise ErlangError(Atom("error"), result)
