"""A reactor protocol that answers each line after asking another TCP server.

Every line a client sends is forwarded to a *backend* (host and port set with
:func:`configure`, e.g. from ``setup_code``) over a new connection opened with
``asyncio.open_connection``; the backend's one-line answer goes back to the
client.  The protocol returns ``"async_pending"`` while a task of the
context's own asyncio loop talks to the backend, and the task calls
``reactor.signal_write_ready(fd)`` when the answer is ready: no thread, no
second event loop.

Lines of one connection are answered in order; several connections are served
at the same time by the one loop::

    {ok, Ctx} = py_reactor_context:start_link(1, worker, #{
        python_path => ["examples"],
        setup_code => <<"import asyncio_protocol\\n"
                        "asyncio_protocol.configure('127.0.0.1', 7000)\\n">>,
        app_module => <<"asyncio_protocol">>,
        app_callable => <<"AskBackend">>}).
"""

from __future__ import annotations

import asyncio

import erlang.reactor as reactor

_backend: tuple[str, int] = ("127.0.0.1", 7000)


def configure(host: str, port: int) -> None:
    """Set the backend that lines are forwarded to."""
    global _backend
    _backend = (host, int(port))


async def ask_backend(line: bytes) -> bytes:
    """Send ``line`` (ending in a newline) to the backend; return its answer line."""
    reader, writer = await asyncio.open_connection(*_backend)
    try:
        writer.write(line)
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


class AskBackend(reactor.Protocol):
    """Answers each complete line with the backend's answer to it."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = bytearray()
        self.task: asyncio.Task[None] | None = None

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        self.pending += data
        end = self.pending.rfind(b"\n") + 1
        if not end:
            return reactor.CONTINUE
        lines = bytes(self.pending[:end]).splitlines(keepends=True)
        del self.pending[:end]
        # The loop of the context is running here: get_running_loop() works.
        self.task = asyncio.get_running_loop().create_task(self.answer(lines))
        return reactor.ASYNC_PENDING

    async def answer(self, lines: list[bytes]) -> None:
        for line in lines:
            self.write_buffer += await ask_backend(line)
        reactor.signal_write_ready(self.fd)

    def connection_lost(self) -> None:
        if self.task is not None:
            self.task.cancel()
