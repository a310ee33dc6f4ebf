"""ASGI applications served by the py_reactor port (ASGI 3.0, HTTP and lifespan).

A context started with ``app_interface => asgi`` (or ``auto`` and a
coroutine function as ``app_callable``) serves HTTP/1.1 on every connection
handed to it.  The port parses each request in Rust, builds the ``http``
scope and starts the application as a task on the context's asyncio loop
(:mod:`erlang.aio`), with native ``receive`` and ``send`` callables
(``src/python/asgi.rs``).  This module holds the Python side: the task that
runs one request, the ``lifespan`` protocol, and the exception ``send``
raises once the client has gone.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import _py_reactor

from . import aio

__all__ = ["ClientDisconnected", "Lifespan", "cancel_requests", "pending_requests", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class ClientDisconnected(OSError):
    """Raised by ``send`` when the client is gone (ASGI HTTP spec 2.4).

    An application that lets it through is not counted as failing: the
    connection is simply closed.
    """


async def serve(app: App, scope: Scope, receive: Receive, send: Send, conn: Any) -> None:
    """``app(scope, receive, send)`` for one request; ``conn.finished`` is
    told how it ended.  The port runs it as a task on the context's loop
    whose first step is taken at once (``ReactorEventLoop.start_task``), so a
    request answered without waiting costs no loop iteration."""
    try:
        await app(scope, receive, send)
    except BaseException as exc:
        conn.finished(exc)
        if isinstance(exc, asyncio.CancelledError):
            raise
    else:
        conn.finished(None)


def _request_tasks() -> list[asyncio.Task[Any]]:
    code = serve.__code__
    return [
        task
        for task in asyncio.all_tasks(aio.get_loop())
        if getattr(task.get_coro(), "cr_code", None) is code
    ]


def pending_requests() -> int:
    """How many request tasks are not done."""
    return len(_request_tasks())


def cancel_requests() -> int:
    """Cancel every request task (the context is stopping); returns how many."""
    tasks = _request_tasks()
    for task in tasks:
        task.cancel()
    return len(tasks)


class Lifespan:
    """The ``lifespan`` scope of one application.

    ``mode`` is the context's ``lifespan`` option: ``"on"`` (an application
    that fails on the scope fails the start), ``"auto"`` (one that raises
    before sending anything is taken not to support lifespan, as uvicorn
    does) or ``"off"`` (the scope is never sent).  :attr:`state` is the dict
    the application may fill during startup; each request's scope gets a
    shallow copy of it.
    """

    def __init__(self, app: App, mode: str) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be auto, on or off, not {mode!r}")
        self.app = app
        self.mode = mode
        self.state: dict[str, Any] = {}
        self.supported = mode != "off"
        self._events: asyncio.Queue[Message] | None = None
        self._started: asyncio.Future[str | None] | None = None
        self._stopped: asyncio.Future[str | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._sent = False

    def startup(self) -> asyncio.Future[str | None]:
        """Start the scope and send ``lifespan.startup``.  The future gives
        ``None`` once startup is complete (or lifespan is unsupported in
        ``auto`` mode), or the failure's message."""
        loop = aio.get_loop()
        self._started = loop.create_future()
        self._stopped = loop.create_future()
        if not self.supported:
            self._started.set_result(None)
            return self._started
        self._events = asyncio.Queue()
        self._events.put_nowait({"type": "lifespan.startup"})
        self._task = asyncio.Task(self._main(), loop=loop)
        return self._started

    def shutdown(self) -> asyncio.Future[str | None] | None:
        """Send ``lifespan.shutdown``; the future gives ``None`` once the
        application completed it, or the failure's message.  ``None`` when
        there is nothing to shut down."""
        if not self.supported or self._task is None or self._task.done():
            return None
        assert self._events is not None and self._stopped is not None
        self._events.put_nowait({"type": "lifespan.shutdown"})
        return self._stopped

    async def _receive(self) -> Message:
        assert self._events is not None
        return await self._events.get()

    async def _send(self, message: Message) -> None:
        self._sent = True
        kind = message.get("type")
        started, stopped = self._started, self._stopped
        assert started is not None and stopped is not None
        if kind == "lifespan.startup.complete" and not started.done():
            started.set_result(None)
        elif kind == "lifespan.startup.failed" and not started.done():
            started.set_result(str(message.get("message") or "lifespan.startup.failed"))
        elif kind == "lifespan.shutdown.complete" and not stopped.done():
            stopped.set_result(None)
        elif kind == "lifespan.shutdown.failed" and not stopped.done():
            stopped.set_result(str(message.get("message") or "lifespan.shutdown.failed"))
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        started, stopped = self._started, self._stopped
        assert started is not None and stopped is not None
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
            if not self._sent and self.mode == "auto" and not started.done():
                self.supported = False
                _py_reactor.log(
                    "info",
                    "ASGI 'lifespan' protocol appears unsupported by the application; "
                    f"serving without it:\n{text}",
                )
                started.set_result(None)
            else:
                _py_reactor.log("error", f"ASGI lifespan failed:\n{text}")
                message = f"{type(exc).__name__}: {exc}"
                if not started.done():
                    started.set_result(message)
                if not stopped.done():
                    stopped.set_result(message)
        finally:
            # An application that returns from the scope without answering
            # has no lifespan to speak of.
            if not started.done():
                started.set_result(None)
            if not stopped.done():
                stopped.set_result(None)
