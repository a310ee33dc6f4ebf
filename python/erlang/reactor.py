"""Protocols run by the py_reactor port on descriptors handed over by Erlang.

The Erlang VM accepts connections and hands each descriptor to a
``py_reactor_context``.  Its port program polls the descriptor and calls the
protocol object that the *protocol factory* made for it:

- on hand-off, ``init_connection(fd, client_info)`` creates the protocol and
  calls :meth:`Protocol.connection_made`; read interest is armed afterwards;
- when the descriptor is readable, the port reads from it itself and calls
  :meth:`Protocol.data_received` with the bytes as a :class:`ReactorBuffer`
  (a ``bytes`` subclass the port read into, without a copy);
- when it is writable (after ``"write_pending"``), :meth:`Protocol.write_ready`;
- when the peer half-closes (a read returns no bytes),
  :meth:`Protocol.eof_received`, which may still answer;
- when a timer set with :meth:`Protocol.call_later` is due, its callback;
- when the connection ends for any reason, ``close_connection(fd)`` calls
  :meth:`Protocol.connection_lost` once.

Connections are not descriptor numbers: once a connection has closed, its
number may belong to the next one.  The ``fd`` the port gives a protocol (the
argument of ``connection_made``, :attr:`Protocol.fd`) is a
:class:`ConnectionFd`, an ``int`` that remembers its connection, and the
functions that take a descriptor (:func:`signal_write_ready`,
:func:`get_protocol`, :func:`close_connection`, :func:`on_read_ready`,
:func:`on_write_ready`) refuse one whose connection has gone.  A plain ``int``
cannot be told apart: it means whatever connection has that number now.
:meth:`Protocol.signal_write_ready` is bound to its connection and never
reaches another.

``data_received`` and ``write_ready`` return an *action* that says what to wait
for next.  Interest is one-shot: nothing more happens on a connection until
the action has armed it again.

==================  ==================================================
action              what the port does
==================  ==================================================
``"continue"``      waits again for what just fired (read or write)
``"read_pending"``  waits until the descriptor is readable
``"write_pending"`` waits until the descriptor is writable
``"async_pending"`` waits for nothing until :func:`signal_write_ready`
``"close"``         calls ``connection_lost()`` and closes the descriptor
==================  ==================================================

Any other return value closes the connection with a ``bad_action`` reason, and
an exception raised by the factory or by a callback closes the connection it
belongs to (``connection_lost`` still runs); the context goes on serving.

The registry of protocols and the factory are module globals.  Every context
runs in its own port process, so they belong to one context.

A minimal protocol::

    import erlang.reactor as reactor

    class EchoProtocol(reactor.Protocol):
        def data_received(self, data):
            self.write_buffer.extend(data)
            return reactor.WRITE_PENDING

    reactor.set_protocol_factory(EchoProtocol)
"""

from __future__ import annotations

import errno
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import _py_reactor
from _py_reactor import ReactorBuffer, TimerHandle

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "ASYNC_PENDING",
    "CLOSE",
    "CONTINUE",
    "READ_PENDING",
    "WRITE_PENDING",
    "ConnectionFd",
    "Protocol",
    "ProtocolFactory",
    "ReactorBuffer",
    "TimerHandle",
    "close_connection",
    "get_protocol",
    "init_connection",
    "on_read_ready",
    "on_write_ready",
    "set_protocol_factory",
    "signal_write_ready",
    "time",
]

CONTINUE: Final = "continue"
"""Wait again for the event that just fired (read after a read, write after a write)."""

WRITE_PENDING: Final = "write_pending"
"""Wait until the descriptor is writable, then call :meth:`Protocol.write_ready`."""

READ_PENDING: Final = "read_pending"
"""Wait until the descriptor is readable, then call :meth:`Protocol.data_received`."""

CLOSE: Final = "close"
"""Close the connection: ``connection_lost()`` is called and the descriptor closed."""

ASYNC_PENDING: Final = "async_pending"
"""Wait for nothing until :func:`signal_write_ready` is called for the descriptor."""


class ConnectionFd(int):
    """A connection's descriptor number that remembers its connection.

    Compares, hashes and converts like the ``int`` it is (``os.write``,
    ``socket.socket(fileno=...)`` accept it), and pickles as a plain ``int``.
    ``conn_id`` is the connection's id, the ``ConnId`` the VM knows it by
    (``None`` for a connection made outside the port, in tests).  The
    functions of this module that take a descriptor refuse a
    ``ConnectionFd`` whose connection has closed, even when its number
    already belongs to another connection.
    """

    conn_id: int | None

    def __new__(cls, fd: int, conn_id: int | None = None) -> ConnectionFd:
        self = super().__new__(cls, fd)
        self.conn_id = conn_id
        return self

    def __reduce__(self) -> tuple[type[int], tuple[int]]:
        return (int, (int(self),))


