"""The ``asyncio`` and ``uvloop`` systems of the benchmark.

A stdlib ``asyncio`` server (``loop.create_server``) running the protocols of
``bench/protocols/asyncio_protocols.py`` on 127.0.0.1, on asyncio's own event
loop or on uvloop's::

    PYTHONPATH=bench/protocols python3 bench/servers/asyncio_server.py \\
        --loop asyncio|uvloop --proto http|echo [--port 0]

Prints ``READY <port> <pid>`` once it listens, then serves until it gets
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal

import asyncio_protocols


async def serve(proto: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    factory = asyncio_protocols.HttpProtocol if proto == "http" else asyncio_protocols.EchoProtocol
    server = await loop.create_server(factory, "127.0.0.1", port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound} {os.getpid()}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], required=True)
    parser.add_argument("--proto", choices=["http", "echo"], required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    # The idle-memory workload holds 10,000 connections.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.loop == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    else:
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(args.proto, args.port))


if __name__ == "__main__":
    main()
