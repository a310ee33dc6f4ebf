"""The WSGI applications of the wsgi_hello and wsgi_flask workloads.

Every system (py_reactor, gunicorn, granian) serves these same objects.
"""

from __future__ import annotations

from flask import Flask

HELLO = b"Hello, World!"


def hello(environ, start_response):
    """A bare WSGI application answering 13 bytes."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


flask = Flask(__name__)


@flask.route("/")
def index():
    return "Hello, World!"
