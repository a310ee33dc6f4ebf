"""Helpers shared by the tests (plain functions; fixtures are in conftest.py)."""

from __future__ import annotations

import socket


def fill(sock: socket.socket) -> int:
    """Fill the send buffer of non-blocking ``sock`` until it would block."""
    total = 0
    chunk = b"\0" * 65536
    for _ in range(10_000):
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total
    raise AssertionError("the socket never filled up")


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes from blocking ``sock``."""
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise AssertionError(f"EOF after {len(chunks)} of {size} bytes")
        chunks.extend(chunk)
    return bytes(chunks)