def _conn_id(fd: int) -> int | None:
    return getattr(fd, "conn_id", None)


class Protocol:
    """Base class for reactor protocols.

    The factory given to :func:`set_protocol_factory` is called with no
    arguments once per connection, so a subclass that defines ``__init__``
    takes no arguments and calls ``super().__init__()``.

    Attributes:
        fd: the connection's file descriptor; ``-1`` until the connection is made.
        client_info: what Erlang said about the connection (for TCP usually
            ``addr``, ``port`` and ``type``); empty until the connection is made.
        write_buffer: outgoing bytes; the default :meth:`write_ready` sends them.
        closed: ``True`` once the connection has been closed; from then on
            :meth:`read` returns ``b''`` and :meth:`write` raises ``OSError``.
        conn_id: the connection's id, as the VM knows it (the ``ConnId`` of
            ``{closed, ConnId, Reason}``); ``None`` until the connection is made.
    """

    fd: int
    client_info: dict[Any, Any]
    write_buffer: bytearray
    closed: bool
    conn_id: int | None

    def __init__(self) -> None:
        self.fd = -1
        self.client_info = {}
        self.write_buffer = bytearray()
        self.closed = False
        self.conn_id = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__qualname__} fd={self.fd} {state}>"

    # Lifecycle: called by the port.

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        """Called once, when the descriptor ``fd`` has been handed over.

        The protocol is already registered under ``fd`` (so :func:`get_protocol`
        finds it) and ``fd`` is non-blocking.  The default stores ``fd``,
        ``client_info`` and the connection's id that ``fd`` carries (so that a
        protocol that hands its connection to another protocol object, calling
        its ``connection_made(fd, client_info)``, gives it the same
        connection); an override should call ``super().connection_made()``.
        If this raises, the connection is closed and ``connection_lost`` is
        called.
        """
        self.fd = fd
        self.client_info = client_info
        self.conn_id = getattr(fd, "conn_id", self.conn_id)

    def data_received(self, data: ReactorBuffer) -> str:
        """Called with the bytes read from the descriptor; returns an action.

        ``data`` is a :class:`ReactorBuffer`, a subclass of ``bytes`` that the
        port read into without any copy: a ``bytes`` in every respect (every
        method, operator and library that takes ``bytes``), immutable, and
        safe to keep after returning.  It is never empty (end of file closes
        the connection instead).

        The default discards the data and returns ``"continue"`` (read again),
        like :meth:`asyncio.Protocol.data_received`, which ignores data too.
        """
        return CONTINUE

    def write_ready(self) -> str:
        """Called when the descriptor is writable (after ``"write_pending"``).

        The default writes as much of :attr:`write_buffer` as the socket
        takes, removes what was written, and returns ``"continue"`` (wait for
        writability again) while data remains, ``"read_pending"`` once the
        buffer is empty.
        """
        if not self.write_buffer:
            return READ_PENDING
        written = self.write(self.write_buffer)
        del self.write_buffer[:written]
        if self.write_buffer:
            return CONTINUE
        return READ_PENDING

    def eof_received(self) -> str:
        """Called when the peer has half-closed: a read returned no bytes.

        Nothing more will be read, but the connection may still be written
        to.  Return ``"close"`` (the default) to close it (reason ``eof``), or
        ``"write_pending"`` to send a last answer first: :meth:`write_ready`
        is then called as usual, and the connection closes (reason ``eof``)
        once the protocol asks to read again (``"read_pending"``, as the
        default :meth:`write_ready` does when its buffer is empty) or
        returns ``"close"``.  ``"async_pending"`` waits for
        :meth:`signal_write_ready`.  Like :meth:`asyncio.Protocol.eof_received`.
        """
        return CLOSE

    def connection_lost(self) -> None:
        """Called once when the connection has ended, whatever the reason.

        By then :attr:`closed` is ``True`` and the protocol is no longer
        registered; the descriptor is closed by the port right afterwards.
        The default does nothing; override it to release resources.
        """

    # Helpers for protocols.

    def read(self, size: int = 65536) -> bytes:
        """Read at most ``size`` bytes from the descriptor with one ``read(2)``.

        Returns ``b''`` at end of file, on an error, when nothing can be read
        without blocking, and once the connection is closed.  Data comes as a
        :class:`ReactorBuffer` (a ``bytes``), read into without a copy, as for
        :meth:`data_received`; ``MemoryError`` when ``size`` bytes cannot be
        allocated.  The port counts the bytes in its statistics.
        """
        if self.closed or self.fd < 0:
            return b""
        return _py_reactor.read(self.fd, size, self.conn_id)

    def write(self, data: Buffer) -> int:
        """Write bytes-like ``data`` to the descriptor with one ``write(2)``.

        Returns the number of bytes written, which may be fewer than
        ``len(data)``, and ``0`` when the socket would block.  Raises
        ``OSError`` on any other error (a reset or closed peer, say), and with
        ``EBADF`` once the connection is closed: its descriptor number may
        already belong to another connection.  A callback that lets this
        ``OSError`` through closes its connection as ``{error, Errno}``, like
        a failed read, not as a Python error.  The port counts the bytes in
        its statistics.
        """
        if self.closed or self.fd < 0:
            raise OSError(errno.EBADF, f"{type(self).__qualname__}: connection is closed")
        return _py_reactor.write(self.fd, data, self.conn_id)

    def signal_write_ready(self) -> bool:
        """Arm write interest for this connection (after ``"async_pending"``).

        :meth:`write_ready` is then called when the descriptor is writable.
        Callable from any thread.  Bound to this connection: once it has
        closed, this returns ``False`` and does nothing, even if its
        descriptor number already belongs to another connection.
        """
        if self.closed or self.fd < 0:
            return False
        return _py_reactor.signal_write_ready(self.fd, self.conn_id)

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object
    ) -> TimerHandle:
        """Call ``callback(*args)`` in the port's loop after ``delay`` seconds.

        Returns a :class:`TimerHandle` (asyncio's shape: ``cancel()``,
        ``cancelled()``, ``when()`` in seconds of :func:`time`).  The callback
        runs in the loop thread, like the other callbacks, and may return
        ``None`` or an action for this connection (``"write_pending"`` to
        send what it put in :attr:`write_buffer`, ``"close"``, ...;
        ``"continue"`` changes nothing).  An exception from it closes this
        connection, as from any callback.  The timer is cancelled when the
        connection closes.  A negative delay counts as zero; a timer set with
        delay zero runs on the loop's next turn, after the current callback.

        Raises ``RuntimeError`` once the connection is closed, ``TypeError``
        when ``callback`` is not callable.  Callable from any thread.  A
        protocol made outside the port (``conn_id`` is ``None``, in tests)
        gets a timer that belongs to no connection.
        """
        if self.closed or self.fd < 0:
            raise RuntimeError(f"{self!r}: call_later on a connection that is not open")
        if self.conn_id is None:
            return _py_reactor.call_later(delay, callback, args)
        return _py_reactor.call_later(delay, callback, args, int(self.fd), self.conn_id)


