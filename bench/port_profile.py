"""Instructions and system calls the port program spends per operation.

Drives one `py_reactor_port serve` directly, the way the VM does (frames on
stdin/stdout, descriptors over the auxiliary socket), with the bench's own
protocols (`bench/protocols/reactor_protocols.py`), under
`valgrind --tool=callgrind` (user-space instructions) or `strace -f -c`
(system calls). Each workload runs twice, with a small and a large count of
operations, in two fresh port processes; the difference between the two
totals divided by the difference in operations is the cost of one
operation, without start-up and shutdown. Instruction counts do not depend
on what else the machine is doing, so two builds of the port can be
compared on a busy machine:

    python3 bench/port_profile.py --port OLD/py_reactor_port --port NEW/py_reactor_port

Workloads:

- `echo_pingpong_64`: one connection, sequential 64-byte round trips
  (`EchoProtocol`), as in the benchmark;
- `http_keepalive`: 50 keep-alive connections (`HttpProtocol`); each round
  sends one `GET /` on every connection, then reads every answer, so that
  one wait of the port sees several connections ready, as with `wrk -c50`.
- `wsgi_hello`, `wsgi_flask`: the same 50 connections and rounds against
  the WSGI applications of the benchmark (`hello` and `flask` of
  `bench/protocols/wsgi_bench_apps.py`), served by the port's HTTP engine
  and its worker threads (`--tools` may add `ctxsw`: voluntary and
  involuntary context switches of all the port's threads, from `/proc`,
  without any tool attached).
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ROOT / "bench" / "protocols"
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


# --- a little of the external term format -----------------------------------


class Atom(str):
    pass


def encode(term: Any) -> bytes:
    return b"\x83" + _enc(term)


def _enc(t: Any) -> bytes:
    if isinstance(t, Atom):
        name = t.encode()
        return bytes([119, len(name)]) + name
    if isinstance(t, bool):
        return _enc(Atom("true" if t else "false"))
    if isinstance(t, int):
        if 0 <= t < 256:
            return bytes([97, t])
        return b"b" + struct.pack(">i", t)
    if isinstance(t, bytes):
        return b"m" + struct.pack(">I", len(t)) + t
    if isinstance(t, str):
        return _enc(t.encode())
    if isinstance(t, tuple):
        return bytes([104, len(t)]) + b"".join(_enc(e) for e in t)
    if isinstance(t, list):
        if not t:
            return b"j"
        return b"l" + struct.pack(">I", len(t)) + b"".join(_enc(e) for e in t) + b"j"
    if isinstance(t, dict):
        return b"t" + struct.pack(">I", len(t)) + b"".join(_enc(k) + _enc(v) for k, v in t.items())
    raise TypeError(f"cannot encode {t!r}")


def decode(data: bytes) -> Any:
    assert data[0] == 131
    term, _ = _dec(data, 1)
    return term


def _dec(d: bytes, i: int) -> tuple[Any, int]:
    tag = d[i]
    i += 1
    if tag == 97:
        return d[i], i + 1
    if tag == 98:
        return struct.unpack(">i", d[i : i + 4])[0], i + 4
    if tag in (100, 118):
        n = struct.unpack(">H", d[i : i + 2])[0]
        return Atom(d[i + 2 : i + 2 + n].decode()), i + 2 + n
    if tag in (115, 119):
        n = d[i]
        return Atom(d[i + 1 : i + 1 + n].decode()), i + 1 + n
    if tag == 104:
        n = d[i]
        i += 1
        out = []
        for _ in range(n):
            e, i = _dec(d, i)
            out.append(e)
        return tuple(out), i
    if tag == 106:
        return [], i
    if tag == 107:
        n = struct.unpack(">H", d[i : i + 2])[0]
        return list(d[i + 2 : i + 2 + n]), i + 2 + n
    if tag == 108:
        n = struct.unpack(">I", d[i : i + 4])[0]
        i += 4
        out = []
        for _ in range(n + 1):
            e, i = _dec(d, i)
            out.append(e)
        return out[:-1], i
    if tag == 109:
        n = struct.unpack(">I", d[i : i + 4])[0]
        return d[i + 4 : i + 4 + n], i + 4 + n
    if tag == 110:
        n, sign = d[i], d[i + 1]
        value = int.from_bytes(d[i + 2 : i + 2 + n], "little")
        return (-value if sign else value), i + 2 + n
    if tag == 116:
        n = struct.unpack(">I", d[i : i + 4])[0]
        i += 4
        out = {}
        for _ in range(n):
            k, i = _dec(d, i)
            v, i = _dec(d, i)
            out[k] = v
        return out, i
    if tag == 88:  # a pid: node atom, then 12 bytes
        _, i = _dec(d, i)
        return ("pid",), i + 12
    raise ValueError(f"tag {tag} not handled")


# --- one port ----------------------------------------------------------------


# The CPU the port (and the tool that runs it) is pinned to, if any.
PORT_CPU: str | None = None


class Port:
    def __init__(self, exe: Path, tool: list[str]) -> None:
        pin = ["taskset", "-c", PORT_CPU] if PORT_CPU is not None else []
        self.proc = subprocess.Popen(
            [*pin, *tool, str(exe), "serve", "--vm-pid", str(os.getpid()),
             "--python-dir", str(ROOT / "python")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        hello = self.frame(lambda t: t[0] == "hello")
        self.aux = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.aux.connect(hello[1][Atom("socket_path")].decode())
        self.next_id = 1

    def send(self, term: Any) -> None:
        data = encode(term)
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()

    def frame(self, want: Any) -> Any:
        assert self.proc.stdout is not None
        while True:
            header = self.proc.stdout.read(4)
            if len(header) < 4:
                raise RuntimeError("the port ended")
            term = decode(self.proc.stdout.read(struct.unpack(">I", header)[0]))
            if isinstance(term, tuple) and want(term):
                return term

    def request(self, ref: int, term: tuple) -> Any:
        self.send(term)
        return self.frame(lambda t: t[0] == "reply" and t[1] == ref)[2]

    def handoff(self, sock: socket.socket) -> None:
        conn_id = self.next_id
        self.next_id += 1
        fds = struct.pack("i", sock.fileno())
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
        self.aux.sendmsg([struct.pack(">Q", conn_id)], rights)
        self.send((Atom("handoff"), conn_id, {}))

    def stop(self) -> None:
        self.request(2, (Atom("stop"), 2))
        self.proc.wait()


def connected_pairs(n: int) -> list[tuple[socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0), backlog=n)
    pairs = []
    for _ in range(n):
        client = socket.create_connection(listener.getsockname())
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        server, _ = listener.accept()
        server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pairs.append((client, server))
    listener.close()
    return pairs


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise RuntimeError("connection closed")
        out += chunk
    return out


def recv_response(sock: socket.socket, pending: bytearray) -> None:
    """Reads one HTTP response with a Content-Length (and nothing more)."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        pending += chunk
    end = pending.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(pending[:end]).split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(pending) < end + length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed")
        pending += chunk
    del pending[: end + length]


