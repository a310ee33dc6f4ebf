"""erlang.wsgi: how an app_callable is recognised, and the file wrapper."""

from __future__ import annotations

import io

import pytest

import erlang.reactor as reactor
from erlang import wsgi


class Proto(reactor.Protocol):
    pass


def wsgi_app(environ, start_response):
    return []


def factory():
    return Proto()


async def asgi_app(scope, receive, send):
    pass


class AsgiObject:
    async def __call__(self, scope, receive, send):
        pass


class WsgiObject:
    def __call__(self, environ, start_response):
        return []


def test_auto_picks_by_shape() -> None:
    assert wsgi.interface_of(Proto) == "protocol"
    assert wsgi.interface_of(factory) == "protocol"
    assert wsgi.interface_of(lambda: Proto()) == "protocol"
    assert wsgi.interface_of(wsgi_app) == "wsgi"
    assert wsgi.interface_of(WsgiObject()) == "wsgi"
    for asgi in (asgi_app, AsgiObject()):
        assert wsgi.interface_of(asgi) == "asgi"


def test_an_explicit_interface_wins() -> None:
    assert wsgi.interface_of(factory, "wsgi") == "wsgi"
    assert wsgi.interface_of(wsgi_app, "protocol") == "protocol"
    assert wsgi.interface_of(wsgi_app, "asgi") == "asgi"
    with pytest.raises(ValueError, match="app_interface"):
        wsgi.interface_of(wsgi_app, "cgi")
    with pytest.raises(TypeError, match="not callable"):
        wsgi.interface_of(42)


def test_file_wrapper_iterates_in_blocks_and_closes() -> None:
    data = io.BytesIO(b"abcdefg")
    wrapper = wsgi.FileWrapper(data, 3)
    assert list(wrapper) == [b"abc", b"def", b"g"]
    wrapper.close()
    assert data.closed


def test_errors_stream_logs_complete_lines_at_error() -> None:
    lines: list[tuple[str, str]] = []
    def sink(level: str, line: str) -> None:
        lines.append((level, line))

    stream = type(wsgi.errors)("error", "wsgi.errors", sink)
    stream.write("one\ntw")
    stream.writelines(["o\n"])
    stream.flush()
    assert lines == [("error", "one"), ("error", "two")]
    assert wsgi.errors.level == "error"