ProtocolFactory = Callable[[], Protocol]
"""Anything that returns a new :class:`Protocol` when called with no arguments."""

_factory: ProtocolFactory | None = None
_protocols: dict[int, Protocol] = {}


def set_protocol_factory(factory: ProtocolFactory | None) -> None:
    """Set what creates the protocol of each new connection.

    ``factory`` is called with no arguments once per hand-off: usually a
    :class:`Protocol` subclass, or for instance ``lambda: MyProtocol(arg)``.
    Connections already made keep their protocol.  ``None`` removes the
    factory, so that hand-offs fail until another one is set.
    """
    global _factory
    if factory is not None and not callable(factory):
        raise TypeError(f"protocol factory must be callable, not {type(factory).__name__}")
    _factory = factory


def _registered(fd: int) -> Protocol | None:
    """The protocol registered under ``fd``, unless ``fd`` is a
    :class:`ConnectionFd` of another connection."""
    protocol = _protocols.get(fd)
    conn_id = _conn_id(fd)
    if protocol is not None and conn_id is not None and protocol.conn_id != conn_id:
        return None
    return protocol


def get_protocol(fd: int) -> Protocol | None:
    """Return the protocol of the open connection on ``fd``, or ``None``.

    For a :class:`ConnectionFd` (``protocol.fd``), ``None`` once that
    connection has closed, even if its number belongs to another one now.
    """
    return _registered(fd)


def time() -> float:
    """The clock of timers (:meth:`TimerHandle.when`): ``time.monotonic()``."""
    return _py_reactor.time()


