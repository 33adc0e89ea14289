"""The shared runner as plain objects: concurrency, pipelining, isolation, retries."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fakes import ScriptedApp, ScriptedLLM
from llama_index.core.evaluation import (
    BatchEvalRunner,
    CorrectnessEvaluator,
    FaithfulnessEvaluator,
    RelevancyEvaluator,
)
from llama_index.core.query_engine import CustomQueryEngine

from pytest_rageval import BatchRunner, ContainsEvaluator, Question, Runner, retry


@pytest.fixture
def runner() -> Iterator[Runner]:
    runner = Runner(4, timeout=5, retries=2, query_retries=2, backoff=0)
    yield runner
    runner.close()


def judges(llm: ScriptedLLM) -> dict[str, Any]:
    return {
        "faithfulness": FaithfulnessEvaluator(llm=llm),
        "relevancy": RelevancyEvaluator(llm=llm),
    }


def test_peak_concurrency_equals_workers(runner: Runner) -> None:
    app, llm = ScriptedApp(delay=0.02), ScriptedLLM(delay=0.02)
    results = runner.evaluate(app, [f"Question {i}?" for i in range(20)], judges(llm))
    assert len(results) == 20
    assert all(r.evaluations["faithfulness"].passing for r in results)
    assert runner.peak_concurrency == 4
    # queries and evaluations share the four slots
    assert app.peak + llm.peak >= 4
    assert app.peak <= 4 and llm.peak <= 4


def test_evaluations_start_before_the_last_query_ends(runner: Runner) -> None:
    app, llm = ScriptedApp(delay=0.02), ScriptedLLM()
    first_judged: list[float] = []

    class Timed(FaithfulnessEvaluator):
        async def aevaluate(self, *args: Any, **kwargs: Any) -> Any:
            first_judged.append(time.monotonic())
            return await super().aevaluate(*args, **kwargs)

    runner.evaluate(app, [f"Q{i}" for i in range(16)], {"faithfulness": Timed(llm=llm)})
    assert min(first_judged) < max(app.finished)


def test_an_exception_is_that_questions_own(runner: Runner) -> None:
    results = runner.evaluate(
        ScriptedApp(),
        ["Where is Paris?", "Where is BOOM?", "Where is Rome?"],
        judges(ScriptedLLM()),
    )
    assert [r.error for r in results] == [
        None,
        "query engine raised RuntimeError: the app broke on 'Where is BOOM?'",
        None,
    ]
    assert results[0].evaluations["relevancy"].passing
    assert results[2].evaluations["relevancy"].passing


def test_transient_errors_are_retried_then_reported(runner: Runner) -> None:
    calls: list[str] = []

    def flaky(query: str) -> str:
        calls.append(query)
        if len(calls) < 3:
            raise ConnectionError("connection reset")
        return "fine"

    [result] = runner.evaluate(flaky, ["Q"], {})
    assert (result.response, len(calls)) == ("fine", 3)

    def dead(query: str) -> str:
        calls.append(query)
        raise ConnectionRefusedError("connection refused")

    calls.clear()
    [result] = runner.evaluate(dead, ["Q"], {})
    assert len(calls) == 3  # one attempt + retries=2
    assert result.error == "query engine: cannot connect to the server (3 attempts)"


def test_a_task_that_hangs_times_out() -> None:
    runner = Runner(2, timeout=0.2, retries=0)
    try:
        [slow, fast] = runner.evaluate(ScriptedApp(), ["SLOW?", "Quick?"], {})
    finally:
        runner.close()
    assert slow.error == "query engine: no answer within 0.2 s (1 attempt)"
    assert fast.response == "Answer: Quick?"


def test_sync_callables_and_non_applicable_metrics(runner: Runner) -> None:
    llm = ScriptedLLM()
    evaluators = {**judges(llm), "correctness": CorrectnessEvaluator(llm=llm)}
    with_reference = Question(query="Q1", reference="Answer: Q1")
    results = [
        runner.submit_question(lambda q: f"echo {q}", q, evaluators).result()
        for q in (with_reference, Question(query="Q2"))
    ]
    assert results[0].applicable == ("faithfulness", "relevancy", "correctness")
    assert results[1].skipped == ("correctness",)
    assert results[0].evaluations["correctness"].score == 5.0


def test_local_evaluators_take_no_slot_and_no_pacing() -> None:
    """--rag-rpm paces requests to an LLM; a string check is judged at once, and does not
    wait for a slot behind the app's calls."""
    judged_at: list[float] = []
    slow_done: list[float] = []

    class Timed(ContainsEvaluator):
        async def aevaluate(self, *args: Any, **kwargs: Any) -> Any:
            judged_at.append(time.monotonic())
            return await super().aevaluate(*args, **kwargs)

    def app(query: str) -> str:
        if query == "SLOW":  # holds the only slot while the first answer is judged
            time.sleep(0.5)
            slow_done.append(time.monotonic())
        return f"{query} yes"

    runner = Runner(1, rpm=6, timeout=5)  # paced, a request would start every 10 s
    try:
        results = runner.evaluate(
            app,
            [Question(query=q, reference="yes") for q in ("Q1", "SLOW", "Q3")],
            {"contains": Timed()},
        )
    finally:
        runner.close()
    assert [r.evaluations["contains"].passing for r in results] == [True, True, True]
    assert max(judged_at) - min(judged_at) < 5  # unpaced: not 10 s apart
    assert judged_at[0] < slow_done[0]
    assert runner.counts["judge_calls"] == 3  # still counted as evaluator calls


