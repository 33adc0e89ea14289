"""The runner's event loop thread, its heartbeat, and the watchdog that names who blocks it.

The watchdog knows its culprits by code object (:meth:`LoopThread.watch`), not by name:
renaming a function cannot silently switch a warning off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

BLOCKED_AFTER = 1.0
"""Seconds the loop may go without a heartbeat before the runner warns that it is blocked."""

Culprit = Callable[[FrameType], tuple[object, str]]
"""Given the frame of a watched code object: (a key warned about once, the warning)."""


class LoopThread:
    """One event loop in its own daemon thread, for the life of the process.

    A heartbeat on the loop (every 0.1 s, which also calls ``on_beat``) and a watchdog
    thread: when the loop misses its heartbeat for over :data:`BLOCKED_AFTER` seconds,
    the watchdog looks at the loop thread's stack for a watched code object and appends
    its culprit's warning to ``notices``, once per key.
    """

    def __init__(self, notices: list[str], on_beat: Callable[[], None] | None = None) -> None:
        self.notices = notices
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._on_beat = on_beat
        self._culprits: dict[CodeType, Culprit] = {}
        self._warned: set[object] = set()
        self._beat = time.monotonic()
        self._closed = False

    def watch(self, code: CodeType, culprit: Culprit) -> None:
        """Name ``culprit`` when the loop is found blocked inside ``code``."""
        self._culprits[code] = culprit

    def start(
        self, setup: Callable[[asyncio.AbstractEventLoop], None]
    ) -> asyncio.AbstractEventLoop:
        """Start the loop thread (``setup`` runs first, on it) and the watchdog."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            setup(loop)
            loop.call_soon(self._heartbeat, loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self.thread = threading.Thread(target=serve, name="rageval-loop", daemon=True)
        self.thread.start()
        ready.wait()
        self.loop = loop
        threading.Thread(target=self._watch, name="rageval-watchdog", daemon=True).start()
        return loop

    def close(self, drain: Callable[[], None], stopped: Callable[[], None]) -> None:
        """On the loop: ``drain()``, then cancel every task and close the connections
        left open; then stop the loop, join its thread, call ``stopped`` and close it."""
        self._closed = True
        loop = self.loop
        if loop is None:
            return

        async def cancel_all() -> None:
            drain()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # HTTP clients (openai's httpx pools) keep connections open on this loop; nobody
            # can close them once it is gone, and their ResourceWarnings fail `-W error` runs
            transports = getattr(asyncio.get_running_loop(), "_transports", {})
            for transport in list(transports.values()):
                if transport is not None and not transport.is_closing():
                    transport.close()
            for _ in range(3):  # connection_lost callbacks close the sockets
                await asyncio.sleep(0)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self.thread is not None:
            self.thread.join(timeout=10)
        stopped()
        if not loop.is_running():
            loop.close()

    def _heartbeat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beat = time.monotonic()
        loop.call_later(0.1, self._heartbeat, loop)
        if self._on_beat is not None:  # on this thread, where the verdicts are gathered
            self._on_beat()

    def _watch(self) -> None:
        """Warn once when something blocks the loop: every question waits behind it, and
        no time-out can fire until it lets go."""
        while not self._closed:
            time.sleep(0.25)
            if time.monotonic() - self._beat <= BLOCKED_AFTER or self.thread is None:
                continue
            frames: dict[int | None, Any] = getattr(sys, "_current_frames", dict)()
            frame = frames.get(self.thread.ident)
            del frames
            culprit = self.culprit(frame)
            del frame
            if culprit is not None and culprit[0] not in self._warned:
                self._warned.add(culprit[0])
                self.notices.append(culprit[1])

    def culprit(self, frame: FrameType | None) -> tuple[object, str] | None:
        """Who is holding the loop, from its thread's current stack: (key, message)."""
        while frame is not None:
            named = self._culprits.get(frame.f_code)
            if named is not None:
                return named(frame)
            frame = frame.f_back
        return None
