"""The benchmark's protocols for py_reactor (``erlang.reactor.Protocol``).

The ``py_reactor`` system's context imports this module (``app_module``) and
takes ``HttpProtocol`` or ``EchoProtocol`` as its factory (``app_callable``).
Like asyncio's ``transport.write``, a protocol writes its answer at once from
``data_received``; only what the socket does not take goes to
``write_buffer``, and the connection then waits for writability without
reading (``"write_pending"``; the base class's ``write_ready`` sends the rest
and returns ``"read_pending"``).
"""

from __future__ import annotations

from bench_logic import http_answer

import erlang.reactor as reactor


class EchoProtocol(reactor.Protocol):
    """Sends back every byte it receives."""

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        written = self.write(data)
        if written < len(data):
            self.write_buffer += data[written:]
            return reactor.WRITE_PENDING
        return reactor.CONTINUE


class HttpProtocol(reactor.Protocol):
    """The minimal HTTP/1.1 keep-alive responder of ``bench_logic``."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = bytearray()

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        answer = http_answer(self.pending, data)
        if answer:
            written = self.write(answer)
            if written < len(answer):
                self.write_buffer += answer[written:]
                return reactor.WRITE_PENDING
        return reactor.CONTINUE
