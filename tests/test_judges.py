"""The direct judge path sends exactly what llama-index's own evaluators send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fakes import ScriptedLLM
from llama_index.core.evaluation import FaithfulnessEvaluator, RelevancyEvaluator
from llama_index.core.prompts import PromptTemplate

from pytest_rageval import judges

LONG_PARAGRAPH = "The lighthouse keeper trimmed the wick every evening at dusk. " * 40
# case -> (contexts, whether the direct path applies)
CASES = {
    "one context": (["Paris is the capital of France."], True),
    "padding and blanks": (["  Paris is in France.\n", "", "   ", "\nRome is in Italy.  "], True),
    "paragraphs and unicode": (
        ["Zürich liegt am See.\n\nİstanbul — 15 M people.", "日本の首都は東京です。"],
        True,
    ),
    "long but one node": ([LONG_PARAGRAPH[:2400], "UNSUPPORTED claims are here."], True),
    "too long for one node": ([LONG_PARAGRAPH * 3], False),
    "too long for one prompt": ([(LONG_PARAGRAPH * 2)[:4300]] * 5, False),
}


async def evaluate_ours(evaluator: Any, **kwargs: Any) -> Any:
    """What the runner does with one evaluation: prepare it, then await the call."""
    return await judges.prepare(evaluator, **kwargs)()


@pytest.fixture
def index_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts SummaryIndex builds: llama-index's path makes one per evaluation."""
    from llama_index.core.indices import SummaryIndex

    builds: list[int] = []
    original = SummaryIndex.from_documents.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, *args: Any, **kwargs: Any) -> Any:
        builds.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(SummaryIndex, "from_documents", classmethod(counting))
    return builds


def run_both(
    make: Callable[[], Any], query: str, response: str, contexts: list[str]
) -> tuple[Any, ...]:
    """A fresh evaluator from ``make`` on our path and another on llama-index's own."""
    ours_evaluator, theirs_evaluator = make(), make()
    ours = asyncio.run(
        evaluate_ours(ours_evaluator, query=query, response=response, contexts=contexts)
    )
    theirs = asyncio.run(
        theirs_evaluator.aevaluate(query=query, response=response, contexts=contexts)
    )
    # llama-index's "yes" in answer reading is too loose: both sides are read strictly
    theirs = judges.strict_result(theirs)
    return ours, theirs, ours_evaluator._llm.prompts, theirs_evaluator._llm.prompts


def sweep_the_window_edge(
    make: Callable[[], Any], response: str, contexts: Callable[[int], list[str]], builds: list[int]
) -> set[str]:
    """Contexts of growing size through both paths; the paths the direct side took."""
    paths = set()
    for copies in range(1, 60, 3):
        before = len(builds)
        ours, theirs, our_prompts, their_prompts = run_both(make, "Q", response, contexts(copies))
        paths.add("fallback" if len(builds) - before == 2 else "direct")
        assert our_prompts == their_prompts, f"{copies} copies"
        assert (ours.passing, ours.feedback) == (theirs.passing, theirs.feedback)
    return paths


@pytest.mark.parametrize("evaluator", [FaithfulnessEvaluator, RelevancyEvaluator])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(
    "response", ["Paris is in France.", "UNSUPPORTED answer", "WRONG", "EYES closed"]
)
def test_same_prompts_and_verdicts(
    evaluator: type, case: str, response: str, index_builds: list[int]
) -> None:
    contexts, direct = CASES[case]
    ours, theirs, our_prompts, their_prompts = run_both(
        lambda: evaluator(llm=ScriptedLLM()), "Where is OFFTOPIC Paris?", response, contexts
    )
    # llama-index's own evaluator always builds one index; ours only when it falls back
    assert len(index_builds) == (1 if direct else 2)
    assert our_prompts == their_prompts
    assert (ours.passing, ours.score, ours.feedback, ours.invalid_result) == (
        theirs.passing,
        theirs.score,
        theirs.feedback,
        theirs.invalid_result,
    )
    if response == "EYES closed":
        assert ours.invalid_result and ours.feedback == "Garbage: eyes closed, cannot judge"


