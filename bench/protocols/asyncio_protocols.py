"""The benchmark's protocols for asyncio and uvloop (``asyncio.Protocol``).

The same logic as ``reactor_protocols``: the answer is written at once
(``transport.write``), and while the transport's buffer is over its high-water
mark the connection stops reading (``pause_writing`` pauses reading), as a
py_reactor protocol waiting on ``"write_pending"`` does.
"""

from __future__ import annotations

import asyncio

from bench_logic import http_answer


class _FlowControlled(asyncio.Protocol):
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # always a Transport for TCP

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


class EchoProtocol(_FlowControlled):
    """Sends back every byte it receives."""

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class HttpProtocol(_FlowControlled):
    """The minimal HTTP/1.1 keep-alive responder of ``bench_logic``."""

    def __init__(self) -> None:
        self.pending = bytearray()

    def data_received(self, data: bytes) -> None:
        answer = http_answer(self.pending, data)
        if answer:
            self.transport.write(answer)