def test_batch_runner_is_a_drop_in_for_batch_eval_runner() -> None:
    queries = ["Where is Paris?", "Where is UNSUPPORTED Atlantis?", "WRONG answer?"]
    references = ["Paris", "Atlantis", "Nowhere"]
    llm = ScriptedLLM()
    evaluators = {**judges(llm), "correctness": CorrectnessEvaluator(llm=llm)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # asyncio_module() is deprecated
        peer = BatchEvalRunner(evaluators, workers=4)
    # asyncio.run closes its loop; the peer's own evaluate_queries leaves one open
    theirs = asyncio.run(
        peer.aevaluate_queries(ScriptedApp(), queries=queries, reference=references)
    )
    with BatchRunner(evaluators, workers=4) as runner:
        ours = runner.evaluate_queries(ScriptedApp(), queries=queries, reference=references)
    assert list(ours) == list(theirs)
    for name in evaluators:
        assert [(r.passing, r.score, r.feedback) for r in ours[name]] == [
            (r.passing, r.score, r.feedback) for r in theirs[name]
        ]
    assert [r.passing for r in ours["faithfulness"]] == [True, False, False]


@pytest.mark.asyncio
async def test_batch_runner_async_and_failure_isolation() -> None:
    with BatchRunner(judges(ScriptedLLM()), workers=2, retries=0) as runner:
        results = await runner.aevaluate_queries(ScriptedApp(), queries=["Fine?", "BOOM?"])
    assert results["relevancy"][0].passing is True
    broken = results["relevancy"][1]
    assert broken.invalid_result is True
    assert broken.invalid_reason == "query engine raised RuntimeError: the app broke on 'BOOM?'"


def test_a_hung_sync_call_is_abandoned_and_costs_the_pool_nothing() -> None:
    release = threading.Event()

    def app(query: str) -> str:
        if "HANG" in query:
            release.wait()  # never returns while the test runs
        return f"Answer: {query}"

    runner = Runner(1, timeout=0.2, retries=0)
    try:
        [hung, fine] = runner.evaluate(app, ["HANG?", "Fine?"], {})
        assert hung.error == "query engine: no answer within 0.2 s (1 attempt)"
        assert fine.response == "Answer: Fine?"
        # a later set on the same one-slot runner is unaffected by the thread still stuck
        [later] = runner.evaluate(app, ["Later?"], {})
        assert later.response == "Answer: Later?"
        stuck = [t for t in threading.enumerate() if t.name.startswith("rageval-sync")]
        assert stuck and all(t.daemon for t in stuck)  # never joined at interpreter exit
    finally:
        release.set()
        runner.close()


class SyncOnlyEngine(CustomQueryEngine):
    """llama-index's CustomQueryEngine with only custom_query: its default acustom_query
    calls this sync method on the event loop."""

    def custom_query(self, query_str: str) -> str:
        with LOCK:
            RUNNING.append(threading.current_thread().name)
            PEAK[0] = max(PEAK[0], len(RUNNING))
        try:
            time.sleep(1.0 if "SLOW" in query_str else 0.2)
        finally:
            with LOCK:
                RUNNING.remove(threading.current_thread().name)
        return f"Answer: {query_str}"


LOCK = threading.Lock()
RUNNING: list[str] = []
PEAK = [0]


def test_a_custom_query_engine_with_only_custom_query_runs_in_threads() -> None:
    PEAK[0] = 0
    runner = Runner(4, timeout=0.5, retries=0)
    try:
        results = runner.evaluate(SyncOnlyEngine(), ["Q1", "Q2", "Q3", "Q4", "SLOW Q5"], {})
    finally:
        runner.close()
    assert [r.response for r in results[:4]] == [
        "Answer: Q1",
        "Answer: Q2",
        "Answer: Q3",
        "Answer: Q4",
    ]
    assert PEAK[0] >= 2  # not one after the other on the loop
    # and the time-out holds, which it cannot while the loop itself is blocked
    assert results[4].error == "query engine: no answer within 0.5 s (1 attempt)"
    assert not runner.notices


def test_an_engine_that_blocks_the_loop_is_named_once() -> None:
    class Blocking:
        async def aquery(self, query: str) -> str:
            time.sleep(1.3)  # the mistake: blocking work in an async method
            return "Answer"

    runner = Runner(2, timeout=30, retries=0)
    try:
        runner.evaluate(Blocking(), ["Q1", "Q2"], {})
    finally:
        runner.close()
    assert len(runner.notices) == 1
    assert runner.notices[0].startswith(
        "the query engine (Blocking) blocked the event loop for over 1 s: its async aquery "
        "does blocking work, so every question waits behind it and --rag-timeout cannot stop it"
    )


def test_a_deadline_keeps_what_finished_and_marks_the_rest() -> None:
    runner = Runner(4, timeout=30, retries=0, deadline=0.5)
    try:
        quick, slow = runner.evaluate(ScriptedApp(), ["Quick?", "SLOW?"], judges(ScriptedLLM()))
    finally:
        runner.close()
    assert quick.evaluated and quick.evaluations["faithfulness"].passing
    assert (slow.evaluated, slow.error) == (False, "query engine: not evaluated: deadline")
    assert runner.stopped == "deadline"


def test_stop_completes_every_question_at_once() -> None:
    runner = Runner(2, timeout=30, retries=0)
    try:
        futures = [
            runner.submit_question(ScriptedApp(delay=5), Question(query=f"Q{i}"), {})
            for i in range(6)
        ]
        time.sleep(0.1)
        runner.stop("interrupted")
        results = [future.result(timeout=2) for future in futures]
    finally:
        runner.close()
    assert {r.error for r in results} == {"query engine: not evaluated: interrupted"}


def test_a_queued_set_starts_in_order_and_stops_whole() -> None:
    # 100 questions for 2 workers: most wait in the runner's queue, not as tasks
    runner = Runner(2, timeout=30, retries=0)
    app = ScriptedApp(delay=0.3)
    results: dict[int, Any] = {}
    everything = threading.Event()

    def on_done(key: int, outcome: Any) -> None:
        results[key] = outcome
        if len(results) == 100:
            everything.set()

    try:
        questions = [(n, Question(query=f"Q{n}")) for n in range(100)]
        runner.submit_questions(app, questions, {}, on_done)
        time.sleep(0.5)
        started_before_stop = app.peak
        runner.stop("interrupted")
        assert everything.wait(timeout=3)
    finally:
        runner.close()
    assert started_before_stop == 2
    answered = sorted(key for key, r in results.items() if r.error is None)
    assert answered and answered == list(range(len(answered)))  # oldest first
    stopped = [r for r in results.values() if r.error is not None]
    assert len(stopped) >= 90
    assert {r.error for r in stopped} == {"query engine: not evaluated: interrupted"}


def test_a_closed_runner_tells_queued_questions_they_were_cancelled() -> None:
    runner = Runner(1, timeout=30, retries=0)
    results: dict[int, Any] = {}
    runner.submit_questions(
        ScriptedApp(delay=5),
        [(n, Question(query=f"Q{n}")) for n in range(10)],
        {},
        results.__setitem__,
    )
    time.sleep(0.1)
    runner.close()
    assert sorted(results) == list(range(10)) and set(results.values()) == {None}


class Status(Exception):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"status {status}")
        self.status_code = status
        self.response = SimpleNamespace(status_code=status, headers=headers or {})


