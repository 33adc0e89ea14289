"""Calling evaluators: which apply to a question, and a direct path for llama-index's judges.

llama-index's ``FaithfulnessEvaluator`` and ``RelevancyEvaluator`` build a ``SummaryIndex``
and a response synthesizer for every single evaluation, which costs ~2 ms of CPU each.
When the contexts fit in one prompt (the usual case), all that machinery sends exactly one
LLM call: the evaluator's current ``eval_template`` (from ``get_prompts()``, so custom
templates are honoured) filled with the query and the joined contexts. :func:`prepare`
makes that same call directly and falls back to the evaluator's own ``aevaluate`` whenever
the contexts might be split or refined (too long, custom node parser or prompt helper, a
subclass that overrides ``aevaluate``). ``tests/test_judges.py`` checks that both paths
send the same prompts and give the same verdicts.

Judge answers are read strictly on both paths (:func:`read_verdict`): llama-index's own
evaluators pass any answer that contains "yes" anywhere ("Garbage: eyes closed" passes)
and crash or pass on odd correctness scores; here only a clear leading YES / NO, or a
finite score within the evaluator's range, is a verdict. Anything else is *invalid*, with
the judge's raw answer kept.

llama-index is imported lazily here, never at import time.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pytest_rageval.questions import Question
from pytest_rageval.redaction import redact

SAFETY_TOKENS = 16
"""Slack kept below every token limit, so the direct path is only taken when it surely fits."""

SEAM_TOKENS = 4
"""Most tokens that putting two texts side by side can add at the seam (3 seen in 200,000
random trials with tiktoken's cl100k_base; tests/test_judges.py checks hard cases)."""


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


JUDGE_FORMS = "openai:<model> or openai-like:<model>@<base_url>"
LOCAL_KEY_VARIABLE = "RAG_JUDGE_API_KEY"
"""The key an ``openai-like`` judge sends (OPENAI_API_KEY never goes to another server)."""


@dataclass(frozen=True)
class JudgeSpec:
    """Which LLM judges, as the ini option ``rag_judge`` names it."""

    kind: str
    """``openai`` (OpenAI's API, or OPENAI_API_BASE) or ``openai-like`` (any server that
    speaks OpenAI's chat completions API: vLLM, llama.cpp's server, Ollama...)."""
    model: str
    base_url: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.model}" + (f"@{self.base_url}" if self.base_url else "")


def parse_judge(text: str) -> JudgeSpec:
    """``openai:gpt-4o-mini`` or ``openai-like:qwen2.5:7b@http://localhost:11434/v1``;
    ValueError saying what is wrong otherwise."""
    kind, sep, rest = text.strip().partition(":")
    if not sep or kind not in ("openai", "openai-like"):
        raise ValueError(f"expected {JUDGE_FORMS}, got {text!r}")
    if kind == "openai":
        if not rest.strip():
            raise ValueError(f"expected openai:<model>, e.g. openai:gpt-4o-mini, got {text!r}")
        return JudgeSpec("openai", rest.strip())
    match = re.match(r"(.+?)@(https?://.*)$", rest.strip())  # the URL may hold an @ too
    model, base_url = (match.group(1).strip(), match.group(2)) if match else ("", "")
    if not model or not re.match(r"https?://[^\s/]+", base_url):
        raise ValueError(
            "expected openai-like:<model>@<base_url>, e.g. "
            f"openai-like:qwen2.5:7b@http://localhost:11434/v1, got {redact(text)!r}"
        )
    problem = credentials_problem(base_url, LOCAL_KEY_VARIABLE)
    if problem is not None:
        raise ValueError(f"the base URL {problem}")
    return JudgeSpec("openai-like", model, base_url)


def credentials_problem(url: str, key_variable: str) -> str | None:
    """What is wrong with a base URL that has credentials in it (``user:password@``),
    shown without them; None when it has none. OpenAI clients send their key as a bearer
    token and never a URL's credentials: the openai SDK's aiohttp transport refuses such
    a URL before sending anything, httpx's would send them in place of the key."""
    if "@" not in urlsplit(url.strip()).netloc:
        return None
    return (
        f"{redact(url.strip())} has credentials in it (user:password@), which OpenAI clients "
        f"do not send: remove them, and set the key in {key_variable}"
    )


