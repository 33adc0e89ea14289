"""What to start next: the questions submitted and not yet started. No event loop here."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

LOOKAHEAD_SETS = 64
"""How many sets ahead of the running one may be submitted early."""


def window(workers: int) -> int:
    """How many questions the runner starts at a time: two per worker and two more, so a
    worker never waits for the loop to start its next question."""
    return 2 * workers + 2


def enough_waiting(workers: int) -> int:
    """How many submitted, unfinished questions keep the pool full: sets that follow the
    running one are submitted early while fewer than this are waiting."""
    return 2 * workers


class Backlog(Generic[T]):
    """Queued questions, oldest first, and how many of those started are still running.

    At most ``window`` run at once (tasks waiting by the thousand for a slot cost the
    loop more than their work); once the run is stopped every queued one starts, and
    each then finishes at once as "not evaluated".
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self.running = 0
        self._queue: collections.deque[T] = collections.deque()

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, items: Iterable[T]) -> None:
        """Queue ``items`` behind those already waiting."""
        self._queue.extend(items)

    def take(self, *, stopped: bool = False) -> list[T]:
        """The items to start now, oldest first; each counts as running until
        :meth:`finished`. All of them when ``stopped``."""
        taken: list[T] = []
        while self._queue and (self.running < self.window or stopped):
            taken.append(self._queue.popleft())
            self.running += 1
        return taken

    def finished(self) -> None:
        """One started item is done: its place in the window is free."""
        self.running -= 1

    def drain(self) -> list[T]:
        """Every queued item, oldest first, never to start (the runner is closing)."""
        items = list(self._queue)
        self._queue.clear()
        return items
