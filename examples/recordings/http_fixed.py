"""The protocol of http_bug.rec, fixed: complete setup code for ``--setup-code``.

The recorded protocol (the setup code in record_example.escript) keyed its
headers by name as the client sent them and looked up ``"Host"``.  Header
names are case-insensitive (RFC 9110, 5.1): a client that sent ``host:``
made it raise ``KeyError`` and lost its connection without an answer.  Here
the names are folded to lowercase when they are parsed, and looked up in
lowercase; nothing else changed.

    py_reactor_port replay examples/recordings/http_bug.rec \\
        --setup-code examples/recordings/http_fixed.py --expect-fixed
"""

from typing import Any

import erlang.reactor as reactor


class TinyHTTP(reactor.Protocol):
    """HTTP/1.1, keep-alive: answers each request with the URL it asked for."""

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        super().connection_made(fd, client_info)
        self.pending = bytearray()
        self.closing = False

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        self.pending.extend(data)
        while not self.closing and b"\r\n\r\n" in self.pending:
            head, _, rest = bytes(self.pending).partition(b"\r\n\r\n")
            self.pending[:] = rest
            self.answer(head.decode("latin-1"))
        return "write_pending" if self.write_buffer else "continue"

    def answer(self, head: str) -> None:
        request_line, *lines = head.split("\r\n")
        method, path, _version = request_line.split(" ")
        headers: dict[str, str] = {}
        for line in lines:
            name, value = line.split(": ", 1)
            headers[name.lower()] = value
        url = "http://" + headers["host"] + path
        self.closing = headers.get("connection", "").lower() == "close"
        body = f"{method} {url}\n".encode()
        self.write_buffer.extend(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body))
        if self.closing:
            self.write_buffer.extend(b"Connection: close\r\n")
        self.write_buffer.extend(b"\r\n" + body)

    def write_ready(self) -> str:
        written = self.write(bytes(self.write_buffer))
        del self.write_buffer[:written]
        if self.write_buffer:
            return "continue"
        return "close" if self.closing else "read_pending"


reactor.set_protocol_factory(TinyHTTP)
