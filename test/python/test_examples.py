"""The example protocols, driven as the port drives them, over real sockets."""

from __future__ import annotations

import importlib
import socket

import pytest

import echo_protocol
import erlang.reactor as reactor
import http_protocol
from support import fill, recv_exactly

RB = reactor.ReactorBuffer


def drain_writes(fd: int, limit: int = 1000) -> str:
    """Call on_write_ready until the protocol stops asking to write."""
    for _ in range(limit):
        action = reactor.on_write_ready(fd)
        if action != reactor.CONTINUE:
            return action
    raise AssertionError("write_ready kept answering 'continue'")


def read_available(sock: socket.socket) -> bytes:
    """Everything the peer can read right now (the writer has finished)."""
    sock.setblocking(False)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data.extend(chunk)
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(5)
    return bytes(data)


# Echo


def test_importing_echo_protocol_sets_the_factory(pair) -> None:
    ours, _peer = pair
    importlib.reload(echo_protocol)
    proto = reactor.init_connection(ours.fileno(), {})
    assert type(proto).__name__ == "EchoProtocol"
    assert type(proto).__module__ == "echo_protocol"


def test_echo_round_trip(make_pair, capsys) -> None:
    ours, peer = make_pair(socket.AF_INET)
    fd = ours.fileno()
    reactor.set_protocol_factory(echo_protocol.EchoProtocol)
    proto = reactor.init_connection(fd, {"addr": "127.0.0.1", "port": 5555, "type": "tcp"})
    assert capsys.readouterr().out == "Connection from 127.0.0.1:5555\n"

    for message in (b"hello", b"second line\n"):
        assert reactor.on_read_ready(fd, RB(message)) == "write_pending"
        assert reactor.on_write_ready(fd) == "read_pending"
        assert recv_exactly(peer, len(message)) == message
    assert proto.write_buffer == b""

    reactor.close_connection(fd)
    assert capsys.readouterr().out == f"Connection closed: fd={fd}\n"
    assert proto.closed is True


def test_echo_closes_on_empty_data(pair) -> None:
    ours, _peer = pair
    reactor.set_protocol_factory(echo_protocol.EchoProtocol)
    reactor.init_connection(ours.fileno(), {})
    assert reactor.on_read_ready(ours.fileno(), RB(b"")) == "close"


def test_echo_with_write_ready_before_data(pair) -> None:
    ours, _peer = pair
    reactor.set_protocol_factory(echo_protocol.EchoProtocol)
    reactor.init_connection(ours.fileno(), {})
    assert reactor.on_write_ready(ours.fileno()) == "read_pending"


def test_echo_waits_for_a_full_socket(pair) -> None:
    ours, peer = pair
    fd = ours.fileno()
    reactor.set_protocol_factory(echo_protocol.EchoProtocol)
    proto = reactor.init_connection(fd, {})
    queued = fill(ours)
    assert reactor.on_read_ready(fd, RB(b"blocked")) == "write_pending"
    assert reactor.on_write_ready(fd) == "continue"
    assert proto.write_buffer == b"blocked"
    recv_exactly(peer, queued)
    assert reactor.on_write_ready(fd) == "read_pending"
    assert recv_exactly(peer, 7) == b"blocked"


def test_echo_large_payload_arrives_whole(pair) -> None:
    ours, peer = pair
    fd = ours.fileno()
    reactor.set_protocol_factory(echo_protocol.EchoProtocol)
    reactor.init_connection(fd, {})
    payload = bytes(range(256)) * 4096  # 1 MiB, several socket buffers
    assert reactor.on_read_ready(fd, RB(payload)) == "write_pending"
    received = bytearray()
    for _ in range(10_000):
        action = reactor.on_write_ready(fd)
        received.extend(read_available(peer))
        if action == "read_pending":
            break
        assert action == "continue"
    received.extend(read_available(peer))
    assert received == payload


# HTTP/1.0, the specification's example

GET = b"GET /hello HTTP/1.0\r\nHost: localhost\r\n\r\n"