def run(exe: Path, tool: list[str], workload: str, ops: int, counts: dict | None = None) -> None:
    port = Port(exe, tool)
    if workload.startswith("wsgi_"):
        options = {
            Atom("python_path"): [str(PROTOCOLS)],
            Atom("app_module"): "wsgi_bench_apps",
            Atom("app_callable"): workload.removeprefix("wsgi_"),
        }
    else:
        factory = "EchoProtocol" if workload == "echo_pingpong_64" else "HttpProtocol"
        options = {
            Atom("python_path"): [str(PROTOCOLS)],
            Atom("app_module"): "reactor_protocols",
            Atom("app_callable"): factory,
        }
    reply = port.request(1, (Atom("setup"), 1, options))
    if reply != "ok":
        raise RuntimeError(f"setup failed: {reply!r}")
    conns = 1 if workload == "echo_pingpong_64" else 50
    clients = []
    for client, server in connected_pairs(conns):
        port.handoff(server)
        server.close()
        clients.append(client)
    if counts is not None:
        counts["before"] = context_switches(port.proc.pid)
    if workload.startswith("wsgi_"):
        buffers = [bytearray() for _ in clients]
        for _ in range(ops // conns):
            for c in clients:
                c.sendall(REQUEST)
            for c, pending in zip(clients, buffers, strict=True):
                recv_response(c, pending)
    elif workload == "echo_pingpong_64":
        message = b"x" * 64
        for _ in range(ops):
            clients[0].sendall(message)
            recv_exactly(clients[0], 64)
    else:
        answer = None
        for _ in range(ops // conns):
            for c in clients:
                c.sendall(REQUEST)
            for c in clients:
                if answer is None:
                    head = b""
                    while b"\r\n\r\n" not in head:
                        head += c.recv(4096)
                    answer = len(head)
                else:
                    recv_exactly(c, answer)
    if counts is not None:
        counts["after"] = context_switches(port.proc.pid)
    for c in clients:
        c.close()
    port.stop()


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of all threads of `pid`."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no total in {path}")


def strace_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.rstrip().endswith("total"):
            fields = line.split()
            # % time, seconds, usecs/call, calls, [errors], "total"
            return int(fields[3])
    raise RuntimeError(f"no total in {path}")


def measure(exe: Path, tool: str, workload: str, small: int, large: int) -> float:
    totals = []
    for ops in (small, large):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out"
            if tool == "ctxsw":
                counts: dict[str, int] = {}
                run(exe, [], workload, ops, counts)
                totals.append(counts["after"] - counts["before"])
                continue
            if tool == "callgrind":
                cmd = ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={out}"]
            else:
                cmd = ["strace", "-f", "-c", "-o", str(out)]
            run(exe, cmd, workload, ops)
            totals.append(callgrind_total(out) if tool == "callgrind" else strace_total(out))
    return (totals[1] - totals[0]) / (large - small)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--port", action="append", type=Path, required=True, help="a port binary (repeatable)"
    )
    parser.add_argument("--workloads", default="echo_pingpong_64,http_keepalive")
    parser.add_argument("--tools", default="callgrind,strace")
    parser.add_argument("--small", type=int, default=1000, help="operations of the short run")
    parser.add_argument("--large", type=int, default=6000, help="operations of the long run")
    parser.add_argument(
        "--split",
        action="store_true",
        help="pin the port to CPU 1 and this driver to CPU 0, as the benchmark's "
        "split pinning does (one CPU for all the port's threads)",
    )
    args = parser.parse_args(argv)
    if args.split:
        global PORT_CPU
        PORT_CPU = "1"
        os.sched_setaffinity(0, {0})
    for workload in args.workloads.split(","):
        for tool in args.tools.split(","):
            for exe in args.port:
                per_op = measure(exe, tool, workload, args.small, args.large)
                unit = {"callgrind": "instructions", "ctxsw": "context switches"}.get(
                    tool, "system calls"
                )
                print(f"{workload}\t{tool}\t{exe}\t{per_op:,.2f} {unit} per operation", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
