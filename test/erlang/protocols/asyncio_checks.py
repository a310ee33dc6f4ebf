"""Checks of the context's asyncio loop, run by py_reactor_asyncio_SUITE.

Each ``check_*`` coroutine function is given to ``py_reactor_context:call``,
so it runs as a task on the context's loop, and returns what the suite
matches.  They are modelled on CPython's ``test_asyncio`` (test_events,
test_base_events, test_sock_lowlevel, test_tasks).  The protocols at the end
are used with ``test_protocols.use``-style factories through :func:`use`.
"""

import asyncio
import gc
import socket
import subprocess
import sys
import threading

import erlang
import erlang.aio
import erlang.reactor as reactor


async def check_timer_order():
    loop = asyncio.get_running_loop()
    order = []
    done = loop.create_future()
    now = loop.time()
    loop.call_later(0.03, order.append, 3)
    loop.call_at(now + 0.01, order.append, 1)
    loop.call_later(0.02, order.append, 2)
    cancelled = loop.call_later(0.015, order.append, "cancelled")
    cancelled.cancel()
    loop.call_later(0.04, done.set_result, None)
    await done
    return order


async def check_call_soon_fifo():
    loop = asyncio.get_running_loop()
    order = []
    for i in range(10):
        loop.call_soon(order.append, i)
    handle = loop.call_soon(order.append, "cancelled")
    handle.cancel()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return order


async def check_sleep_waits():
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.sleep(0.2)
    return loop.time() - start >= 0.2


async def check_readers_writers():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        readable = loop.create_future()
        loop.add_reader(a.fileno(), lambda: readable.done() or readable.set_result(a.recv(100)))
        writable = loop.create_future()
        loop.add_writer(b.fileno(), lambda: writable.done() or writable.set_result(True))
        assert await asyncio.wait_for(writable, 5)
        removed_writer = loop.remove_writer(b.fileno())
        b.send(b"ping")
        data = await asyncio.wait_for(readable, 5)
        removed_reader = loop.remove_reader(a.fileno())
        again = loop.remove_reader(a.fileno())
        # Level-triggered, as a selector is: data left unread is reported
        # on every iteration until read.
        count = 0
        drained = loop.create_future()

        def on_readable():
            nonlocal count
            count += 1
            if count == 3:
                a.recv(100)
                loop.remove_reader(a.fileno())
                drained.set_result(None)

        b.send(b"x")
        loop.add_reader(a.fileno(), on_readable)
        await asyncio.wait_for(drained, 5)
        return (data, removed_writer, removed_reader, again, count)
    finally:
        a.close()
        b.close()


async def check_sock_recv_sendall():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    payload = bytes(range(256)) * 4096  # 1 MiB: more than a socket buffer

    async def receive():
        got = bytearray()
        while len(got) < len(payload):
            chunk = await loop.sock_recv(b, 65536)
            if not chunk:
                break
            got += chunk
        return bytes(got)

    try:
        receiver = asyncio.ensure_future(receive())
        await loop.sock_sendall(a, payload)
        got = await asyncio.wait_for(receiver, 10)
        buf = bytearray(4)
        await loop.sock_sendall(b, b"back")
        n = await loop.sock_recv_into(a, buf)
        return (got == payload, bytes(buf[:n]))
    finally:
        a.close()
        b.close()


async def check_cancellation():
    cleaned = []

    async def sleeper():
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append("finally")

    task = asyncio.ensure_future(sleeper())
    await asyncio.sleep(0)
    task.cancel()
    try:
        await task
        outcome = "not cancelled"
    except asyncio.CancelledError:
        outcome = "cancelled"
    try:
        await asyncio.wait_for(asyncio.sleep(60), 0.05)
        timeout = "no timeout"
    except asyncio.TimeoutError:  # noqa: UP041 (not the built-in before 3.11)
        timeout = "timeout"
    return (outcome, cleaned, timeout, task.cancelled())


async def check_threadsafe():
    loop = asyncio.get_running_loop()
    fut = loop.create_future()

    async def double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    results = []

    def worker():
        # The port is asleep in its wait (no timer is due): only the wake-up
        # of call_soon_threadsafe can bring it back.
        threading.Event().wait(0.1)
        results.append(asyncio.run_coroutine_threadsafe(double(21), loop).result(5))
        loop.call_soon_threadsafe(fut.set_result, "from thread")

    thread = threading.Thread(target=worker)
    thread.start()
    value = await asyncio.wait_for(fut, 10)
    await loop.run_in_executor(None, thread.join)
    return (value, results)


