"""The fixtures pytest-rageval provides; every one can be overridden in a conftest.py."""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest

from pytest_rageval import judges
from pytest_rageval.keys import QUESTION_KEY
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner import Runner
from pytest_rageval.submit import RagSetupError
from pytest_rageval.wiring import SESSION_KEY


@pytest.fixture
def rag_query_engine() -> Any:
    """The application under test. Override it in conftest.py: return a llama-index query
    engine, or any callable (sync or async) taking the query string and returning a
    string or a llama-index ``Response``."""
    raise RagSetupError(
        "no query engine: define a fixture named 'rag_query_engine' in your conftest.py "
        "that returns your llama-index query engine (or a callable taking the query string)"
    )


@pytest.fixture(scope="session")
def rag_judge_llm(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The LLM that judges answers, as the ini option ``rag_judge`` names it (default
    ``openai:<rag_judge_model>``, gpt-4o-mini) at temperature 0, on one pooled aiohttp
    connection pool for the session. ``openai:`` needs ``OPENAI_API_KEY`` (and honours
    ``OPENAI_API_BASE``); ``openai-like:<model>@<base_url>`` talks to any OpenAI-compatible
    server. Override it to judge with another LLM."""
    session = request.config.stash[SESSION_KEY]
    spec = session.settings.judge
    if spec.kind == "openai" and not os.environ.get("OPENAI_API_KEY"):
        raise RagSetupError(
            "no judge: OPENAI_API_KEY is not set. Set it (and OPENAI_API_BASE for an "
            "OpenAI-compatible server), name a local judge in the ini option rag_judge "
            "(openai-like:<model>@<base_url>), or override the 'rag_judge_llm' fixture (or "
            "'rag_evaluators') in your conftest.py"
        )
    llm, client = judges.default_judge(spec, session.settings.timeout)
    yield llm
    if client is not None:  # on the loop its connections live on
        _close_on_runner(session.started_runner, client.aclose())


@pytest.fixture(scope="session")
def rag_evaluators(rag_judge_llm: Any) -> dict[str, Any]:
    """Metric name -> llama-index evaluator: faithfulness, relevancy and correctness
    judged by ``rag_judge_llm``. Correctness applies only to questions with a reference."""
    return judges.default_evaluators(rag_judge_llm)


@pytest.fixture(scope="session")
def rag_embed_model() -> Any:
    """The embedding model of the built-in ``semantic_similarity`` metric: OpenAI's
    ``text-embedding-3-small`` (needs ``OPENAI_API_KEY`` and
    ``llama-index-embeddings-openai``; honours ``OPENAI_API_BASE``). Override it to
    return any llama-index embedding model."""
    if not os.environ.get("OPENAI_API_KEY"):
        raise RagSetupError(
            "semantic_similarity needs an embedding model: set OPENAI_API_KEY (with "
            "llama-index-embeddings-openai installed), or override the 'rag_embed_model' "
            "fixture in your conftest.py to return any llama-index embedding model"
        )
    try:
        from llama_index.embeddings.openai import OpenAIEmbedding
    except ImportError:
        raise RagSetupError(
            "semantic_similarity's default embedding model needs llama-index-embeddings-openai: "
            "pip install llama-index-embeddings-openai, or override the 'rag_embed_model' "
            "fixture in your conftest.py to return any llama-index embedding model"
        ) from None
    return OpenAIEmbedding(
        model="text-embedding-3-small",
        api_base=os.environ.get("OPENAI_API_BASE") or None,
        max_retries=0,
    )


@pytest.fixture(scope="session")
def rag_runner(request: pytest.FixtureRequest) -> Runner:
    """The process's shared runner (one event loop thread, ``--rag-workers`` slots)."""
    return request.config.stash[SESSION_KEY].runner


@pytest.fixture
def rag_result(request: pytest.FixtureRequest, rag_question: Any) -> QuestionResult:
    """``rag_question`` asked and judged through the shared runner: ``.response``,
    ``.contexts`` and ``.evaluations`` (metric -> llama-index ``EvaluationResult``).
    The pass-rate verdict is applied after the test body."""
    result = request.config.stash[SESSION_KEY].ask(request.node, request)
    if result is None:  # the reason fails the test in its call phase
        return QuestionResult(request.node.stash.get(QUESTION_KEY, None) or _placeholder())
    return result


def _placeholder() -> Any:
    from pytest_rageval.questions import Question

    return Question(query="(not evaluated)")


def _close_on_runner(runner: Runner | None, closing: Awaitable[Any]) -> None:
    """Await ``closing`` (a client's ``aclose()``) on the runner's loop, where its
    connections live; closes the coroutine unawaited when the runner never started."""
    if runner is None or runner.closed:
        if inspect.iscoroutine(closing):
            closing.close()
        return
    with contextlib.suppress(Exception):
        runner.submit(closing).result(timeout=10)