def simple_response(path: str) -> bytes:
    body = f"Hello! You requested {path}"
    return (
        f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: text/plain\r\n\r\n{body}"
    ).encode()


def test_importing_http_protocol_sets_the_simple_factory(pair) -> None:
    ours, _peer = pair
    importlib.reload(http_protocol)
    proto = reactor.init_connection(ours.fileno(), {})
    assert type(proto).__name__ == "SimpleHTTPProtocol"


def test_simple_http_answers_and_closes(pair) -> None:
    ours, peer = pair
    fd = ours.fileno()
    reactor.set_protocol_factory(http_protocol.SimpleHTTPProtocol)
    reactor.init_connection(fd, {})
    assert reactor.on_read_ready(fd, RB(GET)) == "write_pending"
    assert reactor.on_write_ready(fd) == "close"
    expected = simple_response("/hello")
    assert recv_exactly(peer, len(expected)) == expected
    reactor.close_connection(fd)
    assert reactor.get_protocol(fd) is None


def test_simple_http_waits_for_the_end_of_the_headers(pair) -> None:
    ours, peer = pair
    fd = ours.fileno()
    reactor.set_protocol_factory(http_protocol.SimpleHTTPProtocol)
    reactor.init_connection(fd, {})
    assert reactor.on_read_ready(fd, RB(b"GET /a/b?c=d HTTP/1.0\r\nHost: x\r\n")) == "continue"
    assert reactor.on_read_ready(fd, RB(b"\r")) == "continue"
    assert reactor.on_read_ready(fd, RB(b"\n")) == "write_pending"
    assert reactor.on_write_ready(fd) == "close"
    expected = simple_response("/a/b?c=d")
    assert recv_exactly(peer, len(expected)) == expected


def test_simple_http_waits_for_a_full_socket(pair) -> None:
    ours, peer = pair
    fd = ours.fileno()
    reactor.set_protocol_factory(http_protocol.SimpleHTTPProtocol)
    reactor.init_connection(fd, {})
    queued = fill(ours)
    assert reactor.on_read_ready(fd, RB(GET)) == "write_pending"
    assert reactor.on_write_ready(fd) == "continue"
    recv_exactly(peer, queued)
    assert reactor.on_write_ready(fd) == "close"
    expected = simple_response("/hello")
    assert recv_exactly(peer, len(expected)) == expected


def test_simple_http_answers_garbage_with_400(pair) -> None:
    ours, peer = pair
    fd = ours.fileno()
    reactor.set_protocol_factory(http_protocol.SimpleHTTPProtocol)
    reactor.init_connection(fd, {})
    assert reactor.on_read_ready(fd, RB(b"garbage\r\n\r\n")) == "write_pending"
    assert reactor.on_write_ready(fd) == "close"
    assert peer.recv(1000).startswith(b"HTTP/1.0 400 Bad Request\r\n")


# HTTP/1.1 keep-alive


def keep_alive_connection(pair) -> tuple[int, socket.socket, http_protocol.KeepAliveHTTPProtocol]:
    ours, peer = pair
    reactor.set_protocol_factory(http_protocol.KeepAliveHTTPProtocol)
    proto = reactor.init_connection(ours.fileno(), {})
    assert isinstance(proto, http_protocol.KeepAliveHTTPProtocol)
    return ours.fileno(), peer, proto


