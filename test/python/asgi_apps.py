"""ASGI applications the HTTP tests serve (test/port/asgi.rs).

``raw_app`` speaks ASGI by hand, route by route; ``starlette_app`` is a
Starlette application with a lifespan; the others exercise the ``lifespan``
scope.  ``MARKERS``, when set (from ``setup_code``), is a directory where
the applications leave files the tests look for: what the port cannot
report otherwise (a ``finally`` block that ran, a shutdown that completed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

MARKERS: str | None = None
"""A directory for marker files, set by the test's ``setup_code``."""

disconnects: list[str] = []


def mark(name: str, text: str = "") -> None:
    """Leave the marker ``name`` holding ``text``; it appears whole (renamed
    into place), never empty first."""
    if MARKERS is not None:
        path = os.path.join(MARKERS, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


async def respond(
    send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> bytes:
    body = bytearray()
    while True:
        event = await receive()
        assert event["type"] == "http.request", event
        body += event["body"]
        if not event["more_body"]:
            return bytes(body)


def query(scope: dict[str, Any]) -> dict[str, str]:
    pairs = (p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    return dict(pairs)


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                scope["state"]["started"] = "yes"
                await send({"type": "lifespan.startup.complete"})
            else:
                mark("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http", scope
    path = scope["path"]
    if path == "/hello":
        await respond(send, 200, b"Hello, world!", [(b"content-type", b"text/plain")])
    elif path.startswith("/scope"):
        shown = {
            key: value.decode("latin-1") if isinstance(value, bytes) else value
            for key, value in scope.items()
            if key not in ("headers", "state")
        }
        shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        shown["state"] = dict(scope["state"])
        scope["state"]["mutated"] = True
        json_type = [(b"content-type", b"application/json")]
        await respond(send, 200, json.dumps(shown).encode(), json_type)
    elif path == "/echo":
        body = await read_body(receive)
        await respond(send, 200, body)
    elif path == "/count":
        # Streams the body through: counts the bytes and the largest event.
        total = largest = events = 0
        while True:
            event = await receive()
            total += len(event["body"])
            largest = max(largest, len(event["body"]))
            events += 1
            if not event["more_body"]:
                break
        await respond(send, 200, f"{total} {largest} {events}".encode())
    elif path == "/stream":
        n = int(query(scope).get("n", "3"))
        size = int(query(scope).get("size", "5"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for i in range(n):
            block = bytes([97 + i % 26]) * size
            await send({"type": "http.response.body", "body": block, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif path == "/length":
        length = [(b"content-length", b"6")]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})
    elif path == "/sleep":
        await asyncio.sleep(float(query(scope).get("s", "1")))
        await respond(send, 200, b"slept")
    elif path == "/wait_disconnect":
        await read_body(receive)
        event = await receive()
        disconnects.append(event["type"])
        mark("disconnect", event["type"])
    elif path == "/after":
        # Once the response is complete, receive() says the request is over.
        await read_body(receive)
        await respond(send, 200, b"done")
        event = await receive()
        mark("after", event["type"])
    elif path == "/until_gone":
        # Streams until the client goes: send() then raises (spec 2.4).
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        except OSError as exc:
            mark("gone", type(exc).__name__)
            raise
    elif path == "/disconnects":
        await respond(send, 200, ",".join(disconnects).encode())
    elif path == "/raise":
        raise ValueError("raised before the response")
    elif path == "/raise_after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("raised inside the response")
    elif path == "/nothing":
        return
    elif path == "/forever":
        try:
            await asyncio.sleep(3600)
        finally:
            mark("cancelled")
    elif path == "/status":
        await respond(send, int(query(scope)["code"]), b"")
    elif path == "/close":
        await respond(send, 200, b"bye", [(b"connection", b"close")])
    else:
        await respond(send, 404, b"not found")


# Lifespan variants.


async def failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
        return
    await respond(send, 200, b"unreachable")


async def raising_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        raise RuntimeError("lifespan not supported here")
    await respond(send, 200, b"served without lifespan")


# Starlette.


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello from lifespan"}
        mark("starlette_shutdown")

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    async def item(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "id": request.path_params["item_id"],
                "q": request.query_params.get("q"),
                "agent": request.headers.get("user-agent"),
                "greeting": request.state.greeting,
                "client": list(request.client) if request.client else None,
            }
        )

    async def upload(request: Request) -> PlainTextResponse:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
        return PlainTextResponse(str(total))

    async def stream(request: Request) -> StreamingResponse:
        async def numbers() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"{i}\n".encode()
                await asyncio.sleep(0)

        return StreamingResponse(numbers(), media_type="text/plain")

    async def boom(request: Request) -> PlainTextResponse:
        raise KeyError("boom")

    routes = [
        Route("/", home),
        Route("/items/{item_id}", item),
        Route("/upload", upload, methods=["POST"]),
        Route("/stream", stream),
        Route("/boom", boom),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


starlette_app = _starlette()
