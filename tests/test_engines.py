"""Calling the app and reading its answer, without pytest's machinery or the runner."""

from __future__ import annotations

import asyncio
import threading
import time
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


def run_calls(threads: DaemonThreads, fn: Any, args: list[Any]) -> list[Any]:
    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        return list(await asyncio.gather(*(threads.call(loop, fn, arg) for arg in args)))

    return asyncio.run(main())


def test_fast_calls_share_one_thread_and_slow_ones_get_one_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fewer threads contend for the GIL with pytest's main thread: 200 fast calls at
    once run in one thread (each used to get a thread of its own), while calls that
    wait (as an HTTP call does) still run side by side."""
    monkeypatch.setattr("pytest_rageval.runner.threads.STALLED", 30.0)
    threads = DaemonThreads(name="test-sync")
    seen: list[str] = []
    running = [0, 0]  # now, peak
    lock = threading.Lock()

    def fast(n: int) -> int:
        seen.append(threading.current_thread().name)
        return n * 2

    def slow(n: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.1)
        with lock:
            running[0] -= 1
        return n

    try:
        assert run_calls(threads, fast, list(range(200))) == [n * 2 for n in range(200)]
        assert set(seen) == {"test-sync-1"}
        assert run_calls(threads, slow, [0]) == [0]  # now calls are known to be slow
        assert run_calls(threads, slow, [1, 2, 3, 4]) == [1, 2, 3, 4]
        assert running[1] == 4
    finally:
        threads.shutdown(wait=False)


def test_calls_queued_behind_a_hung_call_get_another_thread() -> None:
    threads = DaemonThreads(name="test-sync")
    release = threading.Event()

    def app(query: str) -> str:
        if query == "HANG":
            release.wait()
        return f"Answer: {query}"

    async def main() -> str:
        loop = asyncio.get_running_loop()
        hung = threads.call(loop, app, "HANG")
        answer: str = await asyncio.wait_for(threads.call(loop, app, "Fine"), timeout=2)
        hung.cancel()  # abandoned: its thread stays busy until released
        return answer

    try:
        started = time.monotonic()
        assert asyncio.run(main()) == "Answer: Fine"
        assert time.monotonic() - started < 1
        assert not release.is_set()
    finally:
        release.set()
        threads.shutdown(wait=False)


def test_fast_calls_queued_together_wake_the_loop_a_few_times_not_once_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A thread runs the fast calls queued behind the one it finished before it wakes
    the loop: each wake-up is one more thread taking the GIL from pytest's main thread."""
    # results are held up to SLOW_CALL: 50 ms here, so that a loaded machine's slower
    # sleeps still leave several calls to each wake-up
    monkeypatch.setattr("pytest_rageval.runner.threads.SLOW_CALL", 0.05)
    threads = DaemonThreads(name="test-sync")
    wakes = [0]
    hand_back = threads._hand_back

    def counted() -> None:
        wakes[0] += 1
        hand_back()

    threads._hand_back = counted  # type: ignore[method-assign]

    def app(n: int) -> int:
        time.sleep(0.0005)  # lets go of the GIL, as any app does: the loop could run now
        return n + 1

    try:
        assert run_calls(threads, app, list(range(200))) == list(range(1, 201))
    finally:
        threads.shutdown(wait=False)
    # one wake-up per 50 ms of calls at most, each call 0.5 ms and more (the old code
    # woke the loop for 164 of the 200)
    assert 1 <= wakes[0] <= 200 / 4, wakes


def test_results_held_behind_a_call_that_hangs_are_handed_back() -> None:
    """A thread holds the results of fast calls while it runs the next one queued; when
    that one hangs, the loop's check hands them back."""
    threads = DaemonThreads(name="test-sync")
    go, release = threading.Event(), threading.Event()

    def app(query: str) -> str:
        if query == "first":
            go.wait()
        if query == "HANG":
            release.wait()
        return f"Answer: {query}"

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        first, second = threads.call(loop, app, "first"), threads.call(loop, app, "second")
        hung = threads.call(loop, app, "HANG")
        await asyncio.sleep(0.01)  # all three queued, the one thread busy with the first
        go.set()
        answers = await asyncio.wait_for(asyncio.gather(first, second), timeout=2)
        hung.cancel()
        return list(answers)

    try:
        started = time.monotonic()
        assert asyncio.run(main()) == ["Answer: first", "Answer: second"]
        assert time.monotonic() - started < 1
        assert not release.is_set()
    finally:
        release.set()
        threads.shutdown(wait=False)
