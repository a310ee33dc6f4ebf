"""WSGI applications for the HTTP tests (test/port/http.rs, the CT suites).

Every application here runs under ``wsgiref.validate.validator`` and turns
the validator's warnings into errors, so that a server that breaks PEP 3333
fails the test that touches the broken part (a 500, a Python error counted).
"""

from __future__ import annotations

import io
import json
import threading
import time
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)

CLOSED = 0
"""How many response iterables have been closed."""
FILE_READS = 0
"""How many times a file sent through wsgi.file_wrapper was read by Python."""
_lock = threading.Lock()


class Closing:
    """A response iterable that counts its close() calls."""

    def __init__(self, parts):
        self._parts = iter(parts)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._parts)

    def close(self):
        global CLOSED
        with _lock:
            CLOSED += 1


class CountingFile(io.FileIO):
    """A file whose reads are counted: sendfile(2) never calls them."""

    def read(self, size=-1):
        global FILE_READS
        with _lock:
            FILE_READS += 1
        return super().read(size)

    def readinto(self, buffer):
        global FILE_READS
        with _lock:
            FILE_READS += 1
        return super().readinto(buffer)

    def close(self):
        global CLOSED
        if not self.closed:
            with _lock:
                CLOSED += 1
        super().close()


def _read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    chunks = []
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _raw(environ, start_response):
    path = environ["PATH_INFO"]
    query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
    text = [("Content-Type", "text/plain")]
    if path == "/hello":
        body = b"Hello, world!"
        start_response("200 OK", [*text, ("Content-Length", str(len(body)))])
        return [body]
    if path.startswith("/path/"):
        start_response("200 OK", text)
        return [path.encode("latin-1")]
    if path == "/echo":
        body = _read_body(environ)
        start_response("200 OK", text)
        return [body]
    if path == "/lines":
        # Reads the body with readline and checks every line: "%010d\n" in order.
        stream = environ["wsgi.input"]
        count = good = 0
        while True:
            line = stream.readline()
            if not line:
                break
            if line == b"%010d\n" % count:
                good += 1
            count += 1
        start_response("200 OK", text)
        return [f"lines={count} good={good}".encode()]
    if path == "/readlines":
        lines = environ["wsgi.input"].readlines()
        start_response("200 OK", text)
        return [f"{len(lines)}:{lines[-1].decode() if lines else ''}".encode()]
    if path == "/iterate":
        lines = list(environ["wsgi.input"])
        start_response("200 OK", text)
        return [b"|".join(line.rstrip(b"\n") for line in lines)]
    if path == "/stream":
        count, size = int(query.get("n", "3")), int(query.get("size", "5"))
        start_response("200 OK", text)
        return Closing(bytes([65 + i % 26]) * size for i in range(count))
    if path == "/write":
        write = start_response("200 OK", text)
        write(b"written ")
        write(b"directly")
        return Closing([b", then returned"])
    if path == "/file":
        handle = CountingFile(query["path"], "r")
        handle.seek(int(query.get("offset", "0")))
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](handle)
    if path == "/sleep":
        time.sleep(float(query["s"]))
        start_response("200 OK", text)
        return [b"slept"]
    if path == "/raise":
        raise ZeroDivisionError("the app failed before answering")
    if path == "/raise_midstream":
        start_response("200 OK", text)

        def parts():
            yield b"first part"
            raise KeyError("the app failed mid-stream")

        return Closing(parts())
    if path == "/exc_info":
        start_response("200 OK", text)
        try:
            raise ValueError("changed my mind")
        except ValueError:
            import sys

            start_response("503 Service Unavailable", text, sys.exc_info())
        return [b"recovered"]
    if path == "/errors":
        environ["wsgi.errors"].write("an error line from the app\n")
        environ["wsgi.errors"].flush()
        start_response("200 OK", text)
        return [b"logged"]
    if path == "/environ":
        keys = [
            "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
            "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
            "REMOTE_PORT", "HTTP_HOST", "HTTP_X_TWICE", "HTTP_COOKIE", "HTTP_X_UNDER_SCORE",
            "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
        ]
        seen = {k: environ.get(k) for k in keys}
        seen["wsgi.version"] = list(environ["wsgi.version"])
        seen["body"] = _read_body(environ).decode()
        seen["file_wrapper"] = environ["wsgi.file_wrapper"].__name__
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(seen).encode()]
    if path == "/closed":
        start_response("200 OK", text)
        return [f"closed={CLOSED} file_reads={FILE_READS}".encode()]
    start_response("404 Not Found", text)
    return [b"not found"]


raw_app = validator(_raw)
"""The raw WSGI application, under the validator."""

plain_app = _raw
"""The same application without the validator, whose wrapper hides a
``wsgi.file_wrapper`` result from the server (it can only iterate it)."""


def _no_args():
    return None


async def asgi_app(scope, receive, send):
    """An ASGI application that answers nothing (served as ASGI: a 500)."""


class AsgiObject:
    async def __call__(self, scope, receive, send):
        pass


asgi_object = AsgiObject()


def _flask():
    from flask import Flask, Response, jsonify, request, stream_with_context

    app = Flask("wsgi_apps")

    @app.route("/hello")
    def hello():
        return "Hello, world!"

    @app.route("/json/<name>")
    def as_json(name):
        return jsonify(name=name, args=request.args.to_dict())

    @app.route("/form", methods=["POST"])
    def form():
        return f"{request.form['a']}+{request.form['b']}"

    @app.route("/upload", methods=["PUT"])
    def upload():
        return str(len(request.get_data()))

    @app.route("/stream")
    def stream():
        def parts():
            for i in range(3):
                yield f"part{i};"

        return Response(stream_with_context(parts()), mimetype="text/plain")

    @app.route("/raise")
    def fail():
        return str(1 / 0)

    return app


flask_app = _flask()
flask_validated = validator(flask_app)
"""The Flask application, under the validator."""
