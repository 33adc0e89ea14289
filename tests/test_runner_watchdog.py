"""The blocked-loop watchdog names who blocked the runner's loop: the app or a judge."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

from pytest_rageval import Runner
from pytest_rageval.runner.loop import LoopThread


class BlockingJudge:
    """An evaluator whose async method does blocking work (the mistake the warning names)."""

    async def aevaluate(self, query: str | None = None, **kwargs: Any) -> SimpleNamespace:
        time.sleep(1.3)
        return SimpleNamespace(passing=True, score=1.0, feedback="ok", invalid_result=False)


def test_an_evaluator_that_blocks_the_loop_is_named_once() -> None:
    runner = Runner(2, timeout=30, retries=0)
    try:
        results = runner.evaluate(lambda query: "Answer", ["Q1", "Q2"], {"mine": BlockingJudge()})
    finally:
        runner.close()
    assert [result.error for result in results] == [None, None]
    assert runner.notices == [
        "an evaluator blocked the event loop for over 1 s: its aevaluate (or its LLM's async "
        "methods) does blocking work, so every question waits behind it; make it truly async"
    ]


def test_an_engine_that_blocks_the_loop_is_named_with_its_class() -> None:
    class Blocking:
        async def aquery(self, query: str) -> str:
            time.sleep(1.3)
            return "Answer"

    runner = Runner(2, timeout=30, retries=0)
    try:
        results = runner.evaluate(Blocking(), ["Q1"], {})
    finally:
        runner.close()
    assert results[0].response == "Answer"
    assert runner.notices == [
        "the query engine (Blocking) blocked the event loop for over 1 s: its async aquery "
        "does blocking work, so every question waits behind it and --rag-timeout cannot stop "
        "it. Make aquery truly async, or return a sync callable from rag_query_engine "
        "(e.g. engine.query): sync calls run in threads"
    ]


def test_culprits_are_recognised_by_their_code_object_not_their_name() -> None:
    def blocker() -> tuple[object, str] | None:
        return watched.culprit(sys._getframe())

    def namesake() -> tuple[object, str] | None:  # same name, another code object
        return watched.culprit(sys._getframe())

    namesake.__name__ = namesake.__qualname__ = "blocker"
    watched = LoopThread([])
    watched.watch(blocker.__code__, lambda frame: ("mine", f"in {frame.f_code.co_name}"))
    assert blocker() == ("mine", "in blocker")
    assert namesake() is None
