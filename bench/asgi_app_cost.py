"""What an ASGI application of the benchmark costs by itself, without a server.

Calls the application (`hello` or `starlette` of
`bench/protocols/asgi_bench_apps.py`) again and again from one coroutine on
a plain asyncio loop, with a fixed HTTP scope of wrk's `GET /` and a
`receive`/`send` pair that do nothing but hand over a message: what remains
is the application's (and its framework's) own work per request, which
every server must add to its own. Prints the CPU time per call (this
process's user and system time over many calls) and, with `--callgrind`,
the user-space instructions per call: `valgrind --tool=callgrind` over a
short and a long run, the difference divided by the difference in calls,
as `bench/port_profile.py` does for the port.

    python3 bench/asgi_app_cost.py --app starlette --callgrind

With `--uvicorn`, the instructions per request of uvicorn (1 worker,
httptools and uvloop, as in the benchmark) serving the same application to
50 keep-alive connections under callgrind, each round one `GET /` on every
connection and then every answer read, as `bench/port_profile.py` drives
the port: the same unit for the server the benchmark compares with.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "protocols"))

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "headers": [(b"host", b"localhost")],
    "state": {},
}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def calls(app, n: int) -> None:
    async def receive():
        return REQUEST

    sent = []

    async def send(message):
        sent.append(message)

    for _ in range(n):
        # A fresh copy, as a server builds a scope per request.
        await app(dict(SCOPE), receive, send)
        sent.clear()


def run(app_name: str, n: int) -> float:
    """CPU seconds of `n` calls (after a warm-up)."""
    import asgi_bench_apps

    app = getattr(asgi_bench_apps, app_name)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(calls(app, 200))
    start = time.process_time()
    loop.run_until_complete(calls(app, n))
    return time.process_time() - start


def callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


def instructions_per_call(app_name: str, small: int, large: int) -> float:
    totals = []
    for n in (small, large):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    "--quiet",
                    f"--callgrind-out-file={out}",
                    sys.executable,
                    __file__,
                    "--app",
                    app_name,
                    "--calls",
                    str(n),
                    "--quiet",
                ],
                check=True,
            )
            totals.append(callgrind_total(out))
    return (totals[1] - totals[0]) / (large - small)


def uvicorn_total(app_name: str, requests: int) -> int:
    """Instructions of a uvicorn process that served `requests` requests."""
    sys.path.insert(0, str(ROOT / "bench"))
    import port_profile

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                "--quiet",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "uvicorn",
                f"asgi_bench_apps:{app_name}",
                "--app-dir",
                str(ROOT / "bench" / "protocols"),
                "--http",
                "httptools",
                "--loop",
                "uvloop",
                "--no-access-log",
                "--log-level",
                "warning",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
        )
        try:
            clients = []
            deadline = time.monotonic() + 120
            while not clients:
                try:
                    clients.append(socket.create_connection(("127.0.0.1", port)))
                except ConnectionRefusedError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            clients += [socket.create_connection(("127.0.0.1", port)) for _ in range(49)]
            buffers = [bytearray() for _ in clients]
            for _ in range(requests // len(clients)):
                for c in clients:
                    c.sendall(port_profile.REQUEST)
                for c, pending in zip(clients, buffers, strict=True):
                    port_profile.recv_response(c, pending)
            for c in clients:
                c.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait()
        return callgrind_total(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--app", default="starlette", help="hello or starlette")
    parser.add_argument("--calls", type=int, default=100_000, help="calls of the timed run")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--small", type=int, default=1000, help="calls of the short callgrind run")
    parser.add_argument("--large", type=int, default=6000, help="calls of the long callgrind run")
    parser.add_argument("--quiet", action="store_true", help="print nothing (under callgrind)")
    parser.add_argument("--uvicorn", action="store_true", help="count uvicorn's instructions")
    args = parser.parse_args(argv)
    if args.uvicorn:
        small, large = uvicorn_total(args.app, args.small), uvicorn_total(args.app, args.large)
        per_req = (large - small) / (args.large - args.small)
        print(f"{args.app}\tuvicorn callgrind\t{per_req:,.0f} instructions per request")
        return 0
    seconds = run(args.app, args.calls)
    if args.quiet:
        return 0
    print(f"{args.app}\tcpu\t{seconds / args.calls * 1e6:.2f} us per call", flush=True)
    if args.callgrind:
        per_call = instructions_per_call(args.app, args.small, args.large)
        print(f"{args.app}\tcallgrind\t{per_call:,.0f} instructions per call", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