@pytest.mark.parametrize(
    ("exc", "kind", "after"),
    [
        (Status(429), "rate_limit", None),
        (Status(429, {"retry-after": "5"}), "rate_limit", 5.0),
        (Status(429, {"retry-after": "5", "retry-after-ms": "250"}), "rate_limit", 0.25),
        (Status(503, {"retry-after": "2"}), "server", 2.0),
        (Status(500), "server", None),
        (Status(400), None, None),
        (Status(401), None, None),
        (Status(404), None, None),
        (TimeoutError(), "timeout", None),
        (ConnectionRefusedError(), "connect", None),
        (ValueError("a bug in user code"), None, None),
        (RuntimeError("user code"), None, None),
    ],
)
def test_only_transient_failures_are_retried(
    exc: BaseException, kind: str | None, after: float | None
) -> None:
    failure = retry.classify(exc)
    assert (failure.kind if failure else None, failure.retry_after if failure else None) == (
        kind,
        after,
    )


def test_full_jitter_stays_under_its_cap() -> None:
    rng = random.Random(1)
    waits = [retry.full_jitter(attempt, 0.5, 4.0, rng) for attempt in range(10) for _ in range(50)]
    assert max(waits) <= 4.0 and min(waits) >= 0
    assert len({round(w, 6) for w in waits}) > 400  # spread out, not in bursts


