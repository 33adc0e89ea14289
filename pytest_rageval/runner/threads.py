"""The sync-app thread bridge: sync query engines and callables run in daemon threads and
hand their results back to the runner's loop in batches."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import itertools
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

SLOW_CALL = 0.005
"""Seconds a call takes on average above which each call is given a thread at once (the
app waits on something, as an HTTP call does): below it, fast calls share one thread."""

STALLED = 0.05
"""Seconds a queued call may wait behind busy threads before another thread takes it (the
busy ones may be hung)."""


class DaemonThreads(concurrent.futures.Executor):
    """Threads for sync query engines and callables that never hold up the process.

    Fast calls run one after another in as few threads as keep up with them: each thread
    woken is one more contending for the GIL with pytest's main thread, and with a fast
    app that contention cost more than the calls. Calls that take long (on average over
    :data:`SLOW_CALL`) get a thread each at once, as they wait rather than compute. A call
    queued for over :data:`STALLED` behind busy threads gets another thread, so a call
    that never returns holds up nothing but its own thread.

    A call that times out is abandoned: its thread stays busy, and (unlike
    ``ThreadPoolExecutor``, whose threads are joined at interpreter exit) a call that
    never returns cannot keep the process alive after pytest has finished.

    :meth:`call` hands results back to an event loop in batches: one wake-up of the loop
    for all the calls that finished since its last one, instead of one per call (with a
    fast sync app, the loop's wake-ups were a fifth of its time). A thread with more
    fast calls queued runs them before it wakes the loop, as long as the first result
    it holds is under :data:`SLOW_CALL` old: each wake-up is one more thread taking the
    GIL from pytest's main thread. A result held behind a call that then hangs is handed
    back by the loop's check every :data:`STALLED` seconds.
    """

    def __init__(self, name: str = "rageval-sync", max_idle: int = 64) -> None:
        self._name = name
        self._max_idle = max_idle
        self._pending: deque[tuple[float, Callable[[], None]]] = deque()
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._awake = 0
        """Threads taking calls (not parked)."""
        self._idle = 0
        """Threads parked, waiting on ``_wake``."""
        self._mean = 0.0
        """A moving average of how long calls take (seconds)."""
        self._count = itertools.count(1)
        self._shutdown = False
        self._checking: asyncio.AbstractEventLoop | None = None
        self._finished: list[tuple[asyncio.Future[Any], bool, Any]] = []
        self._held_since = 0.0
        """When the oldest of ``_finished`` finished (monotonic seconds)."""
        self._wake_pending = False

    def call(self, loop: asyncio.AbstractEventLoop, fn: Callable[[Any], T], arg: Any) -> Any:
        """``fn(arg)`` in a thread, as an awaitable of ``loop`` (call it on that loop).
        Cancelling it abandons the call."""
        future: asyncio.Future[T] = loop.create_future()
        # the caller's context goes along (what the call's LLM usage is counted into)
        context = contextvars.copy_context()
        self._queue(functools.partial(self._into, loop, future, context.run, fn, arg))
        if self._checking is not loop:  # while calls wait, look for stalled ones
            self._checking = loop
            loop.call_later(STALLED, self._check, loop)
        return future

    def _into(
        self,
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        run: Callable[..., Any],
        fn: Callable[[Any], Any],
        arg: Any,
    ) -> None:
        if future.cancelled():  # abandoned before it started (a racy read, on purpose)
            return
        value, ok, took = _timed(run, fn, arg)
        now = time.monotonic()
        with self._lock:
            # counted before the loop can see the result: the calls it queues next are
            # then placed knowing how long this one took
            self._took(took)
            if not self._finished:
                self._held_since = now
            self._finished.append((future, ok, value))
            wake = not self._wake_pending and (
                not self._pending  # nothing more queued: hand back now
                or self._mean > SLOW_CALL
                or now - self._held_since >= SLOW_CALL
            )
            if wake:
                self._wake_pending = True
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

    def _check(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, every :data:`STALLED` seconds while calls wait or run: a thread
        more for each call that has waited that long (the threads ahead of it are busy),
        and the results held that long handed back."""
        now = time.monotonic()
        with self._lock:
            stalled = sum(1 for queued, _ in self._pending if now - queued >= STALLED)
            wakes = [self._take_thread() for _ in range(stalled)]
            held = bool(self._finished) and now - self._held_since >= STALLED
            waiting = bool(self._pending or self._awake or self._finished)
            waiting = waiting and not self._shutdown
        self._start(wakes)
        if held:  # results a thread holds while it runs a call that takes long
            self._hand_back()
        if waiting:
            loop.call_later(STALLED, self._check, loop)
        else:
            self._checking = None

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                value, ok, took = _timed(fn, *args, **kwargs)
                with self._lock:
                    self._took(took)
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

        self._queue(run)
        return future

    def _queue(self, run: Callable[[], None]) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot run new calls after shutdown")
            self._pending.append((time.monotonic(), run))
            wake = self._awake == 0 or self._mean > SLOW_CALL
            wakes = [self._take_thread()] if wake else []
        self._start(wakes)

    def _take_thread(self) -> bool:
        """Count one more thread awake (under the lock): a parked one (False) or a new
        one (True), which :meth:`_start` then wakes or starts."""
        self._awake += 1
        if self._idle:
            self._idle -= 1
            return False
        return True

    def _start(self, wakes: list[bool]) -> None:
        for new in wakes:
            if new:
                name = f"{self._name}-{next(self._count)}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            else:
                self._wake.put(True)

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._pending:
                    run = self._pending.popleft()[1]
                else:
                    self._awake -= 1
                    if self._shutdown or self._idle >= self._max_idle:
                        return
                    self._idle += 1
                    run = None
            if run is None:
                if not self._wake.get():  # parked until there is work, or shutdown
                    return
                continue
            run()
            del run

    def _took(self, seconds: float) -> None:
        """A call took ``seconds``: into the moving average (with the lock held)."""
        self._mean += (seconds - self._mean) / 8

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._wake.put(False)


def _timed(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> tuple[Any, bool, float]:
    """``fn(*args, **kwargs)``: its value (or the exception it raised), whether it
    returned, and the seconds it took."""
    started = time.perf_counter()
    try:
        value, ok = fn(*args, **kwargs), True
    except BaseException as exc:
        value, ok = exc, False
    return value, ok, time.perf_counter() - started
