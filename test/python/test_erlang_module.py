"""The ``erlang`` module's atoms, and its calls into the VM when there is none
(``py_reactor_port python``): the CT suite py_reactor_erlang_module_SUITE
runs them against a real VM."""

from __future__ import annotations

import pytest

import erlang


def test_atom_is_a_str_that_stays_an_atom() -> None:
    ok = erlang.atom("ok")
    assert isinstance(ok, erlang.Atom)
    assert isinstance(ok, str)
    assert ok == "ok" and hash(ok) == hash("ok")
    assert {"ok": 1}[ok] == 1
    assert erlang.Atom("ok") == ok


def test_atom_needs_a_str() -> None:
    with pytest.raises(TypeError):
        erlang.atom(b"ok")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_vm",
    [
        lambda: erlang.whereis("init"),
        lambda: erlang.call("erlang", "node"),
    ],
)
def test_no_vm_here(request_vm) -> None:
    with pytest.raises(OSError, match="no Erlang VM"):
        request_vm()


def test_call_checks_its_arguments() -> None:
    with pytest.raises(TypeError):
        erlang.call("lists", "reverse", "not a list")
    with pytest.raises(ValueError):
        erlang.call("lists", "reverse", [], timeout=-1)