def api_base_problem() -> str | None:
    """What is wrong with ``OPENAI_API_BASE``, if anything (see :func:`credentials_problem`)."""
    url = os.environ.get("OPENAI_API_BASE")
    problem = credentials_problem(url, "OPENAI_API_KEY") if url else None
    return f"OPENAI_API_BASE={problem}" if problem is not None else None


def default_judge(spec: JudgeSpec, timeout: float) -> tuple[Any, Any]:
    """The judge LLM ``spec`` names and the HTTP client it owns (None when it has none of
    ours).

    llama-index's ``OpenAI`` (or, for ``openai-like``, ``OpenAILike`` with the chat API)
    at temperature 0 with ``max_retries=0`` (the runner owns retries), on the openai SDK's
    aiohttp transport (``openai[aiohttp]``): its cost per request stays flat as requests
    in flight grow, where the default httpx transport's grows with them. Its repr never
    shows the API key. ImportError when ``openai-like``'s package is not installed.
    """
    cls = _redacted(spec.kind)
    client = None
    try:
        from openai import DefaultAioHttpClient

        client = DefaultAioHttpClient(timeout=timeout, event_hooks={"response": [_error_in_answer]})
    except ImportError:  # an openai without aiohttp support: its default transport
        pass
    settings: dict[str, Any] = {
        "model": spec.model,
        "temperature": 0.0,
        "max_retries": 0,
        "timeout": timeout,
        "async_http_client": client,
    }
    if spec.kind == "openai-like":
        settings.update(
            api_base=spec.base_url,
            api_key=os.environ.get(LOCAL_KEY_VARIABLE) or "none",
            is_chat_model=True,
        )
    return cls(**settings), client


async def _error_in_answer(response: Any) -> None:
    """A 200 whose body is ``{"error": ...}`` raised as the error it is (gateways such as
    OpenRouter or LiteLLM relay an upstream's failure so); the SDK would read it as an
    answer without choices, on which llama-index fails with a TypeError."""
    if response.status_code != 200 or "json" not in response.headers.get("content-type", ""):
        return  # (a stream is text/event-stream: left unread)
    await response.aread()
    if b'"error"' not in response.content:
        return
    try:
        body = json.loads(response.content)
    except ValueError:
        return  # not JSON, or not UTF-8: the SDK says so, and retry.classify knows it
    if isinstance(body, dict) and body.get("error") and "choices" not in body:
        raise _answered_with_error()(body["error"], response)


@functools.cache
def _answered_with_error() -> type:
    import openai

    class AnsweredWithError(openai.APIStatusError):  # its name is retry.ANSWERED_WITH_ERROR
        """A 200 whose body is an error: ``status_code`` is the status the error names
        (429 or 5xx when it says it is transient, else the 200 it came with), ``said``
        the server's message. An ``OpenAIError``, so the SDK raises it as it is."""

        def __init__(self, error: Any, response: Any) -> None:
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                said = error["message"]
            else:
                said = error if isinstance(error, str) else json.dumps(error)
            super().__init__(
                f"HTTP 200 with an error in its body: {said}", response=response, body=error
            )
            self.status_code = _said_status(error)
            self.said = said

    return AnsweredWithError


def _said_status(error: Any) -> int:
    """The HTTP status an error body names: its ``code`` or ``status`` when that is a
    4xx or 5xx, 429 or 500 for a rate-limit or server-error ``type``; else 200."""
    if not isinstance(error, dict):
        return 200
    for name in ("code", "status", "status_code"):
        value = error.get(name)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 400 <= value < 600:
            return value
    words = " ".join(str(error.get(name, "")) for name in ("type", "code", "status")).lower()
    if re.search(r"rate.?limit|too.?many.?requests", words):
        return 429
    if re.search(r"server|internal|overload|unavailable|timeout|bad.?gateway", words):
        return 500
    return 200


DEFAULT_METRICS = ("faithfulness", "relevancy", "correctness")
"""The metrics of :func:`default_evaluators`, in its order."""


def default_evaluators(llm: Any) -> dict[str, Any]:
    """The plugin's default metrics: llama-index's faithfulness, relevancy and correctness
    judged by ``llm`` (what the ``rag_evaluators`` fixture and ``rageval calibrate`` use)."""
    from llama_index.core.evaluation import (
        CorrectnessEvaluator,
        FaithfulnessEvaluator,
        RelevancyEvaluator,
    )

    classes = (FaithfulnessEvaluator, RelevancyEvaluator, CorrectnessEvaluator)
    return {name: cls(llm=llm) for name, cls in zip(DEFAULT_METRICS, classes, strict=True)}


