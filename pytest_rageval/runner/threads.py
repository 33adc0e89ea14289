"""The sync-app thread bridge: sync query engines and callables run in daemon threads and
hand their results back to the runner's loop in batches."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class DaemonThreads(concurrent.futures.Executor):
    """Threads for sync query engines and callables that never hold up the process.

    A call that times out is abandoned: its thread stays busy, a new call gets a new
    thread, so it costs the pool nothing, and (unlike ``ThreadPoolExecutor``, whose
    threads are joined at interpreter exit) a call that never returns cannot keep the
    process alive after pytest has finished.

    :meth:`call` hands results back to an event loop in batches: one wake-up of the loop
    for all the calls that finished since its last one, instead of one per call (with a
    fast sync app, the loop's wake-ups were a fifth of its time).
    """

    def __init__(self, name: str = "rageval-sync", max_idle: int = 64) -> None:
        self._name = name
        self._max_idle = max_idle
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._count = itertools.count(1)
        self._shutdown = False
        self._finished: list[tuple[asyncio.Future[Any], bool, Any]] = []
        self._wake_pending = False

    def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[[Any], T], arg: Any) -> Any:
        """``fn(arg)`` in a thread, as an awaitable of ``loop`` (call it on that loop).
        Cancelling it abandons the call."""
        future: asyncio.Future[T] = loop.create_future()
        # the caller's context goes along (what the call's LLM usage is counted into)
        context = contextvars.copy_context()

        def in_context(value: Any) -> T:
            return context.run(fn, value)

        self.submit(self._into, loop, future, in_context, arg)
        return future

    def _into(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        fn: Callable[[Any], Any],
        arg: Any,
    ) -> None:
        if future.cancelled():  # abandoned before it started (a racy read, on purpose)
            return
        try:
            value, ok = fn(arg), True
        except BaseException as exc:
            value, ok = exc, False
        with self._lock:
            self._finished.append((future, ok, value))
            wake, self._wake_pending = not self._wake_pending, True
        if wake:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._hand_back)

    def _hand_back(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
            self._wake_pending = False
        for future, ok, value in finished:
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run new calls after shutdown")
            start = self._idle == 0
            if not start:
                self._idle -= 1  # that idle thread will take this call
        self._queue.put((future, fn, args, kwargs))
        if start:
            name = f"{self._name}-{next(self._count)}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args, kwargs = item
            del item
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            with self._lock:
                if self._shutdown or self._idle >= self._max_idle:
                    return
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._queue.put(None)