class _LineClient(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.data = b""

    def connection_made(self, transport):
        transport.write(b"protocol\n")

    def data_received(self, data):
        self.data += data

    def connection_lost(self, exc):
        self.done.set_result(self.data)


async def check_server_and_connection():
    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello\n")
        answer = await reader.readline()
        writer.close()
        await writer.wait_closed()
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        await loop.create_connection(lambda: _LineClient(done), "127.0.0.1", port)
        return (answer, await asyncio.wait_for(done, 10))
    finally:
        server.close()
        await server.wait_closed()


async def check_subprocess():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "print('from child')",
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return (out.strip(), proc.returncode)


async def check_not_offered():
    loop = asyncio.get_running_loop()
    found = []
    for name, call in [
        ("add_signal_handler", lambda: loop.add_signal_handler(15, print)),
        ("remove_signal_handler", lambda: loop.remove_signal_handler(15)),
    ]:
        try:
            call()
            found.append((name, "offered"))
        except NotImplementedError as e:
            found.append((name, "NotImplementedError" if str(e) else "no message"))
    for name, call in [
        ("run_forever", loop.run_forever),
        ("run_until_complete", lambda: loop.run_until_complete(asyncio.sleep(0))),
        ("stop", loop.stop),
        ("close", loop.close),
    ]:
        try:
            call()
            found.append((name, "offered"))
        except RuntimeError:
            found.append((name, "RuntimeError"))
    return found


async def check_running_loop():
    loop = asyncio.get_running_loop()
    return (
        loop is erlang.aio.get_loop(),
        asyncio.get_event_loop() is loop,
        isinstance(loop, asyncio.AbstractEventLoop),
        loop.is_running(),
    )


async def fail_in_task():
    async def boom():
        raise ValueError("nobody awaited me")

    task = asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0.01)
    del task
    gc.collect()
    return "left"


def sync_wrapper(x):
    """The specification's sync wrapper: asyncio.run inside a called function."""

    async def inner():
        await asyncio.sleep(0.01)
        return x + 1

    return asyncio.run(inner())


async def raise_in_coroutine():
    await asyncio.sleep(0)
    raise KeyError("from a task")


async def guarded(pid):
    """Waits forever; on cancellation, awaits in ``finally`` and tells pid."""
    try:
        erlang.send(pid, "guarded_started")
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0.01)
        erlang.send(pid, "guarded_cleaned_up")


class SleepThenAnswer(reactor.Protocol):
    """Answers each read after ``asyncio.sleep(1)`` in a task."""

    def data_received(self, data):
        asyncio.get_running_loop().create_task(self.answer(bytes(data)))
        return reactor.ASYNC_PENDING

    async def answer(self, data):
        await asyncio.sleep(1)
        self.write_buffer += b"slept:" + data
        reactor.signal_write_ready(self.fd)


class LoopInCallback(reactor.Protocol):
    """Answers whether the running loop inside data_received is the context's."""

    def data_received(self, data):
        loop = asyncio.get_running_loop()
        same = loop is erlang.aio.get_loop() and asyncio.get_event_loop() is loop
        self.write_buffer += b"yes" if same else b"no"
        return reactor.WRITE_PENDING


def use(name):
    reactor.set_protocol_factory(globals()[name])


async def _answer_on(sock, prefix):
    reader, writer = await asyncio.open_connection(sock=sock)
    line = await reader.readline()
    writer.write(prefix + line)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    return line.strip()


def serve_fd_sync(fd):
    """The specification's Method 2: the descriptor of a call argument served
    with asyncio streams inside asyncio.run (blocking the context)."""
    return asyncio.run(_answer_on(socket.socket(fileno=fd), b"sync:"))


async def serve_fd(fd):
    """The same as a coroutine function: a task on the context's loop."""
    return await _answer_on(socket.socket(fileno=fd), b"async:")


async def stubborn(pid):
    """Refuses to be cancelled."""
    erlang.send(pid, "stubborn_started")
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            pass
