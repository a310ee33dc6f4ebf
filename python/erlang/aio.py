"""The context's asyncio event loop, driven by the port's readiness loop.

Every context has one :class:`ReactorEventLoop`.  It is an ordinary
``asyncio.SelectorEventLoop`` (so ``sock_*``, ``create_connection``,
``open_connection``, ``start_server``, subprocess pipes and the rest work as
usual) whose *selector* is the port itself:

- :class:`PortSelector` passes ``register``/``modify``/``unregister`` to the
  port, which watches those descriptors in the same poller as the
  connections; its ``select()`` never blocks and returns what the port
  collected in its last wait;
- the port calls :func:`step` once per turn in which the loop has work (I/O
  events for it, callbacks made ready, a timer due): one iteration of the
  loop's ready queue.  :func:`step` returns how long the port may wait before
  the next iteration is due (the earliest timer), so nothing polls;
- ``call_soon_threadsafe`` writes to the loop's self-pipe, whose reading end
  the port watches like any other descriptor: it wakes the port's wait.

The loop counts as running on the port's thread from start-up on: inside
``data_received``, ``write_ready`` and every other callback,
``asyncio.get_running_loop()`` returns it.  A plain function given to
``py_reactor_context:call`` runs outside it (see :func:`run_call`), so that it
may block in ``asyncio.run()`` as it could in the original.

The loop runs as long as its context.  ``run_forever``,
``run_until_complete``, ``stop`` and ``close`` raise ``RuntimeError``, and
``add_signal_handler``/``remove_signal_handler`` raise
``NotImplementedError``: the port decides the process's signal dispositions.
When the context stops, pending tasks are cancelled and given a few loop
iterations to finish (their ``finally`` blocks run); see :func:`shutdown`.
"""

from __future__ import annotations

import asyncio
import inspect
import selectors
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

import _py_reactor

__all__ = [
    "PortSelector",
    "ReactorEventLoop",
    "get_loop",
    "install",
    "is_coroutine_function",
    "pending_tasks",
    "run_call",
    "shutdown",
    "start_call",
    "step",
]

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE
_T = TypeVar("_T")
# Python 3.12 starts a task's first step at once by itself.
_EAGER_START = sys.version_info >= (3, 12)


class _Started(asyncio.Handle):
    """What ``call_soon`` returns for a step it ran at once: nothing left to
    cancel."""

    def __init__(self) -> None:
        pass

    def cancel(self) -> None:
        pass

    def cancelled(self) -> bool:
        return False


_STARTED = _Started()


def _fileobj_to_fd(fileobj: Any) -> int:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"invalid file descriptor: {fd}")
    return fd


class _KeyMap(Mapping[Any, selectors.SelectorKey]):
    """The selector's registrations by file object or descriptor (read-only)."""

    def __init__(self, selector: PortSelector) -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector._keys)

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        return self._selector._keys[self._selector._lookup(fileobj)]

    def __iter__(self) -> Iterator[int]:
        return iter(self._selector._keys)


