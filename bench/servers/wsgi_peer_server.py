"""The gunicorn and granian systems of the WSGI workloads.

    python3 bench/servers/wsgi_peer_server.py --server gunicorn|granian --app hello|flask

Picks a free port on 127.0.0.1, starts the server (one worker: gunicorn
with the gthread worker and 8 threads, granian with ``--interface wsgi``)
serving ``wsgi_bench_apps:<app>``, waits until it accepts connections,
prints ``READY <port> <pid> ...`` (the pids of every process of the server:
its CPU time is theirs together), and then waits for it, passing SIGTERM on.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PROTOCOLS = Path(__file__).resolve().parent.parent / "protocols"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(server: str, app: str, port: int) -> list[str]:
    target = f"wsgi_bench_apps:{app}"
    if server == "gunicorn":
        return [
            sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "gthread",
            "--threads", "8", "--bind", f"127.0.0.1:{port}", "--log-level", "warning", target,
        ]
    return [
        sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "1",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", target,
    ]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def serve(name: str, port: int, cmd: list[str]) -> int:
    """Runs ``cmd`` (a server told to listen on 127.0.0.1:``port``) in
    bench/protocols, prints ``READY`` once it accepts connections, then waits
    for it; bench/servers/asgi_peer_server.py serves the same way."""
    env = dict(os.environ, PYTHONPATH=str(PROTOCOLS))
    server = subprocess.Popen(cmd, env=env, cwd=PROTOCOLS)
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            print(f"{name} exited with {server.returncode}", flush=True)
            return 1
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                server.terminate()
                print(f"{name} did not accept connections in time", flush=True)
                return 1
            time.sleep(0.05)
    pids = [server.pid, *children(server.pid)]
    print("READY", port, *pids, flush=True)
    return server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["gunicorn", "granian"], required=True)
    parser.add_argument("--app", choices=["hello", "flask"], required=True)
    args = parser.parse_args()
    port = free_port()
    return serve(args.server, port, command(args.server, args.app, port))


if __name__ == "__main__":
    sys.exit(main())
