"""ASGI applications served by test/erlang/py_reactor_asgi_SUITE.erl.

Each context is its own OS process, so the counters below are per context;
the suite reads them with ``py_reactor_context:call/4``. Paths of marker
files come in the query string (``?path=...``) or, for the lifespan
shutdown, through ``set_shutdown_marker/1`` before the context stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

# Lifespan scopes this interpreter's applications were called with.
LIFESPAN_CALLS = 0
# Written "shutdown" by a lifespan shutdown, when set.
SHUTDOWN_MARKER: str | None = None


def lifespan_calls() -> int:
    return LIFESPAN_CALLS


def set_shutdown_marker(path: str) -> None:
    global SHUTDOWN_MARKER
    SHUTDOWN_MARKER = path


def _mark_shutdown() -> None:
    if SHUTDOWN_MARKER is not None:
        with open(SHUTDOWN_MARKER, "w", encoding="utf-8") as f:
            f.write("shutdown")


def _append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


def _query(scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def _answer(send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def _http(scope, receive, send) -> None:
    path = scope["path"]
    if path == "/hello":
        await _answer(send, 200, b"Hello, world!")
    elif path == "/echo":
        body = await _read_body(receive)
        await _answer(send, 200, scope["method"].encode() + b" " + body)
    elif path == "/state":
        await _answer(send, 200, scope["state"]["greeting"].encode())
    elif path == "/sleep":
        await asyncio.sleep(1)
        await _answer(send, 200, b"slept")
    elif path == "/raise":
        raise ZeroDivisionError("before the response started")
    elif path == "/wait_disconnect":
        # The request's body first, then nothing until the client goes.
        marker = _query(scope)["path"]
        await _read_body(receive)
        _append(marker, "waiting")
        message = await receive()
        _append(marker, message["type"])
    elif path == "/hang":
        marker = _query(scope)["path"]
        try:
            _append(marker, "started")
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            _append(marker, "cancelled")
            raise
        finally:
            _append(marker, "finally")
    else:
        await _answer(send, 404, b"not found")


async def _lifespan(scope, receive, send, startup) -> None:
    global LIFESPAN_CALLS
    LIFESPAN_CALLS += 1
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            failure = startup(scope)
            if failure is None:
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
        elif message["type"] == "lifespan.shutdown":
            _mark_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _greet(scope) -> None:
    scope["state"]["greeting"] = "hello from lifespan"


async def raw_app(scope, receive, send) -> None:
    """A bare ASGI 3.0 application with lifespan support: its startup puts
    ``greeting`` into the state every request's scope gets."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send, _greet)
    else:
        await _http(scope, receive, send)


async def failing_startup_app(scope, receive, send) -> None:
    """Its lifespan startup fails with a message."""
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send, lambda _scope: "database unreachable")
    else:
        await _http(scope, receive, send)


async def raising_startup_app(scope, receive, send) -> None:
    """Its lifespan startup raises."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("cannot open the pool")
    await _http(scope, receive, send)


async def no_lifespan_app(scope, receive, send) -> None:
    """An application without lifespan support, as many are: it raises on
    any scope but ``http``, after counting it."""
    global LIFESPAN_CALLS
    if scope["type"] != "http":
        LIFESPAN_CALLS += 1
        raise ValueError(f"unsupported scope type {scope['type']!r}")
    await _http(scope, receive, send)


class CallableApp:
    """An ASGI application that is an object whose ``__call__`` is a
    coroutine function (``auto`` must see it as ASGI)."""

    async def __call__(self, scope, receive, send) -> None:
        await raw_app(scope, receive, send)


callable_app = CallableApp()


# ---- Starlette --------------------------------------------------------------


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello from Starlette")


async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    return PlainTextResponse(f"{request.method} {body.decode()}")


async def state(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.state.greeting)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    global LIFESPAN_CALLS
    LIFESPAN_CALLS += 1
    yield {"greeting": "hello from Starlette's lifespan"}
    _mark_shutdown()


starlette_app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/echo", echo, methods=["POST"]),
        Route("/state", state),
    ],
    lifespan=lifespan,
)
