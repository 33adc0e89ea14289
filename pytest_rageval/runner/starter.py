"""Starting queued questions on the loop, a window's worth at a time (``backlog.py``
decides how many; this starts them, withdraws those no longer wanted and delivers each
result)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

from pytest_rageval.questions import Question
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner.backlog import Backlog, window
from pytest_rageval.runner.pipeline import Pipeline

Delivery = Callable[[QuestionResult | BaseException | None], None]


class Queued(NamedTuple):
    """One submitted question, waiting for its turn."""

    order: int
    engine: Any
    question: Question
    evaluators: Any
    kwargs: Any
    repeat: int
    deliver: Delivery
    wanted: Callable[[], bool] | None
    """Asked as its turn comes: False withdraws it unasked (a decided sequential set)."""


class Starter:
    """Queued questions and the tasks running them, on the runner's loop thread only."""

    def __init__(self, pipeline: Pipeline, workers: int, stopped: Callable[[], bool]) -> None:
        self._pipeline = pipeline
        self._stopped = stopped
        self.backlog: Backlog[Queued] = Backlog(window(workers))

    def push(self, loop: asyncio.AbstractEventLoop, queued: list[Queued]) -> None:
        """Queue ``queued`` behind those waiting, and start what the window allows."""
        self.backlog.push(queued)
        self.start(loop)

    def start(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Start queued questions while fewer than two per worker are running (all of
        them once the run is stopped: each then finishes at once as not evaluated)."""
        withdrawn = True
        while withdrawn:  # a withdrawn question frees its place in the window at once
            withdrawn = False
            stopped = self._stopped()
            for item in self.backlog.take(stopped=stopped):
                if item.wanted is not None and not stopped and not item.wanted():
                    self.backlog.finished()
                    item.deliver(None)
                    withdrawn = True
                    continue
                assert loop is not None
                coroutine = self._pipeline.run_question(
                    item.order,
                    item.engine,
                    item.question,
                    item.evaluators,
                    item.kwargs,
                    item.repeat,
                )
                task = loop.create_task(coroutine)
                task.add_done_callback(functools.partial(self._finished, loop, item.deliver))

    def _finished(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Delivery,
        task: asyncio.Task[QuestionResult],
    ) -> None:
        self.backlog.finished()
        if task.cancelled():
            deliver(None)
        else:
            deliver(task.exception() or task.result())
        self.start(loop)

    def drain(self) -> None:
        """The runner is closing: the never-started learn they were cancelled."""
        for item in self.backlog.drain():
            item.deliver(None)
