"""The benchmark driver: every workload against every system, in one run.

    python3 bench/run.py [--quick] [--runs N] [--workloads W,...] [--systems S,...]

``make bench`` and ``make bench-quick`` build everything first and run this.
Systems (each runs the same protocol logic, see bench/protocols/):

- ``py_reactor``: this project; an Erlang VM accepts and hands every
  connection to one context (bench/servers/bench_py_reactor_server.erl);
- ``asyncio``, ``uvloop``: a stdlib asyncio server on either event loop
  (bench/servers/asyncio_server.py);
- ``gen_tcp``: a plain Erlang server, one process per connection
  (bench/servers/bench_gen_tcp_server.erl);
- ``native``: a Rust epoll server with no Python (bench/native);
- ``gunicorn``, ``granian``: the WSGI workloads only (``wsgi_hello``,
  ``wsgi_flask``), where ``py_reactor`` serves the same WSGI applications
  (bench/servers/wsgi_peer_server.py, bench/protocols/wsgi_bench_apps.py);
- ``uvicorn``, ``granian``: the ASGI workloads only (``asgi_hello``,
  ``asgi_starlette``), where ``py_reactor`` serves the same ASGI applications
  (bench/servers/asgi_peer_server.py, bench/protocols/asgi_bench_apps.py).

In the WSGI and ASGI workloads a system whose server does not start (a
py_reactor that cannot serve the application, say) is a failure of that
system alone: the others are still measured.

The ``listener`` workload runs py_reactor through ``py_reactor:start_listener/2``
(bench/servers/bench_py_reactor_listener.erl): lifecycle and nif_bench's
lifecycle in both accept modes, and http_keepalive with 1 and 2 contexts.

Workloads are run one after the other; within a workload every run visits
every system, in an order rotated from run to run, so that the machine's drift
hits all alike. The servers run on CPU 1 and the load generators (wrk,
bench/native's bench_load, the nif_bench Erlang client) on CPU 0 (taskset);
the ping-pong workloads are also run with both on CPU 0 ("same_core").

Writes a result file (``machine``, ``run``, ``results``: a list of
``{"workload", "system", "metric", "value", ...}`` objects, ``targets``) and
its chart, and prints the tables. By default they go to _build/bench/results/
(ignored by git), and no committed file changes; ``--update-committed`` (what
``make bench`` passes) writes bench/results/latest.json, bench/results/latest.png
and the results section of docs/performance.md instead. Exits 1 if any
measurement failed (the others are still written).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import report

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# Results under version control, written only with --update-committed.
COMMITTED_RESULTS = BENCH / "results"
# Where exploratory runs write by default: ignored by git.
LOCAL_RESULTS = ROOT / "_build/bench/results"
PROTOCOLS = BENCH / "protocols"
NATIVE_BIN = BENCH / "native/target/release"
APP_EBIN = ROOT / "_build/default/lib/py_reactor/ebin"
BENCH_EBIN = ROOT / "_build/bench/ebin"
PORT_BIN = ROOT / "priv/py_reactor_port"

SYSTEMS = report.SYSTEMS
SERVER_CPU = "1"
LOAD_CPU = "0"
PINNINGS = {
    "split": {"server_cpus": SERVER_CPU, "load_cpus": LOAD_CPU},
    "same_core": {"server_cpus": LOAD_CPU, "load_cpus": LOAD_CPU},
}
WORKLOADS = [
    "http_keepalive",
    "echo_pingpong_64",
    "echo_pingpong_16k",
    "bulk_1mib",
    "lifecycle",
    "nif_bench",
    "idle_memory",
    "wsgi_hello",
    "wsgi_flask",
    "asgi_hello",
    "asgi_starlette",
    "listener",
]
# py_reactor served through a listener (bench/servers/bench_py_reactor_listener.erl):
# server name -> (accept mode, contexts). Their figures are py_reactor's, under
# metric names that say which listener (see listener_workloads).
LISTENERS = {
    "listener_vm": ("vm", 1),
    "listener_port": ("port", 1),
    "listener_1ctx": ("vm", 1),
    "listener_2ctx": ("vm", 2),
}
# The WSGI workloads run against the Python web servers instead of the
# protocol systems: gunicorn (1 worker, gthread) and granian (1 worker,
# --interface wsgi), serving the same applications (bench/protocols/wsgi_bench_apps.py).
WSGI_WORKLOADS = ["wsgi_hello", "wsgi_flask"]
WSGI_SYSTEMS = ["py_reactor", "gunicorn", "granian"]
# The ASGI workloads likewise: uvicorn (1 worker, httptools and uvloop) and
# granian (1 worker, --interface asgi), serving bench/protocols/asgi_bench_apps.py.
ASGI_WORKLOADS = ["asgi_hello", "asgi_starlette"]
ASGI_SYSTEMS = ["py_reactor", "uvicorn", "granian"]
# The Python web servers, which run only the WSGI and ASGI workloads.
PEER_SYSTEMS = ("gunicorn", "granian", "uvicorn")
START_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Config:
    """How much of each workload one run does."""

    runs: int
    http_seconds: int
    http_warmup_seconds: int
    pingpong_count: int
    pingpong_warmup: int
    bulk_count: int
    bulk_warmup: int
    lifecycle_count: int
    lifecycle_warmup: int
    idle_conns: int
    idle_runs: int
    nif_messages: int
    nif_lifecycles: int
    nif_runs: int
    http_runs: int


FULL = Config(
    runs=5,
    http_runs=3,
    http_seconds=10,
    http_warmup_seconds=2,
    pingpong_count=10_000,
    pingpong_warmup=1_000,
    bulk_count=200,
    bulk_warmup=8,
    lifecycle_count=2_000,
    lifecycle_warmup=100,
    idle_conns=10_000,
    idle_runs=2,
    nif_messages=500,
    nif_lifecycles=100,
    nif_runs=3,
)

QUICK = Config(
    runs=2,
    http_runs=1,
    http_seconds=3,
    http_warmup_seconds=1,
    pingpong_count=2_000,
    pingpong_warmup=200,
    bulk_count=40,
    bulk_warmup=4,
    lifecycle_count=500,
    lifecycle_warmup=50,
    idle_conns=10_000,
    idle_runs=1,
    nif_messages=500,
    nif_lifecycles=100,
    nif_runs=1,
)


class BenchError(Exception):
    """A measurement that could not be made."""


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def raise_nofile() -> None:
    """In a child before exec: descriptors for 10,000 connections."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---- /proc -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def pin(pid: int, cpus: str) -> None:
    """Moves every thread of ``pid`` to ``cpus``."""
    subprocess.run(
        ["taskset", "-a", "-p", "-c", cpus, str(pid)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


# ---- servers -------------------------------------------------------------------


@dataclass
class Server:
    """One system's server process (and, for py_reactor, its port program)."""

    system: str
    proto: str
    cpus: str
    logdir: Path
    popen: subprocess.Popen[bytes] | None = None
    port: int = 0
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def logfile(self) -> Path:
        return self.logdir / f"{self.system}-{self.proto}-{id(self)}.log"

    def command(self) -> list[str]:
        erl = ["erl", "-noshell", "+Bd"]
        if self.system == "py_reactor":
            return [
                *erl,
                "-pa",
                str(APP_EBIN),
                "-pa",
                str(BENCH_EBIN),
                "-run",
                "bench_py_reactor_server",
                "main",
                self.proto,
                "0",
                str(PROTOCOLS),
            ]
        if self.system in LISTENERS:
            accept, contexts = LISTENERS[self.system]
            return [
                *erl,
                "-pa",
                str(APP_EBIN),
                "-pa",
                str(BENCH_EBIN),
                "-run",
                "bench_py_reactor_listener",
                "main",
                self.proto,
                "0",
                str(PROTOCOLS),
                accept,
                str(contexts),
            ]
        if self.system == "gen_tcp":
            return [
                *erl,
                "-pa",
                str(BENCH_EBIN),
                "-run",
                "bench_gen_tcp_server",
                "main",
                self.proto,
                "0",
            ]
        if self.system in PEER_SYSTEMS and self.proto in ASGI_WORKLOADS:
            script = BENCH / "servers/asgi_peer_server.py"
            app = self.proto.removeprefix("asgi_")
            return [sys.executable, str(script), "--server", self.system, "--app", app]
        if self.system in PEER_SYSTEMS:
            script = BENCH / "servers/wsgi_peer_server.py"
            app = self.proto.removeprefix("wsgi_")
            return [sys.executable, str(script), "--server", self.system, "--app", app]
        if self.system in ("asyncio", "uvloop"):
            script = BENCH / "servers/asyncio_server.py"
            return [sys.executable, str(script), "--loop", self.system, "--proto", self.proto]
        if self.system == "native":
            return [str(NATIVE_BIN / "native_server"), "--proto", self.proto]
        raise ValueError(self.system)

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(PROTOCOLS), PYTHONUNBUFFERED="1")
        with self.logfile.open("wb") as out:
            self.popen = subprocess.Popen(
                ["taskset", "-c", self.cpus, *self.command()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
                preexec_fn=raise_nofile,
            )

    def wait_ready(self, deadline: float) -> None:
        assert self.popen is not None
        while True:
            text = self.logfile.read_text(errors="replace")
            peer = re.search(r"^READY (\d+)((?: \d+)+)$", text, re.MULTILINE)
            if peer and self.system in PEER_SYSTEMS:
                self.port = int(peer.group(1))
                pids = [int(p) for p in peer.group(2).split()]
                self.pids = {f"server{i}": pid for i, pid in enumerate(pids)}
                return
            match = re.search(r"^READY (\d+) (\d+)((?: \d+)*)$", text, re.MULTILINE)
            if match:
                self.port = int(match.group(1))
                self.pids = {"server": int(match.group(2))}
                ports = [int(p) for p in match.group(3).split()]
                if ports:
                    # A VM and its port programs: "port", then "port2", "port3", ...
                    self.pids = {"vm": int(match.group(2))}
                    for i, pid in enumerate(ports):
                        self.pids["port" if i == 0 else f"port{i + 1}"] = pid
                return
            if self.popen.poll() is not None:
                raise BenchError(
                    f"{self.system} server exited ({self.popen.returncode}): {tail(text)}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{self.system} server not ready in {START_TIMEOUT:.0f} s: {tail(text)}"
                )
            time.sleep(0.02)

    def move(self, cpus: str) -> None:
        if cpus != self.cpus:
            for pid in self.pids.values():
                pin(pid, cpus)
            self.cpus = cpus

    def check_alive(self) -> None:
        for name, pid in self.pids.items():
            if not alive(pid):
                text = self.logfile.read_text(errors="replace")
                raise BenchError(f"{self.system} server's {name} process {pid} died: {tail(text)}")

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{self.system} server did not stop on SIGTERM: killed")
                self.popen.kill()
                self.popen.wait()
        # The port program ends on end of file on its stdin, once the VM is gone.
        deadline = time.monotonic() + 10
        for name, port in self.pids.items():
            if not name.startswith("port"):
                continue
            while alive(port) and time.monotonic() < deadline:
                time.sleep(0.05)
            if alive(port):
                log(f"py_reactor port {port} still running after its VM: killed")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(port, signal.SIGKILL)
        self.popen = None


def tail(text: str, lines: int = 15) -> str:
    return "\n    " + "\n    ".join(text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def servers(
    systems: list[str], proto: str, logdir: Path, failures: list[str] | None = None
) -> Iterator[dict[str, Server]]:
    """Starts a server per system (in parallel), all on the server CPU.

    A server that does not start raises BenchError, unless ``failures`` is
    given: then its error is appended there, it is stopped and left out of
    what is yielded, and the others are served.
    """
    started = {s: Server(s, proto, SERVER_CPU, logdir) for s in systems}
    try:
        for server in started.values():
            server.start()
        deadline = time.monotonic() + START_TIMEOUT
        ready = {}
        for system, server in started.items():
            try:
                server.wait_ready(deadline)
            except BenchError as e:
                if failures is None:
                    raise
                failures.append(f"{proto} {system}: {e}")
                log(f"FAILED {proto} {system}: {e}")
                server.stop()
                continue
            ready[system] = server
        yield ready
    finally:
        for server in started.values():
            server.stop()


# ---- load generators -------------------------------------------------------------


def run_load(cmd: list[str], cpus: str, timeout: float) -> str:
    try:
        done = subprocess.run(
            ["taskset", "-c", cpus, *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=raise_nofile,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{Path(cmd[0]).name} took more than {timeout:.0f} s") from e
    if done.returncode != 0:
        raise BenchError(
            f"{' '.join(cmd[:2])} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
        )
    return done.stdout


def bench_load(
    command: str, port: int, cpus: str, timeout: float = 300, **options: Any
) -> dict[str, Any]:
    cmd = [str(NATIVE_BIN / "bench_load"), command, "--port", str(port)]
    for key, value in options.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            cmd += [f"--{key.replace('_', '-')}", str(v)]
    out = run_load(cmd, cpus, timeout)
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as e:
        raise BenchError(f"cannot read bench_load's output: {out!r}") from e


def wrk(port: int, seconds: int) -> dict[str, Any]:
    out = run_load(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        LOAD_CPU,
        timeout=seconds + 60,
    )
    requests = re.search(r"^\s*(\d+) requests in ([\d.]+)(m?s)", out, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.MULTILINE)
    if not requests or not rate:
        raise BenchError(f"cannot read wrk's output: {out}")
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    n_errors = sum(int(x) for x in errors.groups()) if errors else 0
    if non2xx:
        n_errors += int(non2xx.group(1))
    return {
        "requests": int(requests.group(1)),
        "req_per_s": float(rate.group(1)),
        "errors": n_errors,
    }


# ---- results -------------------------------------------------------------------


@dataclass
class Results:
    """Every value measured, by (workload, pinning, metric, system)."""

    values: dict[tuple[str, str, str, str], list[float]] = field(default_factory=dict)
    meta: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def add(
        self,
        workload: str,
        pinning: str,
        system: str,
        metric: str,
        value: float,
        unit: str,
        better: str,
        **extra: Any,
    ) -> None:
        key = (workload, pinning, metric, system)
        self.values.setdefault(key, []).append(value)
        self.meta[key] = {"unit": unit, "better": better, **extra}

    def objects(self) -> list[dict[str, Any]]:
        out = []
        for key, runs in self.values.items():
            workload, pinning, metric, system = key
            out.append(
                {
                    "workload": workload,
                    "system": system,
                    "metric": metric,
                    "value": round(statistics.median(runs), 3),
                    "pinning": pinning,
                    **PINNINGS[pinning],
                    **self.meta[key],
                    "runs": [round(v, 3) for v in runs],
                }
            )
        return out


def rotated(systems: list[str], run: int) -> list[str]:
    k = run % len(systems)
    return systems[k:] + systems[:k]


def alternate(
    results: Results,
    label: str,
    systems: list[str],
    runs: int,
    measure: Callable[[str], None],
) -> None:
    """``runs`` rounds, each visiting every system in a rotated order."""
    for run in range(runs):
        for system in rotated(systems, run):
            t0 = time.monotonic()
            try:
                measure(system)
            except BenchError as e:
                results.failures.append(f"{label} {system} run {run + 1}: {e}")
                log(f"FAILED {label} {system}: {e}")
                continue
            log(f"{label} run {run + 1}/{runs} {system}: {time.monotonic() - t0:.1f} s")


# ---- workloads -------------------------------------------------------------------


def http_keepalive(results: Results, cfg: Config, systems: list[str], logdir: Path) -> None:
    with servers(systems, "http", logdir) as running:

        def measure(system: str) -> None:
            server = running[system]
            server.check_alive()
            wrk(server.port, cfg.http_warmup_seconds)
            before = {name: cpu_seconds(pid) for name, pid in server.pids.items()}
            got = wrk(server.port, cfg.http_seconds)
            after = {name: cpu_seconds(pid) for name, pid in server.pids.items()}
            server.check_alive()
            if got["errors"]:
                raise BenchError(f"wrk reported {got['errors']} errors")
            if not got["requests"]:
                raise BenchError("wrk made no request")
            cpu = {name: (after[name] - before[name]) * 1e6 / got["requests"] for name in before}
            add = results.add
            add("http_keepalive", "split", system, "req_per_s", got["req_per_s"], "req/s", "higher")
            if system == "py_reactor":
                add(
                    "http_keepalive",
                    "split",
                    system,
                    "cpu_us_per_req",
                    cpu["port"],
                    "us",
                    "lower",
                    process="py_reactor_port (the port program)",
                )
                add(
                    "http_keepalive",
                    "split",
                    system,
                    "vm_cpu_us_per_req",
                    cpu["vm"],
                    "us",
                    "lower",
                    process="beam.smp (the Erlang VM: accept and handoff)",
                )
                add(
                    "http_keepalive",
                    "split",
                    system,
                    "total_cpu_us_per_req",
                    cpu["port"] + cpu["vm"],
                    "us",
                    "lower",
                    process="port program + Erlang VM",
                )
            else:
                process = (
                    "beam.smp (the Erlang VM)" if system == "gen_tcp" else "the server process"
                )
                add(
                    "http_keepalive",
                    "split",
                    system,
                    "cpu_us_per_req",
                    cpu["server"],
                    "us",
                    "lower",
                    process=process,
                )

        alternate(results, "http_keepalive", systems, cfg.http_runs, measure)


def app_workload(
    results: Results, cfg: Config, systems: list[str], workload: str, logdir: Path
) -> None:
    """wrk -c50 on keep-alive connections against a WSGI or ASGI application;
    CPU time per request of every process of the server (for py_reactor, the
    port program and the VM apart, and together). A system whose server does
    not start is recorded as failed; the others are measured."""
    with servers(systems, workload, logdir, results.failures) as running:

        def measure(system: str) -> None:
            server = running[system]
            server.check_alive()
            wrk(server.port, cfg.http_warmup_seconds)
            before = {name: cpu_seconds(pid) for name, pid in server.pids.items()}
            got = wrk(server.port, cfg.http_seconds)
            after = {name: cpu_seconds(pid) for name, pid in server.pids.items()}
            server.check_alive()
            if got["errors"]:
                raise BenchError(f"wrk reported {got['errors']} errors")
            if not got["requests"]:
                raise BenchError("wrk made no request")
            cpu = {name: (after[name] - before[name]) * 1e6 / got["requests"] for name in before}
            add = results.add
            add(workload, "split", system, "req_per_s", got["req_per_s"], "req/s", "higher")
            if system == "py_reactor":
                add(workload, "split", system, "cpu_us_per_req", cpu["port"], "us", "lower",
                    process="py_reactor_port (the port program)")
                add(workload, "split", system, "vm_cpu_us_per_req", cpu["vm"], "us", "lower",
                    process="beam.smp (the Erlang VM: accept and handoff)")
                add(workload, "split", system, "total_cpu_us_per_req", cpu["port"] + cpu["vm"],
                    "us", "lower", process="port program + Erlang VM")
            else:
                add(workload, "split", system, "cpu_us_per_req", sum(cpu.values()), "us",
                    "lower", process="every process of the server")

        alternate(results, workload, list(running), cfg.http_runs, measure)


def echo_workloads(
    results: Results, cfg: Config, systems: list[str], workloads: list[str], logdir: Path
) -> None:
    """Ping-pong (both pinnings), bulk, lifecycle and nif_bench, on one set of
    echo servers."""
    with servers(systems, "echo", logdir) as running:

        def pingpong(workload: str, size: int, pinning: str) -> None:
            cpus = PINNINGS[pinning]

            def measure(system: str) -> None:
                server = running[system]
                server.check_alive()
                server.move(cpus["server_cpus"])
                got = bench_load(
                    "pingpong",
                    server.port,
                    cpus["load_cpus"],
                    size=size,
                    count=cfg.pingpong_count,
                    warmup=cfg.pingpong_warmup,
                )
                for metric in ("p50_us", "p99_us"):
                    results.add(workload, pinning, system, metric, got[metric], "us", "lower")

            alternate(results, f"{workload} [{pinning}]", systems, cfg.runs, measure)
            for server in running.values():
                server.move(SERVER_CPU)

        def bulk(system: str) -> None:
            server = running[system]
            server.check_alive()
            got = bench_load(
                "bulk",
                server.port,
                LOAD_CPU,
                size=1 << 20,
                count=cfg.bulk_count,
                warmup=cfg.bulk_warmup,
            )
            results.add("bulk_1mib", "split", system, "mb_per_s", got["mb_per_s"], "MB/s", "higher")

        def lifecycle(system: str) -> None:
            server = running[system]
            server.check_alive()
            got = bench_load(
                "lifecycle",
                server.port,
                LOAD_CPU,
                size=64,
                count=cfg.lifecycle_count,
                warmup=cfg.lifecycle_warmup,
            )
            results.add("lifecycle", "split", system, "us_per_op", got["us_per_op"], "us", "lower")
            results.add("lifecycle", "split", system, "p50_us", got["p50_us"], "us", "lower")

        def nif_bench(pinning: str) -> None:
            cpus = PINNINGS[pinning]

            def measure(system: str) -> None:
                server = running[system]
                server.check_alive()
                server.move(cpus["server_cpus"])
                erl = ["erl", "-noshell", "+Bd", "-pa", str(APP_EBIN), "-pa", str(BENCH_EBIN)]
                if system == "py_reactor":
                    # The original workload: this client VM accepts and hands
                    # off to its own context, whose port program is moved to
                    # the server CPU.
                    args = ["py_reactor", str(PROTOCOLS), cpus["server_cpus"]]
                else:
                    args = ["remote", str(server.port)]
                counts = [str(cfg.nif_messages), str(cfg.nif_lifecycles)]
                cmd = [*erl, "-run", "bench_nif", "main", *args, *counts]
                out = run_load(cmd, cpus["load_cpus"], 300)
                found = re.findall(r"^RESULT (persistent|lifecycle) (\d+) ([\d.]+)$", out, re.M)
                if len(found) != 6:
                    raise BenchError(f"unexpected nif_bench output: {out}")
                for kind, size, ops in found:
                    metric = f"{kind}_{size}_ops_per_s"
                    results.add("nif_bench", pinning, system, metric, float(ops), "ops/s", "higher")

            alternate(results, f"nif_bench [{pinning}]", systems, cfg.nif_runs, measure)
            for server in running.values():
                server.move(SERVER_CPU)

        for workload in workloads:
            if workload in ("echo_pingpong_64", "echo_pingpong_16k"):
                size = 64 if workload == "echo_pingpong_64" else 16384
                pingpong(workload, size, "split")
                pingpong(workload, size, "same_core")
            elif workload == "bulk_1mib":
                alternate(results, workload, systems, cfg.runs, bulk)
            elif workload == "lifecycle":
                alternate(results, workload, systems, cfg.runs, lifecycle)
            elif workload == "nif_bench":
                nif_bench("split")
                nif_bench("same_core")


def listener_workloads(results: Results, cfg: Config, logdir: Path) -> None:
    """py_reactor through a listener, recorded as py_reactor's figures of the
    lifecycle, nif_bench and http_keepalive workloads under metric names that
    name the listener: ``listener_vm_us_per_op``, ``listener_port_us_per_op``
    (one context, each accept mode), ``listener_vm_lifecycle_64_ops_per_s``, ...
    (nif_bench's client against the listener) and ``contexts_1_req_per_s``,
    ``contexts_2_cpu_us_per_req``, ... (HTTP, accept => vm, 1 and 2 contexts;
    the CPU of the VM and every port program together)."""
    modes = ["listener_vm", "listener_port"]
    with servers(modes, "echo", logdir) as running:

        def lifecycle(name: str) -> None:
            server = running[name]
            server.check_alive()
            got = bench_load(
                "lifecycle",
                server.port,
                LOAD_CPU,
                size=64,
                count=cfg.lifecycle_count,
                warmup=cfg.lifecycle_warmup,
            )
            results.add(
                "lifecycle",
                "split",
                "py_reactor",
                f"{name}_us_per_op",
                got["us_per_op"],
                "us",
                "lower",
            )
            results.add(
                "lifecycle", "split", "py_reactor", f"{name}_p50_us", got["p50_us"], "us", "lower"
            )

        def nif_bench(name: str) -> None:
            server = running[name]
            server.check_alive()
            erl = ["erl", "-noshell", "+Bd", "-pa", str(BENCH_EBIN)]
            counts = [str(cfg.nif_messages), str(cfg.nif_lifecycles)]
            cmd = [*erl, "-run", "bench_nif", "main", "remote", str(server.port), *counts]
            out = run_load(cmd, LOAD_CPU, 300)
            found = re.findall(r"^RESULT lifecycle (\d+) ([\d.]+)$", out, re.M)
            if len(found) != 3:
                raise BenchError(f"unexpected nif_bench output: {out}")
            for size, ops in found:
                metric = f"{name}_lifecycle_{size}_ops_per_s"
                results.add(
                    "nif_bench", "split", "py_reactor", metric, float(ops), "ops/s", "higher"
                )

        alternate(results, "lifecycle [listener]", modes, cfg.runs, lifecycle)
        alternate(results, "nif_bench [listener]", modes, cfg.nif_runs, nif_bench)

    pools = ["listener_1ctx", "listener_2ctx"]
    with servers(pools, "http", logdir) as running:

        def http(name: str) -> None:
            server = running[name]
            server.check_alive()
            wrk(server.port, cfg.http_warmup_seconds)
            before = sum(cpu_seconds(pid) for pid in server.pids.values())
            got = wrk(server.port, cfg.http_seconds)
            after = sum(cpu_seconds(pid) for pid in server.pids.values())
            server.check_alive()
            if got["errors"] or not got["requests"]:
                raise BenchError(f"wrk: {got['errors']} errors, {got['requests']} requests")
            contexts = LISTENERS[name][1]
            cpu = (after - before) * 1e6 / got["requests"]
            add = results.add
            add(
                "http_keepalive",
                "split",
                "py_reactor",
                f"contexts_{contexts}_req_per_s",
                got["req_per_s"],
                "req/s",
                "higher",
            )
            add(
                "http_keepalive",
                "split",
                "py_reactor",
                f"contexts_{contexts}_cpu_us_per_req",
                cpu,
                "us",
                "lower",
                process="beam.smp + every port program",
            )

        alternate(results, "http_keepalive [listener]", pools, cfg.http_runs, http)


def idle_memory(results: Results, cfg: Config, systems: list[str], logdir: Path) -> None:
    """A fresh server per measurement: its RSS before and after 10,000
    connections (each checked with one echo) are open."""

    def measure(system: str) -> None:
        with servers([system], "echo", logdir) as running:
            server = running[system]
            # One connection first, so that lazily loaded code is in the baseline.
            bench_load("lifecycle", server.port, LOAD_CPU, size=16, count=5, warmup=0)
            pids = list(server.pids.items())
            got = bench_load(
                "idle",
                server.port,
                LOAD_CPU,
                timeout=600,
                conns=cfg.idle_conns,
                pid=[pid for _, pid in pids],
            )
            server.check_alive()
        per_conn = {
            name: (p["rss_after"] - p["rss_before"]) / got["conns"]
            for (name, _), p in zip(pids, got["processes"], strict=True)
        }
        add = results.add
        if system == "py_reactor":
            add(
                "idle_memory",
                "split",
                system,
                "rss_bytes_per_conn",
                per_conn["port"],
                "bytes",
                "lower",
                process="py_reactor_port (the port program)",
            )
            add(
                "idle_memory",
                "split",
                system,
                "vm_rss_bytes_per_conn",
                per_conn["vm"],
                "bytes",
                "lower",
                process="beam.smp (the Erlang VM)",
            )
        else:
            process = "beam.smp (the Erlang VM)" if system == "gen_tcp" else "the server process"
            add(
                "idle_memory",
                "split",
                system,
                "rss_bytes_per_conn",
                per_conn["server"],
                "bytes",
                "lower",
                process=process,
            )
        add("idle_memory", "split", system, "open_seconds", got["open_seconds"], "s", "lower")

    alternate(results, "idle_memory", systems, cfg.idle_runs, measure)


# ---- machine and run -------------------------------------------------------------


def command_output(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (
        (done.stdout + done.stderr).strip().splitlines()[0]
        if (done.stdout + done.stderr).strip()
        else "unknown"
    )


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    os_release = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            key, _, value = line.partition("=")
            os_release[key] = value.strip('"')
    erlang = command_output(
        [
            "erl",
            "-noshell",
            "-eval",
            'io:format("~s (erts ~s)~n", '
            "[erlang:system_info(otp_release), erlang:system_info(version)]), halt().",
        ],
    )
    return {
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "kernel": platform.release(),
        "os": os_release.get("PRETTY_NAME", platform.platform()),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "python_in_port": command_output(
            [str(PORT_BIN), "python", "-c", "import sys; print(sys.version.split()[0])"]
        ),
        "erlang": erlang,
        "rust": command_output(["rustc", "--version"]),
        "uvloop": package_version("uvloop"),
        "gunicorn": package_version("gunicorn"),
        "granian": package_version("granian"),
        "flask": package_version("flask"),
        "uvicorn": package_version("uvicorn"),
        "httptools": package_version("httptools"),
        "starlette": package_version("starlette"),
        "matplotlib": package_version("matplotlib"),
        "wrk": command_output(["wrk", "-v"]).split(" Copyright")[0],
    }


def git_commit() -> str | None:
    """The checked-out commit, read from .git without running git."""
    git = ROOT / ".git"
    with contextlib.suppress(OSError, ValueError):
        if git.is_file():  # a worktree: "gitdir: PATH"
            git = (ROOT / git.read_text().split(":", 1)[1].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
    return None


# ---- main ------------------------------------------------------------------------


def check_prerequisites() -> None:
    missing = [
        str(path.relative_to(ROOT))
        for path in (
            NATIVE_BIN / "native_server",
            NATIVE_BIN / "bench_load",
            PORT_BIN,
            APP_EBIN / "py_reactor_context.beam",
            BENCH_EBIN / "bench_nif.beam",
            BENCH_EBIN / "bench_gen_tcp_server.beam",
            BENCH_EBIN / "bench_py_reactor_server.beam",
            BENCH_EBIN / "bench_py_reactor_listener.beam",
        )
        if not path.exists()
    ]
    tools = [t for t in ("wrk", "taskset", "erl") if shutil.which(t) is None]
    if missing or tools:
        sys.exit(
            f"bench: missing {', '.join(missing + tools)}: run `make bench` (or "
            "`make bench-quick`), which builds and installs what the benchmark needs"
        )
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs at least 2 CPUs (the server on CPU 1, the load generator on CPU 0)")


def output_paths(
    update_committed: bool, out: str | None, chart: str | None, docs: str | None
) -> tuple[Path, Path, Path | None]:
    """Where a run writes: (result file, chart, docs page or None).

    Paths given win; the others are the committed files with
    ``update_committed``, else files under _build/bench/results/, ignored by
    git, and no docs page.
    """
    base = COMMITTED_RESULTS if update_committed else LOCAL_RESULTS
    default_docs = ROOT / "docs/performance.md" if update_committed else None
    return (
        Path(out) if out else base / "latest.json",
        Path(chart) if chart else base / "latest.png",
        Path(docs) if docs else default_docs,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run every benchmark workload against every system."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer and shorter runs (under two minutes)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        help="runs per system of every workload (default: as --quick or not says)",
    )
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--systems", help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument(
        "--update-committed",
        action="store_true",
        help="write the committed results: bench/results/latest.json and .png and the results "
        "section of docs/performance.md (what `make bench` does)",
    )
    parser.add_argument(
        "--out", help=f"result file (default {LOCAL_RESULTS / 'latest.json'}, or the committed one)"
    )
    parser.add_argument(
        "--chart", help=f"chart file (default {LOCAL_RESULTS / 'latest.png'}, or the committed one)"
    )
    parser.add_argument(
        "--docs", help="docs page whose results section to update (default: none, or "
        "docs/performance.md with --update-committed)"
    )
    parser.add_argument("--no-docs", action="store_true", help="update no docs page")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    args = parser.parse_args(argv)
    args.out, args.chart, docs = output_paths(
        args.update_committed, args.out, args.chart, args.docs
    )
    if args.no_docs:
        docs = None
    args.docs, args.no_docs = str(docs) if docs else None, docs is None

    cfg = QUICK if args.quick else FULL
    if args.runs:
        runs = {"runs", "http_runs", "idle_runs", "nif_runs"}
        cfg = Config(**{k: args.runs if k in runs else v for k, v in cfg.__dict__.items()})
    workloads = args.workloads.split(",") if args.workloads else WORKLOADS
    systems = args.systems.split(",") if args.systems else SYSTEMS
    chosen_systems = list(systems)
    for name, chosen, allowed in (("workload", workloads, WORKLOADS), ("system", systems, SYSTEMS)):
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            parser.error(f"unknown {name}: {', '.join(unknown)}")
    check_prerequisites()

    started = time.monotonic()
    date = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    logdir = Path(tempfile.mkdtemp(prefix="py_reactor_bench."))
    results = Results()
    not_echo = ("http_keepalive", "idle_memory", "listener", *WSGI_WORKLOADS, *ASGI_WORKLOADS)
    echo = [w for w in WORKLOADS if w in workloads and w not in not_echo]
    wsgi_systems = [s for s in WSGI_SYSTEMS if s in systems]
    asgi_systems = [s for s in ASGI_SYSTEMS if s in systems]
    systems = [s for s in systems if s not in PEER_SYSTEMS]
    groups: list[tuple[str, Callable[[], None]]] = [
        ("http_keepalive", lambda: http_keepalive(results, cfg, systems, logdir)),
        (",".join(echo), lambda: echo_workloads(results, cfg, systems, echo, logdir)),
        ("idle_memory", lambda: idle_memory(results, cfg, systems, logdir)),
        (
            "listener" if "py_reactor" in systems else "",
            lambda: listener_workloads(results, cfg, logdir),
        ),
        *(
            (w, lambda w=w: app_workload(results, cfg, wsgi_systems, w, logdir))
            for w in WSGI_WORKLOADS
        ),
        *(
            (w, lambda w=w: app_workload(results, cfg, asgi_systems, w, logdir))
            for w in ASGI_WORKLOADS
        ),
    ]
    try:
        for name, run_group in groups:
            if name and set(name.split(",")) <= set(workloads):
                try:
                    run_group()
                except BenchError as e:
                    # A server that would not start: the other groups still run.
                    results.failures.append(f"{name}: {e}")
                    log(f"FAILED {name}: {e}")
    finally:
        if args.keep_logs or results.failures:
            log(f"server logs kept in {logdir}")
        else:
            shutil.rmtree(logdir, ignore_errors=True)

    data: dict[str, Any] = {
        "machine": machine_info(),
        "run": {
            "date": date,
            "git_commit": git_commit(),
            "quick": args.quick,
            "mode": "quick" if args.quick else "full",
            "runs": cfg.runs,
            "config": cfg.__dict__,
            "workloads": workloads,
            "systems": chosen_systems,
            "pinning": {
                name: {**cpus, "meaning": report.PINNING_LABELS[name]}
                for name, cpus in PINNINGS.items()
            },
            "aggregate": "median over runs (each value's runs are in its 'runs')",
            "seconds": round(time.monotonic() - started, 1),
            "failures": results.failures,
        },
        "results": results.objects(),
    }
    data["targets"] = report.evaluate_targets(data["results"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(report.text_tables(data))
    Path(args.chart).parent.mkdir(parents=True, exist_ok=True)
    report.draw_chart(data, Path(args.chart))
    if not args.no_docs:
        docs = Path(args.docs)
        chart = os.path.relpath(Path(args.chart).resolve(), docs.resolve().parent)
        if not docs.exists() or not report.update_docs(docs, data, chart):
            log(f"{docs}: no results markers; not updated")
    log(f"wrote {out}, {args.chart}; {data['run']['seconds']} s")
    if results.failures:
        log(f"{len(results.failures)} measurements failed:")
        for failure in results.failures:
            log(f"  {failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
