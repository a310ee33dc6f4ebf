"""The ASGI applications of the asgi_hello and asgi_starlette workloads.

Every system (py_reactor, uvicorn, granian) serves these same objects. Both
take part in the lifespan protocol, so that no server logs that it is
unsupported, and neither reads the (empty) request body of wrk's ``GET /``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

HELLO = b"Hello, World!"

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_BODY = {"type": "http.response.body", "body": HELLO}


async def hello(scope, receive, send):
    """A bare ASGI 3.0 application answering 13 bytes."""
    if scope["type"] == "http":
        await send(_START)
        await send(_BODY)
    elif scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def index(request):
    return PlainTextResponse("Hello, World!")


starlette = Starlette(routes=[Route("/", index)])
