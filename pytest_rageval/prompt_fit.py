"""Whether a judge prompt fits: the token arithmetic behind the direct path of
:mod:`pytest_rageval.judges`, which is only taken when llama-index would surely send the
contexts in one prompt, and the check that a response fits the judge's window at all.

llama-index is imported lazily here, never at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

SAFETY_TOKENS = 16
"""Slack kept below every token limit, so the direct path is only taken when it surely fits."""

SEAM_TOKENS = 4
"""Most tokens that putting two texts side by side can add at the seam (3 seen in 200,000
random trials with tiktoken's cl100k_base; tests/test_judges.py checks hard cases)."""


def too_long(llm: Any, response: str) -> str | None:
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


def fits(llm: Any, templates: Sequence[Any], query_str: str, chunks: list[str]) -> bool:
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
    prompt_tokens = max(_template_tokens(template, query_str, count) for template in templates)
    prompt_tokens += count(llm.system_prompt or "")
    metadata = llm.metadata
    num_output = metadata.num_output if metadata.num_output != -1 else _default_num_output()
    window: int = metadata.context_window - num_output - prompt_tokens - _padding() - SAFETY_TOKENS
    joined = sum(chunk_tokens) + (len(chunks) - 1) * (count("\n\n") + 2 * SEAM_TOKENS)
    return joined <= window or count("\n\n".join(chunks)) <= window


def _template_tokens(template: Any, query_str: str, count: Callable[[str], int]) -> int:
    """An upper bound on the tokens of ``template`` with ``query_str`` in it (and its
    contexts left empty)."""
    from llama_index.core.prompts.prompt_utils import get_empty_prompt_txt

    if template.function_mappings:
        # a function may turn query_str into any text: count the real prompt
        return count(get_empty_prompt_txt(template.partial_format(query_str=query_str)))
    # the template with empty variables, plus query_str wherever it goes
    name = (template.template_var_mappings or {}).get("query_str", "query_str")
    places: int = template.template_vars.count(name)
    return count(get_empty_prompt_txt(template)) + places * (count(query_str) + 2 * SEAM_TOKENS)


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
