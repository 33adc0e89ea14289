"""The two fixtures a team writes: the app under test and how to judge it."""

from pathlib import Path

import pytest
from keyword_rag import build_query_engine, evaluators


@pytest.fixture(scope="session")
def rag_query_engine():
    return build_query_engine(Path(__file__).parent / "corpus")


@pytest.fixture(scope="session")
def rag_evaluators():
    # deterministic, LLM-free checks; swap in llama-index's judges when you have a key
    return evaluators()