def test_throttle_halves_on_429_and_grows_back_to_workers() -> None:
    async def scenario() -> list[int]:
        throttle = retry.Throttle(8)
        limits = []
        started = asyncio.get_running_loop().time()
        throttle.rate_limited(started, None)
        limits.append(throttle.limit)  # 4
        throttle.rate_limited(started, None)  # same round: no second cut
        limits.append(throttle.limit)
        for _ in range(100):
            throttle.succeeded()
        limits.append(throttle.limit)  # back to 8, never above
        await asyncio.sleep(0)
        throttle.rate_limited(asyncio.get_running_loop().time(), None)
        limits.append(throttle.limit)
        return limits

    assert asyncio.run(scenario()) == [4, 4, 8, 4]


def test_throttle_never_admits_more_than_its_limit() -> None:
    async def scenario() -> list[tuple[int, int]]:
        throttle = retry.Throttle(3)
        seen: list[tuple[int, int]] = []

        async def task(i: int) -> None:
            await throttle.acquire((i, 0))
            try:
                seen.append((throttle.in_use, throttle.limit))
                await asyncio.sleep(0.001)
                throttle.succeeded()
            finally:
                throttle.release()

        throttle.rate_limited(asyncio.get_running_loop().time(), None)  # limit 1
        await asyncio.gather(*(task(i) for i in range(40)))
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == (1, 1)
    assert all(in_use <= limit <= 3 for in_use, limit in seen)
    assert seen[-1][1] == 3  # grown back to the workers
