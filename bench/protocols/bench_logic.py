"""The protocol logic every Python system of the benchmark runs.

Both ``reactor_protocols`` (py_reactor's ``erlang.reactor.Protocol``) and
``asyncio_protocols`` (an ``asyncio.Protocol``, on asyncio's loop or uvloop)
call these functions, so the Python work per request is the same code; only
the shape of the callbacks differs. The Erlang ``gen_tcp`` server and the
Rust ``native`` server implement the same logic in their own language.

The HTTP responder is deliberately minimal: the benchmark's requests
(``wrk``'s ``GET /``) have no body, so every ``\\r\\n\\r\\n`` ends one complete
request, and each gets the same fixed response. Every complete request in a
read is answered in one write; an incomplete one waits in ``pending``.
"""

from __future__ import annotations

from typing import Final

REQUEST_END: Final = b"\r\n\r\n"

RESPONSE: Final = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!"
)


def http_answer(pending: bytearray, data: bytes | bytearray | memoryview) -> bytes:
    """The responses to every request completed by ``data``.

    ``pending`` holds the start of a request that earlier reads did not
    complete; it is updated in place. ``data`` is anything bytes-like with
    ``count``, ``rfind`` and slicing (``bytes``, or py_reactor's zero-copy
    ``ReactorBuffer``). Returns ``b""`` when no request is complete yet.
    """
    if pending:
        pending += data
        data = pending
    count = data.count(REQUEST_END)
    if not count:
        if data is not pending:
            pending += data
        return b""
    end = data.rfind(REQUEST_END) + len(REQUEST_END)
    if data is pending:
        del pending[:end]
    elif end < len(data):
        pending += data[end:]
    return RESPONSE if count == 1 else RESPONSE * count
