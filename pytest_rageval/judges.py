"""Calling evaluators: which apply to a question, and a direct path for llama-index's judges.

llama-index's ``FaithfulnessEvaluator`` and ``RelevancyEvaluator`` build a ``SummaryIndex``
and a response synthesizer for every single evaluation, which costs ~2 ms of CPU each.
When the contexts fit in one prompt (the usual case), all that machinery sends exactly one
LLM call: the evaluator's current ``eval_template`` (from ``get_prompts()``, so custom
templates are honoured) filled with the query and the joined contexts. :func:`prepare`
makes that same call directly and falls back to the evaluator's own ``aevaluate`` whenever
the contexts might be split or refined (too long, custom node parser or prompt helper, a
subclass that overrides ``aevaluate``); :mod:`pytest_rageval.prompt_fit` decides what
fits. ``tests/test_judges.py`` checks that both paths send the same prompts and give the
same verdicts. That one call goes through :mod:`pytest_rageval.lean` (the LLM's own openai
client, without llama-index's wrappers) when the judge is llama-index's plain ``OpenAI``
or ``OpenAILike``, and through the LLM's ``apredict`` otherwise.

Judge answers are read strictly on both paths (:func:`read_verdict`): llama-index's own
evaluators pass any answer that contains "yes" anywhere ("Garbage: eyes closed" passes)
and crash or pass on odd correctness scores; here only a clear leading YES / NO, or a
finite score within the evaluator's range, is a verdict. Anything else is *invalid*, with
the judge's raw answer kept.

Which LLM judges by default lives in :mod:`pytest_rageval.judge_llms`, reading what the
app returned in :mod:`pytest_rageval.answers`; both are re-exported here. llama-index is
imported lazily, never at import time.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from pytest_rageval import lean, prompt_fit
from pytest_rageval.answers import response_parts, response_sources
from pytest_rageval.judge_llms import (
    DEFAULT_METRICS,
    JUDGE_FORMS,
    LOCAL_KEY_VARIABLE,
    JudgeSpec,
    api_base_problem,
    credentials_problem,
    default_evaluators,
    default_judge,
    parse_judge,
)
from pytest_rageval.prompt_fit import SAFETY_TOKENS, SEAM_TOKENS
from pytest_rageval.questions import Question

__all__ = [  # what callers import from here; most of it lives in the modules above
    "CORRECTNESS_RANGE",
    "DEFAULT_METRICS",
    "JUDGE_FORMS",
    "LOCAL_KEY_VARIABLE",
    "NO_CONTEXTS",
    "NO_CONTEXTS_RETRIEVED",
    "REQUIREMENTS",
    "SAFETY_TOKENS",
    "SEAM_TOKENS",
    "JudgeSpec",
    "api_base_problem",
    "applies",
    "credentials_problem",
    "default_evaluators",
    "default_judge",
    "needs",
    "parse_judge",
    "prepare",
    "read_score",
    "read_yes_no",
    "reference_kwargs",
    "response_parts",
    "response_sources",
    "strict_result",
    "wants_sources",
    "warm_up",
]

REQUIREMENTS = (
    ("requires_reference", "reference", "a reference"),
    ("requires_reference_contexts", "contexts", "reference contexts ('contexts')"),
    ("requires_pattern", "pattern", "a 'pattern'"),
    ("requires_expected_sources", "expected_sources", "'expected_sources'"),
)
"""Evaluator flag, the question field it needs, and how messages name that field."""


def applies(evaluator: Any, question: Question) -> bool:
    """Whether ``evaluator`` has what it needs from ``question`` (reference, contexts...)."""
    return needs(evaluator, question) is None


def warm_up(evaluators: Mapping[str, Any]) -> None:
    """Pay one-time costs in the caller's thread, not on the runner's loop: the openai
    SDK imports its resources on the first request (~0.6 s of imports and pydantic model
    building, measured with openai 2.54), and llama-index loads its tokenizer on the
    first fit check. On the loop they would stall every task and eat into the first
    attempt's time-out."""
    if "openai.resources" not in sys.modules and "openai" in sys.modules:
        import openai.resources  # noqa: F401
    if not _warm and any(_direct_kind(e.__class__) is not None for e in evaluators.values()):
        from llama_index.core.utils import get_tokenizer

        get_tokenizer()
        _warmed()


