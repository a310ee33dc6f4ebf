"""WSGI applications served by the py_reactor port (PEP 3333).

A context started with ``app_module`` and ``app_callable`` naming a WSGI
application serves HTTP/1.1 on every connection handed to it: the port
parses requests, builds ``environ`` and calls the application on a pool of
threads.  This module holds the Python side of that: the
``wsgi.file_wrapper`` type, the ``wsgi.errors`` stream, and how the kind of
an ``app_callable`` is recognised.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import IO, Any

from ._port import LogStream
from .reactor import Protocol

__all__ = ["FileWrapper", "RequestBodyError", "errors", "interface_of"]

INTERFACES = ("auto", "wsgi", "asgi", "protocol")


class RequestBodyError(OSError):
    """Raised by ``wsgi.input`` when the request body cannot be read.

    The client sent a malformed chunked body or more than ``max_body_size``
    bytes, the connection ended inside the body, or no byte came within
    ``header_timeout``.  An application that lets it through gets the
    matching error response (400 or 413) instead of a 500, and no Python
    error is counted.
    """


class FileWrapper:
    """``wsgi.file_wrapper``: a file-like object returned as the response body.

    The port sends a regular file given this way with ``sendfile(2)`` from its
    current position to its end (or to the response's ``Content-Length``),
    without reading it into Python.  Any other file-like object is read in
    blocks of ``block_size`` bytes.  ``close()`` closes the file-like object.
    """

    def __init__(self, filelike: IO[bytes], block_size: int = 65536) -> None:
        self.filelike = filelike
        self.block_size = block_size
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def __iter__(self) -> Iterator[bytes]:
        while True:
            block = self.filelike.read(self.block_size)
            if not block:
                return
            yield block

    def close(self) -> None:
        """Close the file-like object, if it can be closed."""


errors = LogStream("error", "wsgi.errors")
"""``wsgi.errors``: logged at ``error`` by the VM's logger, one event per write
that completes lines (a logging handler's record, traceback included, is one)."""


def _is_coroutine(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - the method itself is inspected
    return call is not None and inspect.iscoroutinefunction(call)


def _is_factory(obj: Callable[..., Any]) -> bool:
    """Whether ``obj`` is called with no arguments (a protocol factory) rather
    than with two (a WSGI application)."""
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    try:
        signature.bind()
    except TypeError:
        return False
    try:
        signature.bind(None, None)
    except TypeError:
        return True
    return False


def interface_of(app: Any, interface: str = "auto") -> str:
    """Return how the port serves ``app``: ``"protocol"``, ``"wsgi"`` or ``"asgi"``.

    ``interface`` is the ``app_interface`` option.  ``"auto"`` picks
    ``"protocol"`` for a :class:`erlang.reactor.Protocol` subclass or any
    callable taking no arguments (a protocol factory), ``"asgi"`` for a
    coroutine function or an object whose ``__call__`` is one, and ``"wsgi"``
    for any other callable.  Raises ``TypeError`` when ``app`` is not
    callable and ``ValueError`` for an unknown interface.
    """
    if interface not in INTERFACES:
        raise ValueError(f"app_interface must be one of {', '.join(INTERFACES)}, not {interface!r}")
    if not callable(app):
        raise TypeError(f"app_callable {app!r} is not callable")
    if interface == "auto":
        if isinstance(app, type) and issubclass(app, Protocol):
            interface = "protocol"
        elif _is_coroutine(app):
            interface = "asgi"
        elif _is_factory(app):
            interface = "protocol"
        else:
            interface = "wsgi"
    return interface