def init_connection(fd: int, client_info: dict[Any, Any], conn_id: int | None = None) -> Protocol:
    """Create, register and start the protocol of a handed-over descriptor.

    Called by the port on hand-off, with the connection's id.  Calls the
    factory, sets the new protocol's ``fd`` (a :class:`ConnectionFd`),
    ``conn_id`` and ``client_info``, registers it under ``fd`` and only then
    calls ``connection_made(fd, client_info)``; returns the protocol.

    Raises ``RuntimeError`` when no factory is set, and ``TypeError`` when the
    factory returns something that is not a :class:`Protocol`; nothing is
    registered then.  If ``connection_made`` raises, the protocol stays
    registered and the exception propagates: the port then calls
    :func:`close_connection`, so that ``connection_lost`` runs.

    A protocol still registered under ``fd`` belongs to a descriptor that has
    been closed behind the port's back (the number could not be reused
    otherwise): it is closed first, with a ``RuntimeWarning``.
    """
    factory = _factory
    if factory is None:
        raise RuntimeError(
            "no protocol factory is set: call erlang.reactor.set_protocol_factory() "
            "in setup_code or in the app_module before handing off connections"
        )
    protocol = factory()
    if not isinstance(protocol, Protocol):
        raise TypeError(
            f"protocol factory {factory!r} returned {type(protocol).__qualname__}, "
            "not an erlang.reactor.Protocol (with app_interface auto, an app_callable "
            "that takes no arguments is a protocol factory; a WSGI application takes "
            "(environ, start_response), an ASGI one (scope, receive, send))"
        )
    stale = _protocols.get(fd)
    if stale is not None:
        warnings.warn(
            f"fd {fd} was handed over again while {stale!r} was registered; closing it",
            RuntimeWarning,
            stacklevel=2,
        )
        close_connection(int(fd))
    fd = ConnectionFd(fd, conn_id)
    protocol.fd = fd
    protocol.conn_id = conn_id
    protocol.client_info = client_info
    _protocols[fd] = protocol
    protocol.connection_made(fd, client_info)
    return protocol


def on_read_ready(fd: int, data: ReactorBuffer | None = None) -> str:
    """Pass ``data`` read from ``fd`` to its protocol; return the action.

    Calls ``data_received(data)``.  Returns ``"close"`` when no protocol is
    registered under ``fd`` (or ``fd`` names a connection that has closed).
    The port always passes the data it read; called with ``fd`` alone (as
    code written for the original project does), the protocol reads for
    itself with :meth:`Protocol.read`, and ``"close"`` is returned without
    calling ``data_received`` when that gives ``b''``.
    """
    protocol = _registered(fd)
    if protocol is None:
        return CLOSE
    if data is None:
        chunk = protocol.read()
        if not chunk:
            return CLOSE
        data = ReactorBuffer(chunk)
    return protocol.data_received(data)


def on_write_ready(fd: int) -> str:
    """Tell the protocol of ``fd`` that it may write; return the action.

    Calls ``write_ready()``.  Returns ``"close"`` when no protocol is
    registered under ``fd`` (or ``fd`` names a connection that has closed).
    """
    protocol = _registered(fd)
    if protocol is None:
        return CLOSE
    return protocol.write_ready()


def close_connection(fd: int) -> None:
    """End the connection on ``fd``: unregister its protocol, mark it closed and
    call its ``connection_lost()``.

    Called by the port whenever a connection ends; the port closes the
    descriptor afterwards.  Does nothing when no protocol is registered under
    ``fd``, so ``connection_lost`` runs at most once, nor when ``fd`` is a
    :class:`ConnectionFd` of a connection that has closed already (its
    number may belong to another connection now).  An exception from
    ``connection_lost`` propagates after the protocol has been unregistered.
    """
    protocol = _registered(fd)
    if protocol is None:
        return
    del _protocols[fd]
    protocol.closed = True
    protocol.connection_lost()


def signal_write_ready(fd: int) -> bool:
    """Arm write interest for the connection on ``fd``.

    Used after a callback returned ``"async_pending"``, typically once another
    thread has filled the protocol's :attr:`~Protocol.write_buffer`:
    :meth:`Protocol.write_ready` is then called when the descriptor is
    writable.  Callable from any thread.  Returns ``False`` when no connection
    of this context has that descriptor, and when ``fd`` is a
    :class:`ConnectionFd` (``protocol.fd``) of a connection that has closed,
    even if its number belongs to another connection by now.  A plain ``int``
    cannot be checked that way: prefer :meth:`Protocol.signal_write_ready`.
    """
    return _py_reactor.signal_write_ready(fd, _conn_id(fd))