_warm = False


def _warmed() -> None:
    global _warm
    _warm = True


def needs(evaluator: Any, question: Question | None = None) -> str | None:
    """What a question must have for ``evaluator`` to apply ("a reference"...), if
    anything; with ``question``, only what that question lacks."""
    for flag, field, what in REQUIREMENTS:
        required = getattr(evaluator, flag, False) or (
            field == "reference" and _compares_with_reference(evaluator)
        )
        if required and (question is None or getattr(question, field) in (None, (), "")):
            return what
    return None


def reference_kwargs(question: Question) -> dict[str, Any]:
    """The keyword arguments every evaluator gets besides query, response and contexts."""
    kwargs: dict[str, Any] = {}
    if question.reference is not None:
        kwargs["reference"] = question.reference
    if question.contexts is not None:
        kwargs["reference_contexts"] = list(question.contexts)
    if question.pattern is not None:
        kwargs["pattern"] = question.pattern
    if question.expected_sources is not None:
        kwargs["expected_sources"] = list(question.expected_sources)
    return kwargs


def wants_sources(evaluator: Any) -> bool:
    """Whether ``evaluator`` scores retrieval by source ids (``retrieved_sources``)."""
    return bool(getattr(evaluator, "requires_expected_sources", False))


NO_CONTEXTS = (
    "the query engine returned a plain string, so there are no retrieved contexts to judge "
    "{metric} against; return a llama-index Response (its source_nodes are the contexts) "
    "or an (answer, [context, ...]) pair"
)
NO_CONTEXTS_RETRIEVED = "no contexts retrieved"
CORRECTNESS_RANGE = (1.0, 5.0)
"""The score range of llama-index's CorrectnessEvaluator prompt."""

_YES_NO = re.compile(r"^[\W_]*(yes|no)\b", re.IGNORECASE)
_SCORE = re.compile(
    r"^[\W_]*(?:score\s*[:=]?\s*)?([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:/\s*\d+(?:\.\d*)?)?"
    r"\s*[.,;:*]*\s*$",
    re.IGNORECASE,
)


def read_yes_no(answer: str | None) -> bool | None:
    """True for a leading YES, False for a leading NO (case, white space and punctuation
    around it tolerated), None for anything else: "Garbage: eyes closed" is no verdict."""
    match = _YES_NO.match((answer or "").strip())
    return None if match is None else match.group(1).lower() == "yes"


def read_score(answer: str | None) -> tuple[float | None, str]:
    """A correctness answer's score (its first line, alone) and its reasoning (the rest).

    ``4`` alone is a score; ``inf``, ``nan`` and prose are not (None).
    """
    text = (answer or "").strip()
    first, _, rest = text.partition("\n")
    match = _SCORE.match(first.strip())
    score = float(match.group(1)) if match else None
    return score, rest.lstrip("\n")