@functools.cache
def _redacted(kind: str) -> type:
    """llama-index's ``OpenAI`` (or ``OpenAILike``) whose repr never shows its API key
    (``pytest -l`` prints the locals of failing tests, and JUnit XML keeps what pytest
    prints)."""
    if kind == "openai-like":
        from llama_index.llms.openai_like import OpenAILike as Base
    else:
        from llama_index.llms.openai import OpenAI as Base

    class Redacted(Base):  # type: ignore[misc]
        def __repr_args__(self) -> Any:
            for name, value in super().__repr_args__():
                yield name, ("***" if name == "api_key" and value else value)

    Redacted.__name__ = Redacted.__qualname__ = f"Redacted{Base.__name__}"
    return Redacted


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


def response_sources(response: Any) -> list[list[str]] | None:
    """Each retrieved node's ids: its ``ref_doc_id`` and its ``file_name`` metadata. None
    when the app returned no nodes (a string, or contexts as strings)."""
    if hasattr(response, "source_nodes") and hasattr(response, "response"):
        nodes = list(response.source_nodes)
    elif isinstance(response, tuple) and len(response) == 2 and isinstance(response[0], str):
        nodes = [c for c in response[1] if not isinstance(c, str)]
        if len(nodes) != len(response[1]):
            return None
    else:
        return None
    sources = []
    for scored in nodes:
        node = getattr(scored, "node", scored)
        ids = [
            getattr(node, "ref_doc_id", None),
            (getattr(node, "metadata", None) or {}).get("file_name"),
        ]
        sources.append([str(i) for i in ids if i])
    return sources


def response_parts(response: Any) -> tuple[str, list[str] | None]:
    """The answer text and retrieved contexts of what the app returned.

    A llama-index ``Response`` gives its source nodes (maybe none); an ``(answer,
    contexts)`` pair gives its contexts; a plain string has no contexts at all (None),
    which context-based metrics report as invalid rather than judge.
    """
    if isinstance(response, str):
        return response, None
    if isinstance(response, tuple) and len(response) == 2 and isinstance(response[0], str):
        answer, contexts = response
        if isinstance(contexts, str) or not isinstance(contexts, Sequence):
            raise TypeError(
                "an (answer, contexts) pair needs a list of context strings as its second "
                f"item, got {type(contexts).__name__}"
            )
        texts = [c if isinstance(c, str) else _node_text(c) for c in contexts]
        return answer, texts
    if hasattr(response, "source_nodes") and hasattr(response, "response"):
        text = response.response
        if not isinstance(text, str):
            raise TypeError(
                f"the query engine returned a {type(response).__name__} without answer text "
                "(a streaming response?); build the query engine with streaming=False"
            )
        return text, [node.get_content() for node in response.source_nodes]
    raise TypeError(
        "the query engine must return a string, an (answer, [contexts]) pair or a "
        f"llama-index Response, got {type(response).__name__}"
    )


def _node_text(node: Any) -> str:
    if hasattr(node, "get_content"):
        return str(node.get_content())
    raise TypeError(f"contexts must be strings or llama-index nodes, got {type(node).__name__}")


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
        too_long = _too_long(evaluator._llm, response)
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

    async def call() -> Any:
        from llama_index.core.evaluation import EvaluationResult

        raw = await llm.apredict(
            prompt=template,
            query=query,
            generated_answer=response,
            reference_answer=reference or "(NO REFERENCE ANSWER SUPPLIED)",
        )
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


def _too_long(llm: Any, response: str) -> str | None:
    """Why ``response`` cannot be judged at all (more tokens than the judge's window)."""
    try:
        metadata = llm.metadata
        window = int(metadata.context_window)
    except Exception:
        return None
    # a token is at least one byte, a character at most four
    if window <= 0 or len(response) * 4 < window // 2:
        return None
    from llama_index.core.utils import get_tokenizer

    tokens = len(get_tokenizer()(response))
    num_output = metadata.num_output if metadata.num_output > 0 else _default_num_output()
    if tokens + num_output + _padding() <= window:
        return None
    return f"response too long for the judge ({tokens} tokens, window {window})"


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
    if not chunks or not _fits(llm, (qa_template, refine_template), query_str, chunks):
        return None
    context_str = "\n\n".join(chunks)
    raise_error = evaluator._raise_error

    async def call() -> Any:
        from llama_index.core.evaluation import EvaluationResult

        # format(query_str=..., context_str=...) gives the same text as llama-index's
        # partial_format(query_str=...) then format(context_str=...), without a deep copy
        raw = await llm.apredict(qa_template, query_str=query_str, context_str=context_str)
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


