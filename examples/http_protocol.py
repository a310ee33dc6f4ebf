"""HTTP server protocols.

``SimpleHTTPProtocol`` is the specification's minimal HTTP/1.0 example: one
request per connection, closed after the response.  Importing this module
makes it the protocol factory of the context.

``KeepAliveHTTPProtocol`` speaks HTTP/1.1 with persistent connections: it
answers every request it finds in what it has read, pipelined ones included,
in order, and closes the connection only when a request asks for it
(``Connection: close``, or HTTP/1.0 without ``Connection: keep-alive``) or is
malformed.

Both give a client :data:`HEADER_TIMEOUT` seconds to send a complete request
head (for ``KeepAliveHTTPProtocol``, each request's, counted from the end of
the previous response), and answer ``408 Request Timeout`` and close past it,
so that clients that send part of a request and then nothing cannot hold
every connection of the context.  Select ``KeepAliveHTTPProtocol`` in
``setup_code``::

    import erlang.reactor as reactor
    import http_protocol
    reactor.set_protocol_factory(http_protocol.KeepAliveHTTPProtocol)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import erlang.reactor as reactor

MAX_HEADER_BYTES = 64 * 1024
"""Largest request head (request line and headers) KeepAliveHTTPProtocol accepts."""

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body KeepAliveHTTPProtocol accepts."""

HEADER_TIMEOUT = 10.0
"""Seconds a client has to send a complete request head."""

TIMEOUT_RESPONSE = (
    b"HTTP/1.0 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
)


