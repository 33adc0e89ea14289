"""Calling the app and reading its answer, without pytest's machinery or the runner."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pytest_rageval.questions import Question
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner.engines import call_engine, read_answer
from pytest_rageval.runner.threads import DaemonThreads


def ask(engine: Any, query: str = "Q?") -> Any:
    threads = DaemonThreads(name="test-sync")
    try:
        return asyncio.run(call_engine(threads, engine, query))
    finally:
        threads.shutdown(wait=False)


def test_a_sync_callable_runs_in_a_thread_of_its_own() -> None:
    seen: list[str] = []

    def app(query: str) -> str:
        seen.append(threading.current_thread().name)
        return f"echo {query}"

    assert ask(app) == "echo Q?"
    assert seen == ["test-sync-1"]


def test_aquery_wins_over_query_and_async_callables_are_awaited() -> None:
    class Engine:
        def query(self, query: str) -> str:
            return "sync"

        async def aquery(self, query: str) -> str:
            return f"async {query}"

    async def app(query: str) -> str:
        return f"coroutine {query}"

    assert ask(Engine()) == "async Q?"
    assert ask(app) == "coroutine Q?"


def test_something_that_cannot_be_asked_says_what_it_got() -> None:
    with pytest.raises(TypeError) as caught:
        ask(42)
    assert str(caught.value) == (
        "the query engine must be a llama-index query engine or a callable taking "
        "the query string, got int"
    )


def test_the_answer_is_read_as_valid_unicode() -> None:
    result = QuestionResult(Question(query="Q?"))
    read_answer(result, ("half an emoji \ud83d", ["context \udc00", "fine"]))
    assert result.response == "half an emoji \ufffd"
    assert result.contexts == ["context \ufffd", "fine"]
    assert result.sources is None
    read_answer(result, "plain")
    assert (result.response, result.contexts, result.sources) == ("plain", None, None)
