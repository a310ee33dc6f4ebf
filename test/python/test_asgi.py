"""erlang.asgi: what can be checked without a running port loop (the HTTP
side is tested over real sockets in test/port/asgi.rs)."""

from __future__ import annotations

import pytest

from erlang import asgi, wsgi


async def app(scope, receive, send):
    pass


def test_client_disconnected_is_an_os_error() -> None:
    # ASGI HTTP spec 2.4: send() on a closed connection raises an OSError.
    assert issubclass(asgi.ClientDisconnected, OSError)


def test_lifespan_modes() -> None:
    for mode in ("auto", "on", "off"):
        assert asgi.Lifespan(app, mode).mode == mode
    assert not asgi.Lifespan(app, "off").supported
    with pytest.raises(ValueError, match="lifespan must be auto, on or off"):
        asgi.Lifespan(app, "sometimes")


def test_coroutine_callables_are_asgi() -> None:
    assert wsgi.interface_of(app) == "asgi"
