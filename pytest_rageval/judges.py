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

llama-index is imported lazily here, never at import time.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pytest_rageval.questions import Question

SAFETY_TOKENS = 16
"""Slack kept below every token limit, so the direct path is only taken when it surely fits."""

SEAM_TOKENS = 4
"""Most tokens that putting two texts side by side can add at the seam (3 seen in 200,000
random trials with tiktoken's cl100k_base; tests/test_judges.py checks hard cases)."""


def applies(evaluator: Any, question: Question) -> bool:
    """Whether ``evaluator`` has what it needs from ``question`` (reference, contexts)."""
    needs_reference = getattr(evaluator, "requires_reference", False) or _is_correctness(evaluator)
    if needs_reference and question.reference is None:
        return False
    return not (getattr(evaluator, "requires_reference_contexts", False) and not question.contexts)


def reference_kwargs(question: Question) -> dict[str, Any]:
    """The keyword arguments every evaluator gets besides query, response and contexts."""
    kwargs: dict[str, Any] = {}
    if question.reference is not None:
        kwargs["reference"] = question.reference
    if question.contexts is not None:
        kwargs["reference_contexts"] = list(question.contexts)
    return kwargs


def response_parts(response: Any) -> tuple[str, list[str]]:
    """The answer text and retrieved contexts of a string or a llama-index ``Response``."""
    if isinstance(response, str):
        return response, []
    if hasattr(response, "source_nodes") and hasattr(response, "response"):
        text = response.response
        if not isinstance(text, str):
            raise TypeError(
                f"the query engine returned a {type(response).__name__} without answer text "
                "(a streaming response?); build the query engine with streaming=False"
            )
        return text, [node.get_content() for node in response.source_nodes]
    raise TypeError(
        "the query engine must return a string or a llama-index Response, "
        f"got {type(response).__name__}"
    )


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
    fit one prompt the call is that one LLM request; otherwise the evaluator's aevaluate.
    """
    cls: type = type(evaluator)
    kind = _direct_kind(cls)
    if kind is not None and response is not None and contexts is not None:
        query_str = (
            response if kind == "faithfulness" else f"Question: {query}\nResponse: {response}"
        )
        if kind == "faithfulness" or query is not None:
            direct = _direct(evaluator, query, response, contexts, query_str)
            if direct is not None:
                return direct
    if not hasattr(evaluator, "aevaluate"):
        raise TypeError(
            f"evaluators must be llama-index BaseEvaluator objects (with aevaluate), "
            f"got {type(evaluator).__name__}"
        )
    return functools.partial(
        evaluator.aevaluate, query=query, response=response, contexts=contexts, **kwargs
    )


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
        passing = "yes" in feedback.lower()
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
    """ "faithfulness" / "relevancy" for llama-index's own judges whose aevaluate is untouched."""
    for kind, name in (
        ("faithfulness", "FaithfulnessEvaluator"),
        ("relevancy", "RelevancyEvaluator"),
    ):
        base = _evaluation_class(name)
        if (
            base is not None
            and issubclass(cls, base)
            and getattr(cls, "aevaluate", None) is base.aevaluate
        ):
            return kind
    return None


def _is_correctness(evaluator: Any) -> bool:
    cls = _evaluation_class("CorrectnessEvaluator")
    return cls is not None and isinstance(evaluator, cls)