class SimpleHTTPProtocol(reactor.Protocol):
    """Minimal HTTP/1.0 protocol."""

    def __init__(self) -> None:
        super().__init__()
        self.request_buffer = bytearray()
        self.header_timer: reactor.TimerHandle | None = None

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        super().connection_made(fd, client_info)
        # Not in the specification's example: without it, a client that
        # never ends its request holds the connection forever.
        self.header_timer = self.call_later(HEADER_TIMEOUT, self.header_timeout)

    def header_timeout(self) -> str:
        """The request head did not come in time: answer 408 and close."""
        self.write_buffer[:] = TIMEOUT_RESPONSE
        return "write_pending"

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        self.request_buffer.extend(data)
        # Check for end of headers
        if b"\r\n\r\n" in self.request_buffer:
            if self.header_timer is not None:
                self.header_timer.cancel()
            self.handle_request()
            return "write_pending"
        return "continue"

    def handle_request(self) -> None:
        """Parse request and prepare response."""
        request = self.request_buffer.decode("utf-8", errors="replace")
        first_line = request.split("\r\n")[0]
        try:
            _method, path, _ = first_line.split(" ", 2)
        except ValueError:
            # Not in the specification's example, which raised here (and so
            # closed the connection without an answer).
            self.write_buffer.extend(
                b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            return

        # Simple response
        body = f"Hello! You requested {path}"
        response = (
            f"HTTP/1.0 200 OK\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Content-Type: text/plain\r\n"
            f"\r\n"
            f"{body}"
        )
        self.write_buffer.extend(response.encode())

    def write_ready(self) -> str:
        if not self.write_buffer:
            return "close"  # HTTP/1.0: close after response
        written = self.write(bytes(self.write_buffer))
        del self.write_buffer[:written]
        if self.write_buffer:
            return "continue"
        return "close"


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the response."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


class BadRequest(Exception):
    """The bytes received are not an HTTP request this protocol accepts."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def parse_head(head: bytes) -> Request:
    """Parse a request line and headers (without the blank line that ends them)."""
    text = head.decode("latin-1")
    request_line, *header_lines = text.split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise BadRequest(400, "Bad Request")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(505, "HTTP Version Not Supported")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "Bad Request")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return Request(method, target, version, headers)


class KeepAliveHTTPProtocol(reactor.Protocol):
    """HTTP/1.1 with persistent connections and pipelining.

    Every complete request in the input is answered, in order, in one write
    phase; then the protocol reads again, or closes if the last request
    answered asked for it.  Requests after one that closes the connection are
    ignored.  Override :meth:`handle_request` to serve something else.
    """

    def __init__(self) -> None:
        super().__init__()
        self.request_buffer = bytearray()
        self.close_after_write = False
        self.requests_served = 0
        self.header_timer: reactor.TimerHandle | None = None

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        super().connection_made(fd, client_info)
        self.start_header_timer()

    def start_header_timer(self) -> None:
        """Give the client :data:`HEADER_TIMEOUT` seconds for its next request head."""
        if self.header_timer is not None:
            self.header_timer.cancel()
        self.header_timer = self.call_later(HEADER_TIMEOUT, self.header_timeout)

    def header_timeout(self) -> str:
        """No complete request head in time: answer 408 and close."""
        self.header_timer = None
        if self.close_after_write:
            return reactor.CONTINUE  # closing already
        self.request_buffer.clear()
        self.close_after_write = True
        self.write_buffer.extend(TIMEOUT_RESPONSE)
        return reactor.WRITE_PENDING

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        if not self.close_after_write:
            self.request_buffer.extend(data)
            self.process_requests()
        if self.header_timer is not None and (self.write_buffer or self.close_after_write):
            # Answering (or closing): the next request's time starts once
            # the answer is written.
            self.header_timer.cancel()
            self.header_timer = None
        if self.write_buffer:
            return reactor.WRITE_PENDING
        if self.close_after_write:
            return reactor.CLOSE
        return reactor.CONTINUE

    def process_requests(self) -> None:
        """Answer every complete request at the start of :attr:`request_buffer`."""
        buffer = self.request_buffer
        while not self.close_after_write:
            # RFC 9112 2.2: ignore empty lines before a request line.
            while buffer.startswith(b"\r\n"):
                del buffer[:2]
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEADER_BYTES:
                    self.send_error(431, "Request Header Fields Too Large")
                return
            try:
                request = parse_head(bytes(buffer[:end]))
                length = self._content_length(request)
            except BadRequest as exc:
                self.send_error(exc.status, exc.reason)
                return
            total = end + 4 + length
            if len(buffer) < total:
                return  # the body is still coming
            request.body = bytes(buffer[end + 4 : total])
            del buffer[:total]
            self.close_after_write = not request.keep_alive
            self.handle_request(request)
            self.requests_served += 1
        buffer.clear()

    @staticmethod
    def _content_length(request: Request) -> int:
        if "transfer-encoding" in request.headers:
            raise BadRequest(501, "Not Implemented")
        value = request.headers.get("content-length", "0")
        if not value.isdigit():
            raise BadRequest(400, "Bad Request")
        length = int(value)
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, "Content Too Large")
        return length

    def handle_request(self, request: Request) -> None:
        """Answer ``request``; the default greets with the path requested."""
        self.respond(request, 200, "OK", f"Hello! You requested {request.target}".encode())

    def respond(
        self,
        request: Request,
        status: int,
        reason: str,
        body: bytes,
        content_type: str = "text/plain",
    ) -> None:
        """Queue a response to ``request`` in :attr:`write_buffer`."""
        headers = [
            f"HTTP/1.1 {status} {reason}",
            f"Content-Length: {len(body)}",
            f"Content-Type: {content_type}",
        ]
        if self.close_after_write:
            headers.append("Connection: close")
        elif request.version == "HTTP/1.0":
            headers.append("Connection: keep-alive")
        self.write_buffer.extend(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1"))
        if request.method != "HEAD":
            self.write_buffer.extend(body)

    def send_error(self, status: int, reason: str) -> None:
        """Queue an error response and close the connection once it is written."""
        self.close_after_write = True
        body = f"{status} {reason}\n".encode()
        self.write_buffer.extend(
            (
                f"HTTP/1.1 {status} {reason}\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Content-Type: text/plain\r\n"
                f"Connection: close\r\n\r\n"
            ).encode("latin-1")
            + body
        )

    def write_ready(self) -> str:
        if self.write_buffer:
            written = self.write(self.write_buffer)
            del self.write_buffer[:written]
            if self.write_buffer:
                return reactor.CONTINUE
        if self.close_after_write:
            return reactor.CLOSE
        if self.header_timer is None:
            self.start_header_timer()
        return reactor.READ_PENDING


reactor.set_protocol_factory(SimpleHTTPProtocol)
