"""BatchRunner against llama-index's BatchEvalRunner: one script, run once per import."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest
from fakes import ScriptedLLM
from llama_index.core.evaluation import (
    BatchEvalRunner,
    CorrectnessEvaluator,
    FaithfulnessEvaluator,
    RelevancyEvaluator,
)

from pytest_rageval import BatchRunner

SCRIPT = """
import asyncio

{runner_import}
from fakes import ScriptedApp, ScriptedLLM
from llama_index.core.base.response.schema import Response
from llama_index.core.evaluation import (
    CorrectnessEvaluator,
    FaithfulnessEvaluator,
    RelevancyEvaluator,
)
from llama_index.core.schema import NodeWithScore, TextNode

loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
run = loop.run_until_complete

llm = ScriptedLLM()
evaluators = {{
    "faithfulness": FaithfulnessEvaluator(llm=llm),
    "relevancy": RelevancyEvaluator(llm=llm),
    "correctness": CorrectnessEvaluator(llm=llm),
}}
runner = Runner(evaluators, workers=4)
queries = ["Where is Paris?", "Where is UNSUPPORTED Atlantis?", "Is it OFFTOPIC?", "WRONG answer?"]
# one value more than there are queries: llama-index ignores the extra one
references = ["Paris", "Atlantis", "Elsewhere", "Nowhere", "an extra reference"]
answers = [f"Answer: {{q}}" for q in queries]
contexts = [[f"Context: {{q}}", "A second context."] for q in queries]
responses = [
    Response(a, source_nodes=[NodeWithScore(node=TextNode(text=c)) for c in cs])
    for a, cs in zip(answers, contexts)
]
for_correctness = {{"correctness": {{"reference": references}}}}