def test_short_contexts_skip_the_summary_index(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_index(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the direct path must not build a SummaryIndex")

    import llama_index.core.evaluation.faithfulness as faithfulness

    monkeypatch.setattr(faithfulness.SummaryIndex, "from_documents", no_index)
    llm = ScriptedLLM()
    result = asyncio.run(
        evaluate_ours(
            FaithfulnessEvaluator(llm=llm), query="Q", response="R", contexts=["Some context."]
        )
    )
    assert result.passing is True
    assert len(llm.prompts) == 1
    # and the fallback is llama-index's own path, which does build one
    with pytest.raises(AssertionError, match="must not build"):
        asyncio.run(
            evaluate_ours(
                FaithfulnessEvaluator(llm=llm),
                query="Q",
                response="R",
                contexts=CASES["too long for one node"][0],
            )
        )


def test_custom_templates_are_honoured() -> None:
    template = PromptTemplate("Custom judge. Claim: {query_str}\nEvidence: {context_str}\nVerdict:")
    _, _, ours, theirs = run_both(
        lambda: with_template(FaithfulnessEvaluator(llm=ScriptedLLM()), template), "Q", "R", ["C"]
    )
    assert ours == theirs == ["Custom judge. Claim: R\nEvidence: C\nVerdict:"]


def test_subclasses_that_override_aevaluate_keep_their_own() -> None:
    class Strict(FaithfulnessEvaluator):
        async def aevaluate(self, *args: Any, **kwargs: Any) -> Any:
            result = await super().aevaluate(*args, **kwargs)
            result.feedback = "strict: " + (result.feedback or "")
            return result

    result = asyncio.run(
        evaluate_ours(Strict(llm=ScriptedLLM()), query="Q", response="R", contexts=["C"])
    )
    assert result.feedback == "strict: YES"


@pytest.mark.parametrize(
    ("left", "middle", "right"),
    [
        ("Zürich----", "'s4567\n\n日本lighthouse", "the —日本."),
        ("lighthouse", "thedon'tdon'tlighthouse日本4567 日本the\t 日本 's !!", "lighthouse"),
        ("Fact 12", "345", "678 more"),
        ("ends with a space ", "   ", " and more spaces"),
        ("http://example.com/", "path?query=1", "&other=2"),
        ("=====", "=====", "====="),
        ("", "", ""),
    ],
)
def test_counts_at_a_seam_stay_within_the_bound(left: str, middle: str, right: str) -> None:
    from llama_index.core.utils import get_tokenizer

    def count(text: str) -> int:
        return len(get_tokenizer()(text))

    seam = judges.SEAM_TOKENS
    # a value put into a template (two seams), and contexts joined (two seams per join)
    assert count(left + middle + right) <= count(left + right) + count(middle) + 2 * seam
    assert count(f"{left}\n\n{right}") <= count(left) + count(right) + count("\n\n") + 2 * seam


@pytest.mark.parametrize("system_prompt", [None, "You are a careful, terse judge. " * 25])
def test_same_prompts_on_both_sides_of_the_window(
    system_prompt: str | None, index_builds: list[int]
) -> None:
    paragraph = "The keeper logged the weather, the ships and the oil used. "
    paths = sweep_the_window_edge(
        lambda: FaithfulnessEvaluator(
            llm=ScriptedLLM(context_window=1400, system_prompt=system_prompt)
        ),
        "R",
        lambda copies: [paragraph * copies, "UNSUPPORTED claims are here."],
        index_builds,
    )
    assert paths == {"direct", "fallback"}


def test_templates_whose_functions_read_the_query_are_counted_in_full(
    index_builds: list[int],
) -> None:
    template = PromptTemplate(
        "Judge. {claims}\nEvidence: {context_str}\nVerdict:",
        function_mappings={"claims": lambda **kwargs: kwargs.get("query_str", "") * 1300},
    )
    _, _, our_prompts, their_prompts = run_both(
        lambda: with_template(FaithfulnessEvaluator(llm=ScriptedLLM()), template),
        "Q",
        "R R R",
        ["The keeper logged the weather. " * 140],
    )
    assert len(index_builds) == 2  # the long expansion sent ours down llama-index's path
    assert our_prompts == their_prompts


def test_a_query_used_twice_in_a_template_is_counted_twice(index_builds: list[int]) -> None:
    template = PromptTemplate(
        "Claim: {query_str}\nEvidence: {context_str}\nThe claim again: {query_str}\nVerdict:"
    )
    paths = sweep_the_window_edge(
        lambda: with_template(
            FaithfulnessEvaluator(llm=ScriptedLLM(context_window=1600)), template
        ),
        "The keeper wrote the ships down. " * 40,
        lambda copies: ["The keeper logged the weather, the ships and the oil used. " * copies],
        index_builds,
    )
    assert paths == {"direct", "fallback"}


def with_template(evaluator: Any, template: PromptTemplate) -> Any:
    evaluator.update_prompts({"eval_template": template})
    return evaluator


@pytest.mark.parametrize("query", ["Capital of France?", "WRONG capital?"])
def test_correctness_sends_llama_index_prompt_and_agrees(query: str) -> None:
    from llama_index.core.evaluation import CorrectnessEvaluator

    ours_llm, theirs_llm = ScriptedLLM(), ScriptedLLM()
    kwargs = {"query": query, "response": "Paris", "reference": "Paris"}
    ours = asyncio.run(evaluate_ours(CorrectnessEvaluator(llm=ours_llm), contexts=None, **kwargs))
    theirs = asyncio.run(CorrectnessEvaluator(llm=theirs_llm).aevaluate(**kwargs))
    assert ours_llm.prompts == theirs_llm.prompts and len(ours_llm.prompts) == 1
    assert (ours.passing, ours.score, ours.feedback) == (
        theirs.passing,
        theirs.score,
        theirs.feedback,
    )
