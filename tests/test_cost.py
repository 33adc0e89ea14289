"""What a run cost: tokens per metric and for the app, as the API reported them, priced
by rag_prices, and what the verdict cache saved."""

from __future__ import annotations

import json

import pytest
from openai_server import FakeOpenAI
from qfiles import question_set

from pytest_rageval.usage import PriceError, parse_prices, price_of

APP = """
import os

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.llms.openai import OpenAI


@pytest.fixture(scope="session")
def rag_query_engine():
    # one document: with MockEmbedding every node ties, and ties are ordered by random ids
    documents = [Document(text="Fact: volcano 0 has property 0, volcano 1 property 7.")]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=8))
    llm = OpenAI(model="gpt-4o-mini", api_base=os.environ["OPENAI_API_BASE"], max_retries=0)
    return index.as_query_engine(llm=llm, similarity_top_k=1)


@pytest.fixture(scope="session")
def sync_engine(rag_query_engine):
    return lambda query: rag_query_engine.query(query)  # run in the runner's threads
"""

PRICES = """
[pytest]
asyncio_default_fixture_loop_scope = function
rag_prices =
    gpt-4o = 2.50 10.00
    gpt-4o-mini = 0.15 0.60
"""


@pytest.fixture
def priced(http_project: pytest.Pytester) -> pytest.Pytester:
    http_project.makeconftest(APP)
    http_project.makeini(PRICES)
    http_project.makefile(
        ".yaml",
        rag_async=question_set(
            3,
            evaluators="faithfulness, relevancy",
            head="thresholds: {faithfulness: 0, relevancy: 0}\n",
            query="What property does volcano {i} have?",
        ),
        rag_sync=question_set(
            3,
            head="query_engine: sync_engine\nthresholds: {faithfulness: 0}\n",
            query="Which property does volcano {i} have?",
        ),
    )
    return http_project


def test_tokens_and_cost_match_what_the_api_reported(
    priced: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    result = priced.runpytest("--rag-report=report.json")
    result.assert_outcomes(passed=6)
    spent = json.loads((priced.path / "report.json").read_text())["usage"]
    app, judge = openai_server.usage["app"], openai_server.usage["judge"]
    # the app's own LLM calls, on the loop and on the runner's threads alike
    assert spent["query"]["prompt_tokens"] == app["prompt_tokens"] > 0
    assert spent["query"]["completion_tokens"] == app["completion_tokens"]
    assert spent["query"]["calls"] == 6
    judged = [spent["faithfulness"], spent["relevancy"]]
    assert sum(m["prompt_tokens"] for m in judged) == judge["prompt_tokens"]
    assert sum(m["completion_tokens"] for m in judged) == judge["completion_tokens"]
    assert (spent["faithfulness"]["calls"], spent["relevancy"]["calls"]) == (6, 3)
    # gpt-4o-mini's price: by the judge's configured model, and for the app by the prefix
    # of the name the API answered with (gpt-4o-mini-2024-07-18), not gpt-4o's
    assert spent["query"]["models"] == {"gpt-4o-mini-2024-07-18": 6}
    for metric in spent.values():
        expected = (metric["prompt_tokens"] * 0.15 + metric["completion_tokens"] * 0.60) / 1e6
        assert metric["cost"] == pytest.approx(expected)
    total = sum(metric["cost"] for metric in spent.values())
    result.stdout.fnmatch_lines(
        [
            f"tokens: faithfulness {spent['faithfulness']['prompt_tokens']:,} in / *; "
            f"query {app['prompt_tokens']:,} in / {app['completion_tokens']:,} out; relevancy *",
            f"cost: ${total:.4f}",
        ]
    )
    # the same run again: the judges are not called, and the cache says what that saved
    again = priced.runpytest("--rag-report=again.json")
    saved = json.loads((priced.path / "again.json").read_text())["usage"]
    assert saved["faithfulness"]["calls"] == 0
    assert saved["faithfulness"]["saved"]["prompt_tokens"] == spent["faithfulness"]["prompt_tokens"]
    tokens = sum(m["prompt_tokens"] + m["completion_tokens"] for m in judged)
    again.stdout.fnmatch_lines([f"the verdict cache saved {tokens:,} tokens ($*)"])


def test_prices_are_checked_and_matched() -> None:
    prices = parse_prices(["gpt-4o = 2.5 10", "gpt-4o-mini = 0.15 0.6  # the small one", ""], "ini")
    assert prices == {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)}
    assert price_of(prices, "gpt-4o-mini", []) == (0.15, 0.6)
    # the longest name that begins the answered model wins
    assert price_of(prices, None, ["gpt-4o-mini-2024-07-18"]) == (0.15, 0.6)
    assert price_of(prices, "custom", ["claude-3"]) is None
    with pytest.raises(PriceError, match=r"rag_prices in tox\.ini: expected 'model = input_per_1M"):
        parse_prices(["gpt-4o = cheap"], "rag_prices in tox.ini")