results = {{
    "evaluate_queries": runner.evaluate_queries(
        ScriptedApp(), queries=queries, reference=references
    ),
    "aevaluate_queries": run(
        runner.aevaluate_queries(ScriptedApp(), queries=queries, **for_correctness)
    ),
    "evaluate_responses": runner.evaluate_responses(
        queries=queries, responses=responses, reference=references
    ),
    "aevaluate_responses": run(
        runner.aevaluate_responses(queries, responses, **for_correctness)
    ),
    "evaluate_response_strs": runner.evaluate_response_strs(
        queries=queries, response_strs=answers, contexts_list=contexts, **for_correctness
    ),
    "aevaluate_response_strs": run(
        runner.aevaluate_response_strs(queries, answers, contexts, reference=references)
    ),
}}
# faithfulness needs no query: llama-index passes None for the queries not given
faithfulness_only = Runner({{"faithfulness": evaluators["faithfulness"]}})
results["evaluate_response_strs without queries"] = faithfulness_only.evaluate_response_strs(
    response_strs=answers, contexts_list=contexts
)
results["aevaluate_responses without queries"] = run(
    faithfulness_only.aevaluate_responses(responses=responses)
)
loop.close()
"""


def run_script(runner_import: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """SCRIPT with one import line; every field of every result, by method and metric."""
    namespace: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():
            # llama-index's BatchEvalRunner calls its own deprecated asyncio_module()
            warnings.simplefilter("ignore", DeprecationWarning)
            exec(SCRIPT.format(runner_import=runner_import), namespace)
    finally:
        asyncio.set_event_loop(None)
        if "loop" in namespace:  # a script that failed half-way has not closed it
            namespace["loop"].close()
        for name in ("runner", "faithfulness_only"):
            getattr(namespace.get(name), "close", lambda: None)()
    return {
        method: {metric: [r.model_dump() for r in rs] for metric, rs in by_metric.items()}
        for method, by_metric in namespace["results"].items()
    }


def test_one_script_gives_the_same_results_with_either_runner() -> None:
    theirs = run_script("from llama_index.core.evaluation import BatchEvalRunner as Runner")
    ours = run_script("from pytest_rageval import BatchRunner as Runner")
    assert ours == theirs  # every field: query, response, contexts, passing, score, ...
    # and the results are worth comparing (written by hand from fakes.judge_answer)
    for method in (
        "evaluate_queries",
        "aevaluate_queries",
        "evaluate_responses",
        "aevaluate_responses",
        "evaluate_response_strs",
        "aevaluate_response_strs",
    ):
        by_metric = ours[method]
        assert list(by_metric) == ["faithfulness", "relevancy", "correctness"]
        assert [r["passing"] for r in by_metric["faithfulness"]] == [True, False, True, False]
        assert [r["passing"] for r in by_metric["relevancy"]] == [True, True, False, False]
        assert [r["score"] for r in by_metric["correctness"]] == [5.0, 5.0, 5.0, 1.0]
        assert [r["query"] for r in by_metric["correctness"]][1] == "Where is UNSUPPORTED Atlantis?"
        assert by_metric["faithfulness"][3]["response"] == "Answer: WRONG answer?"
        assert by_metric["faithfulness"][3]["feedback"] == "NO"
        assert all(not r["invalid_result"] for rs in by_metric.values() for r in rs)
    given = ours["evaluate_responses"]["relevancy"][0]["contexts"]
    assert given == ["Context: Where is Paris?", "A second context."]
    for method in ("evaluate_response_strs without queries", "aevaluate_responses without queries"):
        faithfulness = ours[method]["faithfulness"]
        assert [(r["query"], r["passing"]) for r in faithfulness] == [
            (None, True),
            (None, False),
            (None, True),
            (None, False),
        ]


def evaluators(llm: ScriptedLLM) -> dict[str, Any]:
    return {
        "faithfulness": FaithfulnessEvaluator(llm=llm),
        "relevancy": RelevancyEvaluator(llm=llm),
        "correctness": CorrectnessEvaluator(llm=llm),
    }


def test_the_attributes_of_batch_eval_runner() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        peer = BatchEvalRunner({}, workers=3, show_progress=True)
    with BatchRunner({}, workers=3, show_progress=True) as ours:
        for runner in (peer, ours):
            assert isinstance(runner.semaphore, asyncio.Semaphore)
            assert runner.semaphore._value == 3
            assert runner.show_progress is True
            assert runner.workers == 3


def test_show_progress_draws_a_bar_of_queries(capsys: pytest.CaptureFixture[str]) -> None:
    queries = ["One?", "Two?", "Three?"]
    with BatchRunner(evaluators(ScriptedLLM()), workers=2, show_progress=True) as runner:
        runner.evaluate_response_strs(
            queries=queries,
            response_strs=[f"Answer: {q}" for q in queries],
            contexts_list=[[f"Context: {q}"] for q in queries],
            reference=["1", "2", "3"],
        )
    drawn = capsys.readouterr().err
    assert "0/3" in drawn
    assert "100%" in drawn and "3/3" in drawn
    with BatchRunner(evaluators(ScriptedLLM()), workers=2) as runner:
        runner.evaluate_response_strs(queries=queries, response_strs=queries)
    assert capsys.readouterr().err == ""


@pytest.mark.asyncio
async def test_the_async_twins_draw_the_bar_too(capsys: pytest.CaptureFixture[str]) -> None:
    with BatchRunner(evaluators(ScriptedLLM()), workers=2, show_progress=True) as runner:
        await runner.aevaluate_response_strs(["One?", "Two?"], ["Yes.", "No."], [["A"], ["B"]])
    assert "2/2" in capsys.readouterr().err


def test_what_llama_index_loses_the_batch_over_is_an_invalid_result() -> None:
    queries = ["Where is Paris?", "Where is Rome?", "Where is Oslo?"]
    with BatchRunner(evaluators(ScriptedLLM()), workers=2) as runner:
        results = runner.evaluate_response_strs(
            queries=queries,
            response_strs=["Paris is in France.", None, "Oslo is in Norway."],
            contexts_list=[["Paris is the capital of France."], ["Rome."], None],
        )
        without_queries = runner.evaluate_responses(responses=[None])
    faithfulness, relevancy, correctness = results.values()
    assert [r.passing for r in faithfulness] == [True, None, None]
    assert faithfulness[1].invalid_reason == "ValueError: contexts and response must be provided"
    assert faithfulness[2].invalid_reason == (
        "no contexts to judge faithfulness against (contexts_list[2] is None)"
    )
    assert relevancy[2].invalid_reason == (
        "no contexts to judge relevancy against (contexts_list[2] is None)"
    )
    assert correctness[0].score == 5.0
    assert correctness[1].invalid_reason == "ValueError: query, and response must be provided"
    assert [r.invalid_result for r in correctness] == [False, True, False]
    assert without_queries["faithfulness"][0].invalid_reason == (
        "no contexts to judge faithfulness against (responses[0] is None)"
    )
    assert without_queries["correctness"][0].invalid_reason == (
        "ValueError: query, and response must be provided"
    )


def test_both_keyword_forms_apply_and_the_per_evaluator_value_wins() -> None:
    llm = ScriptedLLM()
    with BatchRunner(evaluators(llm), workers=2) as runner:
        results = runner.evaluate_response_strs(
            ["A?", "B?"],
            ["a", "b"],
            [["A."], ["B."]],
            correctness={"reference": ("right", "WRONG")},  # any sequence
            reference=["WRONG", "WRONG"],
            faithfulness={"reference": ["faithful", "faithful"]},
        )
    # the scripted judge scores 1.0 when the reference it is shown says WRONG
    assert [r.score for r in results["correctness"]] == [5.0, 1.0]
    shown = [p for p in llm.prompts if "Reference Answer" in p]
    assert len(shown) == 2 and not any("faithful" in p for p in shown)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: r.evaluate_queries(lambda q: q, queries=["A?", "B?"], reference=["a"]),
            "reference has 1 value for 2 queries: give one value per query",
        ),
        (
            lambda r: r.evaluate_response_strs(["A?"], ["a"], correctness={"reference": "a"}),
            "correctness.reference must be a list with one value per query, got str",
        ),
        (
            lambda r: r.evaluate_response_strs(["A?", "B?"], ["a"]),
            "queries and response_strs must have the same length (got 2 and 1)",
        ),
        (
            lambda r: r.evaluate_response_strs(),
            "give at least one of queries, response_strs and contexts_list",
        ),
        (
            lambda r: r.evaluate_response_strs(["A?"], ["a"], ["the only context"]),
            "contexts_list[0] must be a list of context strings, got str",
        ),
        (
            lambda r: r.evaluate_responses(["A?"], ["a plain string"]),
            "responses[0] must be a llama-index Response or None, got str",
        ),
        (
            lambda r: r.evaluate_queries(lambda q: q),
            "`queries` must be provided",
        ),
    ],
)
def test_bad_input_says_what_to_fix(call: Any, message: str) -> None:
    with (
        BatchRunner(evaluators(ScriptedLLM()), workers=2) as runner,
        pytest.raises((ValueError, TypeError)) as raised,
    ):
        call(runner)
    assert str(raised.value) == message
