"""The uvicorn and granian systems of the ASGI workloads.

    python3 bench/servers/asgi_peer_server.py --server uvicorn|granian --app hello|starlette

Picks a free port on 127.0.0.1, starts the server (one worker: uvicorn with
``--http httptools --loop uvloop``, granian with ``--interface asgi``)
serving ``asgi_bench_apps:<app>``, waits until it accepts connections,
prints ``READY <port> <pid> ...`` (the pids of every process of the server:
its CPU time is theirs together), and then waits for it, passing SIGTERM on
(see wsgi_peer_server.py, whose ``serve`` this is).
"""

from __future__ import annotations

import argparse
import sys

from wsgi_peer_server import free_port, serve


def command(server: str, app: str, port: int) -> list[str]:
    target = f"asgi_bench_apps:{app}"
    if server == "uvicorn":
        # No access log: neither py_reactor (access_log => false) nor
        # granian writes one by default.
        return [
            sys.executable, "-m", "uvicorn", "--workers", "1", "--http", "httptools",
            "--loop", "uvloop", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", target,
        ]
    return [
        sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", target,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["uvicorn", "granian"], required=True)
    parser.add_argument("--app", choices=["hello", "starlette"], required=True)
    args = parser.parse_args()
    port = free_port()
    return serve(args.server, port, command(args.server, args.app, port))


if __name__ == "__main__":
    sys.exit(main())
