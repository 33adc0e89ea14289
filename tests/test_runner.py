"""The shared runner as plain objects: concurrency, pipelining, isolation, retries."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import ScriptedApp, ScriptedLLM
from llama_index.core.evaluation import (
    BatchEvalRunner,
    CorrectnessEvaluator,
    FaithfulnessEvaluator,
    RelevancyEvaluator,
)

from pytest_rageval import BatchRunner, Question, Runner


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
        raise ConnectionError("connection refused")

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
