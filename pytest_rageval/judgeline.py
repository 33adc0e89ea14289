"""Where the judge goes, for the header: the default judge's base URL (credentials
redacted), the user's own ``rag_judge_llm`` fixture, or no judge when no collected set
needs one (every set names only metrics that need no LLM)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pytest

from pytest_rageval.judges import JudgeSpec
from pytest_rageval.redaction import redact
from pytest_rageval.sets import SET_KEY

OPENAI_BASE = "https://api.openai.com/v1"
"""Where llama-index's OpenAI LLM sends requests when OPENAI_API_BASE is not set."""


def base_url(spec: JudgeSpec) -> str:
    """The base URL the default judge ``spec`` sends its requests to, redacted."""
    url = spec.base_url if spec.kind == "openai-like" else None
    return redact(url or os.environ.get("OPENAI_API_BASE") or OPENAI_BASE)


def line(spec: JudgeSpec, items: Iterable[pytest.Item]) -> str | None:
    """``rageval: judge ...`` for a run of ``items``; None when none is a question."""
    questions = [i for i in items if SET_KEY in i.stash or "rag_result" in _fixtures(i)]
    if not questions:
        return None
    judged = [item for item in questions if _needs_judge(item)]
    if not judged:
        return "rageval: no judge (no collected question needs an LLM judge)"
    own = _fixture_def(judged[0], "rag_judge_llm")
    module = getattr(getattr(own, "func", None), "__module__", None) or "pytest_rageval"
    if not module.startswith("pytest_rageval"):
        return f"rageval: judge: the rag_judge_llm fixture of {module}"
    return f"rageval: judge: {spec} at {base_url(spec)}"


def _needs_judge(item: pytest.Item) -> bool:
    """Whether ``item``'s question is judged with ``rag_judge_llm``: its set needs the
    ``rag_evaluators`` fixture, and that is the plugin's own or asks for the judge."""
    from pytest_rageval.submit import _wants_rag_evaluators

    rset = item.stash.get(SET_KEY, None)
    if rset is None:
        return True  # a rag_result test whose rag_question is not parametrized
    if not _wants_rag_evaluators(rset, item):
        return False
    evaluators = _fixture_def(item, "rag_evaluators")
    if evaluators is None:
        return True
    if getattr(evaluators.func, "__module__", None) == "pytest_rageval.fixtures":
        return True
    return "rag_judge_llm" in getattr(evaluators, "argnames", ())


def _fixtures(item: pytest.Item) -> tuple[str, ...]:
    return tuple(getattr(item, "fixturenames", ()))


def _fixture_def(item: pytest.Item, name: str) -> Any:
    from pytest_rageval.submit import _fixture_def

    return _fixture_def(item, name)