def parse_responses(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Split a byte stream into (status line, headers, body) triples."""
    responses = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"incomplete response head: {data!r}"
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
        length = int(headers["content-length"])
        responses.append((status, headers, rest[:length]))
        data = rest[length:]
    return responses


def test_keep_alive_serves_several_requests_on_one_connection(pair) -> None:
    fd, peer, proto = keep_alive_connection(pair)
    for path in ("/one", "/two"):
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        assert reactor.on_read_ready(fd, RB(request)) == "write_pending"
        assert reactor.on_write_ready(fd) == "read_pending"
        [(status, headers, body)] = parse_responses(read_available(peer))
        assert status == "HTTP/1.1 200 OK"
        assert "connection" not in headers
        assert body == f"Hello! You requested {path}".encode()
    assert proto.requests_served == 2


def test_keep_alive_answers_pipelined_requests_in_order(pair) -> None:
    fd, peer, proto = keep_alive_connection(pair)
    pipelined = b"".join(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5))
    assert reactor.on_read_ready(fd, RB(pipelined)) == "write_pending"
    assert reactor.on_write_ready(fd) == "read_pending"
    responses = parse_responses(read_available(peer))
    assert [body for _, _, body in responses] == [
        f"Hello! You requested /{i}".encode() for i in range(5)
    ]
    assert proto.requests_served == 5


def test_keep_alive_keeps_a_partial_request_for_later(pair) -> None:
    fd, peer, _proto = keep_alive_connection(pair)
    data = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nHo"
    assert reactor.on_read_ready(fd, RB(data)) == "write_pending"
    assert reactor.on_write_ready(fd) == "read_pending"
    assert [b for _, _, b in parse_responses(read_available(peer))] == [b"Hello! You requested /a"]
    assert reactor.on_read_ready(fd, RB(b"st: x\r\n\r\n")) == "write_pending"
    assert reactor.on_write_ready(fd) == "read_pending"
    assert [b for _, _, b in parse_responses(read_available(peer))] == [b"Hello! You requested /b"]


def test_keep_alive_ignores_empty_lines_between_requests(pair) -> None:
    fd, peer, proto = keep_alive_connection(pair)
    data = b"\r\nGET /a HTTP/1.1\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\n\r\n"
    assert reactor.on_read_ready(fd, RB(data)) == "write_pending"
    assert reactor.on_write_ready(fd) == "read_pending"
    responses = parse_responses(read_available(peer))
    assert [status for status, _, _ in responses] == ["HTTP/1.1 200 OK"] * 2
    assert proto.requests_served == 2


def test_keep_alive_waits_for_the_headers(pair) -> None:
    fd, _peer, proto = keep_alive_connection(pair)
    assert reactor.on_read_ready(fd, RB(b"GET / HTTP/1.1\r\n")) == "continue"
    assert proto.write_buffer == b""


def test_keep_alive_honours_connection_close(pair) -> None:
    fd, peer, proto = keep_alive_connection(pair)
    data = (
        b"GET /first HTTP/1.1\r\n\r\n"
        b"GET /last HTTP/1.1\r\nConnection: close\r\n\r\n"
        b"GET /ignored HTTP/1.1\r\n\r\n"
    )
    assert reactor.on_read_ready(fd, RB(data)) == "write_pending"
    assert reactor.on_write_ready(fd) == "close"
    responses = parse_responses(read_available(peer))
    assert [body for _, _, body in responses] == [
        b"Hello! You requested /first",
        b"Hello! You requested /last",
    ]
    assert "connection" not in responses[0][1]
    assert responses[1][1]["connection"] == "close"
    assert proto.requests_served == 2
    assert proto.request_buffer == b""  # the rest was discarded


def test_keep_alive_connection_header_is_case_insensitive(pair) -> None:
    fd, peer, _proto = keep_alive_connection(pair)
    data = b"GET / HTTP/1.1\r\nCONNECTION: Keep-Alive, Close\r\n\r\n"
    assert reactor.on_read_ready(fd, RB(data)) == "write_pending"
    assert reactor.on_write_ready(fd) == "close"
    [(_, headers, _)] = parse_responses(read_available(peer))
    assert headers["connection"] == "close"


@pytest.mark.parametrize(
    ("connection", "last_action", "answer"),
    [
        ("", "close", "close"),
        ("Connection: keep-alive\r\n", "read_pending", "keep-alive"),
    ],
)
def test_keep_alive_with_http_1_0(pair, connection, last_action, answer) -> None:
    fd, peer, _proto = keep_alive_connection(pair)
    data = f"GET /old HTTP/1.0\r\n{connection}\r\n".encode()
    assert reactor.on_read_ready(fd, RB(data)) == "write_pending"
    assert reactor.on_write_ready(fd) == last_action
    [(status, headers, body)] = parse_responses(read_available(peer))
    assert status == "HTTP/1.1 200 OK"
    assert headers["connection"] == answer
    assert body == b"Hello! You requested /old"


def test_keep_alive_skips_request_bodies(pair) -> None:
    fd, peer, proto = keep_alive_connection(pair)
    body = b"GET /body HTTP/1.1\r\n\r\n"  # looks like a request, but is a body
    head = f"POST /form HTTP/1.1\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    assert reactor.on_read_ready(fd, RB(head + body[:10])) == "continue"
    assert proto.requests_served == 0
    rest = body[10:] + b"GET /next HTTP/1.1\r\n\r\n"
    assert reactor.on_read_ready(fd, RB(rest)) == "write_pending"
    assert reactor.on_write_ready(fd) == "read_pending"
    responses = parse_responses(read_available(peer))
    assert [body for _, _, body in responses] == [
        b"Hello! You requested /form",
        b"Hello! You requested /next",
    ]
    assert proto.requests_served == 2


def test_keep_alive_head_has_no_body(pair) -> None:
    fd, peer, _proto = keep_alive_connection(pair)
    data = b"HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\n\r\n"
    assert reactor.on_read_ready(fd, RB(data)) == "write_pending"
    assert reactor.on_write_ready(fd) == "read_pending"
    raw = read_available(peer)
    first_head, _, rest = raw.partition(b"\r\n\r\n")
    head_lines = first_head.split(b"\r\n")
    assert b"Content-Length: %d" % len(b"Hello! You requested /h") in head_lines
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n")
    [(_, _, body)] = parse_responses(rest)
    assert body == b"Hello! You requested /g"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"nonsense\r\n\r\n", "400 Bad Request"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", "400 Bad Request"),
        (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "400 Bad Request"),
        (b"GET / HTTP/2.0\r\n\r\n", "505 HTTP Version Not Supported"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "501 Not Implemented"),
        (b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", "413 Content Too Large"),
    ],
)
def test_keep_alive_rejects_bad_requests_and_closes(pair, data, status) -> None:
    fd, peer, proto = keep_alive_connection(pair)
    assert reactor.on_read_ready(fd, RB(data)) == "write_pending"
    assert reactor.on_write_ready(fd) == "close"
    [(status_line, headers, _)] = parse_responses(read_available(peer))
    assert status_line == f"HTTP/1.1 {status}"
    assert headers["connection"] == "close"
    assert proto.requests_served == 0


def test_keep_alive_limits_the_header_size(pair) -> None:
    fd, peer, _proto = keep_alive_connection(pair)
    assert reactor.on_read_ready(fd, RB(b"GET / HTTP/1.1\r\n")) == "continue"
    filler = b"X-Filler: " + b"y" * 1000 + b"\r\n"
    action = "continue"
    for _ in range(http_protocol.MAX_HEADER_BYTES // len(filler) + 2):
        action = reactor.on_read_ready(fd, RB(filler))
        if action != "continue":
            break
    assert action == "write_pending"
    assert reactor.on_write_ready(fd) == "close"
    [(status_line, _, _)] = parse_responses(read_available(peer))
    assert status_line == "HTTP/1.1 431 Request Header Fields Too Large"


def test_keep_alive_large_response_over_a_full_socket(pair) -> None:
    class Big(http_protocol.KeepAliveHTTPProtocol):
        def handle_request(self, request: http_protocol.Request) -> None:
            self.respond(request, 200, "OK", b"z" * (2 * 1024 * 1024))

    ours, peer = pair
    fd = ours.fileno()
    reactor.set_protocol_factory(Big)
    reactor.init_connection(fd, {})
    assert reactor.on_read_ready(fd, RB(b"GET / HTTP/1.1\r\n\r\n")) == "write_pending"
    received = bytearray()
    for _ in range(10_000):
        action = reactor.on_write_ready(fd)
        received.extend(read_available(peer))
        if action != "continue":
            break
    assert action == "read_pending"
    received.extend(read_available(peer))
    [(_, headers, body)] = parse_responses(bytes(received))
    assert headers["content-length"] == str(2 * 1024 * 1024)
    assert body == b"z" * (2 * 1024 * 1024)
