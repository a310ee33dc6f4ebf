"""bench/run.py's handling of servers in the WSGI and ASGI workloads.

A system whose server does not start (py_reactor on a build that cannot
serve the application, say) must be that system's failure, reported with
the end of its log, while the other systems of the workload are measured.
The servers here are real processes started the harness's way (taskset, a
log file, the ``READY`` line), standing for a failing and a working server.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench/run.py")
    assert spec is not None and spec.loader is not None
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        module = importlib.util.module_from_spec(spec)
        sys.modules["bench_run"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    yield module
    sys.modules.pop("bench_run", None)


def fake_commands(run: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """py_reactor's server exits at once saying why; uvicorn's gets ready."""

    def command(self) -> list[str]:
        if self.system == "py_reactor":
            return ["sh", "-c", "echo 'FAILED to start: cannot serve asgi'; exit 1"]
        return ["sh", "-c", "echo READY 1 $$; exec sleep 60"]

    monkeypatch.setattr(run.Server, "command", command)


def test_a_server_that_does_not_start_fails_its_system_only(
    run: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_commands(run, monkeypatch)
    failures: list[str] = []
    with run.servers(["py_reactor", "uvicorn"], "asgi_hello", tmp_path, failures) as running:
        assert list(running) == ["uvicorn"]
        assert running["uvicorn"].port == 1
    assert len(failures) == 1, failures
    assert failures[0].startswith("asgi_hello py_reactor: py_reactor server exited (1)")
    assert "FAILED to start: cannot serve asgi" in failures[0]


def test_without_a_failure_list_a_server_that_does_not_start_fails_the_group(
    run: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_commands(run, monkeypatch)
    with (
        pytest.raises(run.BenchError, match="cannot serve asgi"),
        run.servers(["uvicorn", "py_reactor"], "echo", tmp_path),
    ):
        pass


def test_peer_servers_serve_the_workload_application(run: ModuleType, tmp_path: Path) -> None:
    def command(system: str, proto: str) -> list[str]:
        return run.Server(system, proto, "1", tmp_path).command()

    assert command("uvicorn", "asgi_hello")[1:] == [
        str(ROOT / "bench/servers/asgi_peer_server.py"), "--server", "uvicorn", "--app", "hello"
    ]
    granian = command("granian", "asgi_starlette")
    assert granian[-4:] == ["--server", "granian", "--app", "starlette"]
    assert command("granian", "wsgi_flask")[1:] == [
        str(ROOT / "bench/servers/wsgi_peer_server.py"), "--server", "granian", "--app", "flask"
    ]
    assert command("py_reactor", "asgi_starlette")[-3:-1] == ["asgi_starlette", "0"]
    assert set(run.ASGI_WORKLOADS) <= set(run.WORKLOADS)
    assert "uvicorn" in run.SYSTEMS