class PortSelector(selectors.BaseSelector):
    """A selector whose descriptors are watched by the port's own poller.

    ``register``, ``modify`` and ``unregister`` tell the port what to watch
    (level-triggered, as selectors are); ``select`` returns the events the
    port delivered in its last wait and never blocks, whatever its timeout.
    """

    def __init__(self) -> None:
        self._keys: dict[int, selectors.SelectorKey] = {}
        self._pending: list[tuple[int, int]] = []

    def _lookup(self, fileobj: Any) -> int:
        try:
            return _fileobj_to_fd(fileobj)
        except ValueError:
            # A closed socket has no number any more: find it by identity.
            for key in self._keys.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(_READ | _WRITE):
            raise ValueError(f"invalid events: {events!r}")
        fd = _fileobj_to_fd(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (fd {fd}) is already registered")
        _py_reactor.aio_watch(fd, events)
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            key = self._keys.pop(self._lookup(fileobj))
        except (KeyError, ValueError):
            raise KeyError(f"{fileobj!r} is not registered") from None
        _py_reactor.aio_unwatch(key.fd)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        if not events or events & ~(_READ | _WRITE):
            raise ValueError(f"invalid events: {events!r}")
        try:
            key = self._keys[self._lookup(fileobj)]
        except (KeyError, ValueError):
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events != key.events:
            _py_reactor.aio_watch(key.fd, events)
        key = key._replace(events=events, data=data)
        self._keys[key.fd] = key
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        pending, self._pending = self._pending, []
        ready = []
        for fd, mask in pending:
            key = self._keys.get(fd)
            if key is not None and mask & key.events:
                ready.append((key, mask & key.events))
        return ready

    def close(self) -> None:
        for fd in list(self._keys):
            _py_reactor.aio_unwatch(fd)
        self._keys.clear()
        self._pending.clear()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return _KeyMap(self)


class ReactorEventLoop(asyncio.SelectorEventLoop):
    """The context's event loop; see the module's documentation."""

    def __init__(self) -> None:
        super().__init__(PortSelector())

    # Anything that makes work for the next iteration tells the port, so
    # that it runs one in this turn or computes its wait from the new timer.

    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        if self._eager:
            # The first step of a task made by start_task(): run now.
            self._eager = False
            if context is None:
                callback(*args)
            else:
                context.run(callback, *args)
            return _STARTED
        handle = super().call_soon(callback, *args, context=context)
        _py_reactor.aio_schedule()
        return handle

    _eager = False

    def start_task(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """A task of ``coro`` whose first step runs now, before this returns,
        as ``asyncio.eager_task_factory`` does (Python 3.12): a coroutine that
        finishes without suspending costs no loop iteration.  Outside a task
        only (the port's callbacks); inside one, an ordinary task."""
        if _EAGER_START:
            return asyncio.Task(coro, loop=self, eager_start=True)
        if asyncio.current_task(self) is not None:
            return asyncio.Task(coro, loop=self)
        self._eager = True
        try:
            return asyncio.Task(coro, loop=self)
        finally:
            self._eager = False

    def call_at(
        self, when: float, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        handle = super().call_at(when, callback, *args, context=context)
        _py_reactor.aio_schedule()
        return handle

    def call_soon_threadsafe(
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        handle = super().call_soon_threadsafe(callback, *args, context=context)
        _py_reactor.aio_schedule()
        return handle

    def run_forever(self) -> None:
        raise RuntimeError(
            "the context's event loop is run by the port: start work with "
            "asyncio.create_task() or loop.call_soon() instead of running the loop"
        )

    def run_until_complete(self, future: Any) -> Any:
        if inspect.iscoroutine(future):
            future.close()
        raise RuntimeError(
            "the context's event loop is run by the port: start the coroutine with "
            "asyncio.create_task() (or use asyncio.run() in a function given to "
            "py_reactor_context:call, which runs outside this loop)"
        )

    def stop(self) -> None:
        raise RuntimeError(
            "the context's event loop runs as long as the context: stop the context instead"
        )

    def close(self) -> None:
        raise RuntimeError("the context's event loop is closed by the port when the context stops")

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        raise NotImplementedError(
            "add_signal_handler is not offered by the py_reactor loop: the port "
            "program decides the process's signal dispositions"
        )

    def remove_signal_handler(self, sig: int) -> bool:
        raise NotImplementedError("remove_signal_handler is not offered by the py_reactor loop")

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Send what the loop reports (an exception nobody retrieved, a
        failing callback) to the VM's logger at level ``error``."""
        lines = [str(context.get("message") or "Unhandled exception in the event loop")]
        for name in sorted(context):
            if name not in ("message", "exception"):
                lines.append(f"{name}: {context[name]!r}")
        exc = context.get("exception")
        if exc is not None:
            formatted = traceback.format_exception(type(exc), exc, exc.__traceback__)
            lines.append("".join(formatted).rstrip())
        _py_reactor.log("error", "asyncio: " + "\n".join(lines))

    # The port's side.

    def _port_step(self, events: list[tuple[int, int]]) -> float | None:
        selector = self._selector
        assert isinstance(selector, PortSelector)
        selector._pending.extend(events)
        self._run_once()
        return self._port_timeout()

    def _port_timeout(self) -> float | None:
        if self._ready:
            return 0.0
        scheduled = self._scheduled
        if scheduled and scheduled[0].cancelled():
            # The next iteration drops cancelled timers; one at the top of
            # the heap must not make the port sleep until its old deadline.
            return 0.0
        if scheduled:
            return max(0.0, scheduled[0].when() - self.time())
        return None


_loop: ReactorEventLoop | None = None


def install() -> ReactorEventLoop:
    """Create the context's loop and make it the running loop of this thread.

    Called by the port once, when the context is set up.
    """
    global _loop
    if _loop is None:
        loop = ReactorEventLoop()
        # The state run_forever() would set up: the loop is running on this
        # thread for as long as the port runs.
        loop._thread_id = threading.get_ident()  # type: ignore[attr-defined]
        sys.set_asyncgen_hooks(
            firstiter=loop._asyncgen_firstiter_hook,  # type: ignore[attr-defined]
            finalizer=loop._asyncgen_finalizer_hook,  # type: ignore[attr-defined]
        )
        asyncio.set_event_loop(loop)
        asyncio.events._set_running_loop(loop)
        _loop = loop
    else:
        # A new reactor in the same process (replay runs several): it
        # watches nothing yet, so tell it what the loop watches.
        selector = _loop._selector
        assert isinstance(selector, PortSelector)
        for key in selector._keys.values():
            _py_reactor.aio_watch(key.fd, key.events)
    return _loop


def get_loop() -> ReactorEventLoop:
    """The context's loop (installed at set-up)."""
    if _loop is None:
        raise RuntimeError("the context's event loop is not installed")
    return _loop


def step(events: list[tuple[int, int]]) -> float | None:
    """One iteration of the loop with ``events`` (descriptor, selectors mask)
    from the port's last wait; returns the seconds until the next iteration
    is due, ``0.0`` when callbacks are ready, ``None`` when nothing is
    scheduled."""
    return get_loop()._port_step(events)


def pending_tasks() -> int:
    """How many tasks of the context's loop are not done."""
    if _loop is None:
        return 0
    return len(asyncio.all_tasks(_loop))


def shutdown() -> int:
    """Cancel every pending task of the loop; returns how many.

    The port then runs loop iterations (with real waits) until they are done
    or a time limit passes, so their ``finally`` blocks and cleanup awaits run.
    """
    if _loop is None:
        return 0
    tasks = asyncio.all_tasks(_loop)
    for task in tasks:
        task.cancel()
    return len(tasks)


def run_call(function: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run a function given to ``py_reactor_context:call``.

    A plain function runs outside the context's loop: no loop is running
    during the call, so ``asyncio.run()`` inside it works (and blocks the
    context until it returns, as in the original).
    """
    loop = _loop
    if loop is None:
        return function(*args)
    asyncio.events._set_running_loop(None)
    try:
        return function(*args)
    finally:
        asyncio.set_event_loop(loop)
        asyncio.events._set_running_loop(loop)


def is_coroutine_function(function: Any) -> bool:
    """Whether ``py_reactor_context:call`` runs ``function`` as a task."""
    return inspect.iscoroutinefunction(function)


def start_call(
    function: Callable[..., Any], args: tuple[Any, ...], token: int
) -> asyncio.Task[Any]:
    """Run the coroutine function given to ``py_reactor_context:call`` as a
    task on the context's loop; the port replies to the call (``token``)
    when the task completes, with its result or its exception."""
    task = get_loop().create_task(function(*args))
    task.add_done_callback(lambda done: _py_reactor.aio_call_done(token, done))
    return task
