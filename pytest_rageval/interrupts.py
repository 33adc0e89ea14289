"""Ctrl-C and SIGTERM during a rag run: stop spending at once, and let pytest end the run
where that is safe.

Python raises KeyboardInterrupt wherever the main thread happens to be; inside a
finalizer it is lost as an "unraisable" exception, and elsewhere it can take a while to
reach a hook. Until then every slot of the runner would keep sending paid requests. So
the guard's handler first tells the session to stop (``on_cancel``), then raises the
KeyboardInterrupt pytest expects where that is safe, or later where it is not.

SIGTERM is how CI cancels a job (GitHub Actions after SIGINT, others and ``timeout``
alone), so unless someone else handles it, it is Ctrl-C too: what finished is kept and
every report is written, where by default Python would die at once with nothing. A
repeat within ``REPEAT_SECONDS`` is the same cancel (a terminal's Ctrl-C reaches every
process of the group, which the xdist controller then passes on to its workers); a
later one goes to pytest as a second Ctrl-C.
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

REPEAT_SECONDS = 2.0
"""A second Ctrl-C or SIGTERM this soon after the first is the same cancel."""

Handler = Callable[[int, Any], Any]


class InterruptGuard:
    """The SIGINT/SIGTERM handlers of one pytest session (main thread only)."""

    def __init__(self, on_cancel: Callable[[str], None]) -> None:
        self.on_cancel = on_cancel
        """Called with the reason ("interrupted", "interrupted (SIGTERM)") at each cancel."""
        self.listeners: list[Callable[[int], None]] = []
        """Called with the signal on the first cancel (xdist: passing it to the workers)."""
        self.dispatches = False
        """True on the xdist controller, which runs no test but hands them out."""
        self.looping = False
        """Whether pytest's run-test loop is on (outside it, the signal goes to pytest)."""
        self._waiting = False
        self._pending = False
        self._signalled: float | None = None
        self._raise_when_safe = False
        self._restore: list[tuple[int, Any]] = []

    def install(self) -> None:
        """Chain our handler before SIGINT's and (unless someone handles it) SIGTERM's."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            installed = signal.getsignal(signum)
            previous = installed
            if signum == signal.SIGTERM and installed == signal.SIG_DFL:
                previous = signal.default_int_handler
            if not callable(previous):
                continue  # SIG_IGN, or SIGINT's SIG_DFL: not ours to interpret
            signal.signal(signum, self._handler(previous))
            self._restore.append((signum, installed))

    def uninstall(self) -> None:
        """Put back the handlers found at :meth:`install`."""
        while self._restore:
            signum, handler = self._restore.pop()
            signal.signal(signum, handler)

    def wait(self, wait: Callable[..., T], *args: Any) -> T:
        """``wait(*args)`` (a wait on the runner); a cancel meanwhile is raised here, as
        KeyboardInterrupt, once the wait is over (milliseconds: the runner has stopped)."""
        self._waiting = True
        try:
            value = wait(*args)
        finally:
            self._waiting = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt
        return value

    def _handler(self, previous: Handler) -> Handler:
        def on_signal(signum: int, frame: Any) -> Any:
            now = time.monotonic()
            if self._raise_when_safe:  # the xdist controller, cancelled in pytest's code
                if in_pytest_machinery(frame):
                    return None
                self._raise_when_safe = False
                return previous(signum, frame)
            if self._signalled is not None and now - self._signalled < REPEAT_SECONDS:
                return None  # the same cancel, reaching us twice
            first = self._signalled is None
            self._signalled = now
            self.on_cancel("interrupted" if signum == signal.SIGINT else "interrupted (SIGTERM)")
            if first:
                for listener in self.listeners:
                    with contextlib.suppress(Exception):
                        listener(signum)
            return self._raise_or_defer(signum, frame, previous)

        return on_signal

    def _raise_or_defer(self, signum: int, frame: Any, previous: Handler) -> Any:
        if self.dispatches:
            # the xdist controller runs no test and none of our waits: its loop ends
            # now, or as soon as the main thread is out of pytest's own code
            if not in_pytest_machinery(frame):
                return previous(signum, frame)
            self._raise_when_safe = True
            threading.Thread(target=self._interrupt_soon, args=(signum,), daemon=True).start()
            return None
        if self.looping and not self._pending and (self._waiting or in_pytest_machinery(frame)):
            # A KeyboardInterrupt raised mid-instruction in pytest's own code can carry a
            # traceback entry without a line, on which pytest's report of it fails
            # (INTERNALERROR, exit 1) on Python 3.11. So here it is raised in our own
            # frame once a wait on the runner is over, or shouldstop ends the run at the
            # next item. Interrupting the user's own code, and a second Ctrl-C, go to
            # pytest.
            self._pending = True
            return None
        return previous(signum, frame)

    def _interrupt_soon(self, signum: int) -> None:
        """Run the signal's handler in the main thread again until it has raised."""
        for _ in range(500):
            time.sleep(0.01)
            if not self._raise_when_safe:
                return
            _thread.interrupt_main(signal.Signals(signum))


def in_pytest_machinery(frame: Any) -> bool:
    """Whether the main thread was interrupted in pytest's, pluggy's or our own code (past
    any standard library frames they called), not in the user's."""
    stdlib = os.path.dirname(os.__file__) + os.sep
    while frame is not None:
        filename: str = frame.f_code.co_filename
        if filename.startswith("<frozen") or (
            filename.startswith(stdlib) and "site-packages" not in filename
        ):
            frame = frame.f_back
            continue
        return filename.startswith(_machinery())
    return True


@functools.cache
def _machinery() -> tuple[str, ...]:
    import _pytest
    import pluggy
    import pytest

    modules = (pytest, _pytest, pluggy, sys.modules[__package__ or "pytest_rageval"])
    return tuple(os.path.dirname(m.__file__ or "") + os.sep for m in modules if m.__file__)