def prepare(
    evaluator: Any,
    *,
    query: str | None,
    response: str | None,
    contexts: Sequence[str] | None,
    **kwargs: Any,
) -> Callable[[], Awaitable[Any]]:
    """The evaluation as a call to await (again on a retry), with its CPU work done now.

    The runner prepares before it takes a pool slot, so a slot is held only while the
    call waits on the LLM. For llama-index's Faithfulness / Relevancy with contexts that
    fit one prompt the call is that one LLM request; for its Correctness the one request
    it makes; otherwise the evaluator's aevaluate. The answers of llama-index's judges
    are read strictly on every path. ``contexts`` is None when the app returned a plain
    string: context-based metrics are then invalid, and others get an empty list.
    """
    cls: type = type(evaluator)
    kind = _direct_kind(cls)
    if contexts is None and (kind in ("faithfulness", "relevancy") or _needs_contexts(evaluator)):
        return _settled(
            _invalid(query, response, None, NO_CONTEXTS.format(metric=_metric_name(evaluator)))
        )
    if kind is not None and response is not None:
        too_long = prompt_fit.too_long(evaluator._llm, response)
        if too_long is not None:
            return _settled(_invalid(query, response, contexts, too_long))
    if kind in ("faithfulness", "relevancy") and response is not None and contexts is not None:
        if not [context for context in contexts if context.strip()]:
            return _settled(_no_contexts_result(query, response, contexts))
        query_str = (
            response if kind == "faithfulness" else f"Question: {query}\nResponse: {response}"
        )
        if kind == "faithfulness" or query is not None:
            direct = _direct(evaluator, query, response, contexts, query_str)
            if direct is not None:
                return direct
    if kind == "correctness" and query is not None and response is not None:
        return _correctness(evaluator, query, response, kwargs.get("reference"))
    if not hasattr(evaluator, "aevaluate"):
        raise TypeError(
            f"evaluators must be llama-index BaseEvaluator objects (with aevaluate), "
            f"got {type(evaluator).__name__}"
        )
    call = functools.partial(
        evaluator.aevaluate,
        query=query,
        response=response,
        contexts=list(contexts) if contexts is not None else [],
        **kwargs,
    )
    if kind in ("faithfulness", "relevancy"):
        return _read_strictly(call, evaluator._llm)
    return call


def strict_result(result: Any) -> Any:
    """A Faithfulness / Relevancy result as :func:`prepare` reads it: passing only on a
    leading YES, failing on a leading NO, invalid otherwise (raw answer kept as feedback)."""
    verdict = read_yes_no(result.feedback)
    if verdict is None:
        return _invalid(
            result.query,
            result.response,
            result.contexts,
            "the judge answered neither YES nor NO",
            feedback=result.feedback,
        )
    if verdict == result.passing:
        return result
    return result.model_copy(update={"passing": verdict, "score": 1.0 if verdict else 0.0})


def _read_strictly(call: Callable[[], Awaitable[Any]], llm: Any) -> Callable[[], Awaitable[Any]]:
    async def read() -> Any:
        try:
            result = await call()
        except ValueError as exc:
            # llama-index's synthesizer, when the texts leave no room in the window
            if "available context size" not in str(exc):
                raise
            return _invalid(None, None, None, f"the prompt does not fit the judge: {exc}")
        return strict_result(result)

    return read


def _correctness(
    evaluator: Any, query: str, response: str, reference: str | None
) -> Callable[[], Awaitable[Any]]:
    """llama-index's CorrectnessEvaluator's one LLM call, its answer read strictly."""
    from llama_index.core.evaluation.eval_utils import default_parser

    template = evaluator.get_prompts()["eval_template"]
    llm, threshold = evaluator._llm, evaluator._score_threshold
    parser = evaluator.parser_function
    low, high = getattr(evaluator, "score_range", CORRECTNESS_RANGE)
    predict = lean.predictor(
        llm,
        template,
        query=query,
        generated_answer=response,
        reference_answer=reference or "(NO REFERENCE ANSWER SUPPLIED)",
    )

    async def call() -> Any:
        from llama_index.core.evaluation import EvaluationResult

        raw = await predict()
        if parser is default_parser:
            score, reasoning = read_score(raw)
        else:  # the user's own parser decides what a score is; its failure is no verdict
            try:
                score, reasoning = parser(raw)
            except Exception as exc:
                score, reasoning = None, f"{type(exc).__name__}: {exc}"
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            why = "the judge's answer has no score on its first line"
            return _invalid(query, response, None, why, feedback=raw)
        if not math.isfinite(score) or not low <= score <= high:
            why = f"the judge's score {score!r} is outside {low:g}-{high:g}"
            return _invalid(query, response, None, why, feedback=raw)
        return EvaluationResult(
            query=query,
            response=response,
            passing=score >= threshold,
            score=float(score),
            feedback=reasoning,
        )

    return call