def _fits(llm: Any, templates: Sequence[Any], query_str: str, chunks: list[str]) -> bool:
    """True when llama-index would keep each context whole and send one prompt.

    This mirrors ``CompactAndRefine``: the contexts, joined, must fit the room its
    ``PromptHelper`` leaves for them (context window - output - the biggest template and
    the LLM's system prompt - the synthesizer's response padding). Anything it cannot
    mirror exactly (chat templates, structured LLMs, a custom prompt helper or node
    parser) answers False, and the caller takes llama-index's own path.

    Token counts are upper bounds built from cached counts of the parts (contexts repeat
    across evaluators and questions, templates across the run): joining or inserting text
    changes at most a few tokens at each seam (``SEAM_TOKENS``), and a bound that is
    within the limit means the exact count is too.
    """
    from llama_index.core.llms.structured_llm import StructuredLLM
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.prompts import PromptTemplate
    from llama_index.core.prompts.prompt_utils import get_empty_prompt_txt
    from llama_index.core.settings import Settings
    from llama_index.core.utils import get_tokenizer

    if Settings._prompt_helper is not None or isinstance(llm, StructuredLLM):
        return False
    if not all(type(template) is PromptTemplate for template in templates):
        return False
    # what SummaryIndex.from_documents splits with; llama-index fills both in lazily
    parsers = Settings._transformations or [p for p in [Settings._node_parser] if p is not None]
    if len(parsers) > 1 or any(type(parser) is not SentenceSplitter for parser in parsers):
        return False
    splitter = parsers[0] if parsers else None
    assert splitter is None or isinstance(splitter, SentenceSplitter)
    node_limit = splitter.chunk_size if splitter is not None else _default_chunk_size()
    node_limit -= SAFETY_TOKENS
    tokenizer = get_tokenizer()

    def count(text: str) -> int:
        return _token_count(tokenizer, text)

    chunk_tokens = [count(chunk) for chunk in chunks]
    if max(chunk_tokens) > node_limit:
        return False
    prompt_tokens = 0
    for template in templates:
        if template.function_mappings:
            # a function may turn query_str into any text: count the real prompt
            tokens = count(get_empty_prompt_txt(template.partial_format(query_str=query_str)))
        else:
            # the template with empty variables, plus query_str wherever it goes
            name = (template.template_var_mappings or {}).get("query_str", "query_str")
            places = template.template_vars.count(name)
            tokens = count(get_empty_prompt_txt(template)) + places * (
                count(query_str) + 2 * SEAM_TOKENS
            )
        prompt_tokens = max(prompt_tokens, tokens)
    prompt_tokens += count(llm.system_prompt or "")
    metadata = llm.metadata
    num_output = metadata.num_output if metadata.num_output != -1 else _default_num_output()
    window: int = metadata.context_window - num_output - prompt_tokens - _padding() - SAFETY_TOKENS
    joined = sum(chunk_tokens) + (len(chunks) - 1) * (count("\n\n") + 2 * SEAM_TOKENS)
    return joined <= window or count("\n\n".join(chunks)) <= window


@functools.lru_cache(maxsize=8192)
def _token_count(tokenizer: Callable[[str], list[Any]], text: str) -> int:
    """Tokens in ``text``, cached: the tokenizer is most of what checking a fit costs."""
    return len(tokenizer(text))


@functools.cache
def _padding() -> int:
    """Tokens the response synthesizer keeps free below the window (500 in 0.14)."""
    try:
        from llama_index.core.response_synthesizers.refine import DEFAULT_RESPONSE_PADDING_SIZE
    except ImportError:  # older llama-index padded by 5; more is only more careful
        return 500
    return max(int(DEFAULT_RESPONSE_PADDING_SIZE), 5)


@functools.cache
def _default_num_output() -> int:
    from llama_index.core.constants import DEFAULT_NUM_OUTPUTS

    return int(DEFAULT_NUM_OUTPUTS)


@functools.cache
def _default_chunk_size() -> int:
    from llama_index.core.node_parser import SentenceSplitter

    return int(SentenceSplitter().chunk_size)


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