def _invalid(
    query: str | None,
    response: str | None,
    contexts: Sequence[str] | None,
    reason: str,
    feedback: str | None = None,
) -> Any:
    from llama_index.core.evaluation import EvaluationResult

    return EvaluationResult(
        query=query,
        response=response,
        contexts=list(contexts) if contexts is not None else None,
        passing=None,
        invalid_result=True,
        invalid_reason=reason,
        feedback=feedback,
    )


def _no_contexts_result(query: str | None, response: str, contexts: Sequence[str]) -> Any:
    from llama_index.core.evaluation import EvaluationResult

    return EvaluationResult(
        query=query,
        response=response,
        contexts=list(contexts),
        passing=False,
        score=0.0,
        feedback=NO_CONTEXTS_RETRIEVED,
    )


def _settled(result: Any) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return result

    return call


def _needs_contexts(evaluator: Any) -> bool:
    """Evaluators that judge the retrieved contexts; they cannot work without any."""
    return bool(getattr(evaluator, "requires_contexts", False))


def _metric_name(evaluator: Any) -> str:
    name = type(evaluator).__name__.removesuffix("Evaluator")
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).lower() or "this metric"


def _direct(
    evaluator: Any, query: str | None, response: str, contexts: Sequence[str], query_str: str
) -> Callable[[], Awaitable[Any]] | None:
    """One LLM call with the evaluator's own templates, or None when it might not fit."""
    chunks = [context.strip() for context in contexts if context.strip()]
    prompts = evaluator.get_prompts()
    qa_template, refine_template = prompts["eval_template"], prompts["refine_template"]
    llm = evaluator._llm
    if not chunks or not prompt_fit.fits(llm, (qa_template, refine_template), query_str, chunks):
        return None
    context_str = "\n\n".join(chunks)
    raise_error = evaluator._raise_error
    # format(query_str=..., context_str=...) gives the same text as llama-index's
    # partial_format(query_str=...) then format(context_str=...), without a deep copy
    predict = lean.predictor(llm, qa_template, query_str=query_str, context_str=context_str)

    async def call() -> Any:
        from llama_index.core.evaluation import EvaluationResult

        raw = await predict()
        # what the response synthesizer does with an empty answer
        feedback = raw if isinstance(raw, str) and raw else "Empty Response"
        passing = read_yes_no(feedback)
        if passing is None:
            return _invalid(
                query, response, contexts, "the judge answered neither YES nor NO", feedback
            )
        if not passing and raise_error:
            raise ValueError("The response is invalid")
        return EvaluationResult(
            query=query,
            response=response,
            contexts=contexts,
            passing=passing,
            score=1.0 if passing else 0.0,
            feedback=feedback,
        )

    return call


def _evaluation_class(name: str) -> Any:
    """A class of ``llama_index.core.evaluation`` if that is loaded; nothing can be an
    instance of it otherwise, and importing it here would cost a second for nothing."""
    module = sys.modules.get("llama_index.core.evaluation")
    return getattr(module, name, None)


@functools.cache
def _direct_kind(cls: type) -> str | None:
    """The kind of llama-index's own judges whose aevaluate is untouched, else None."""
    for kind, name in (
        ("faithfulness", "FaithfulnessEvaluator"),
        ("relevancy", "RelevancyEvaluator"),
        ("correctness", "CorrectnessEvaluator"),
    ):
        base = _evaluation_class(name)
        if (
            base is not None
            and issubclass(cls, base)
            and getattr(cls, "aevaluate", None) is base.aevaluate
        ):
            return kind
    return None


def _compares_with_reference(evaluator: Any) -> bool:
    """llama-index's evaluators that need a reference answer but do not say so."""
    for name in ("CorrectnessEvaluator", "SemanticSimilarityEvaluator"):
        cls = _evaluation_class(name)
        if cls is not None and isinstance(evaluator, cls):
            return True
    return False
