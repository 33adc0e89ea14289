"""A throwaway project for the shard tests: a scripted judge (each question's votes are
written in its query, so any process judges it the same), an app that breaks on BOOM, and
sets with thresholds, must_pass, max_invalid, repeat, errors, a drop gate and a set
smaller than the shard count."""

from __future__ import annotations

import random

CONFTEST = """
import os
from collections import Counter

import pytest
from llama_index.core.evaluation import EvaluationResult

CALLS = Counter()


class Scripted:
    # the query's first word is its votes in order: P passes, F fails, I is unreadable;
    # D passes in the baseline run and fails after it, U the reverse
    async def aevaluate(self, query=None, **kwargs):
        script = query.split()[0]
        vote = script[CALLS[query] % len(script)]
        CALLS[query] += 1
        if vote in "DU":
            before = bool(os.environ.get("RAG_BEFORE"))
            vote = "P" if (vote == "D") == before else "F"
        if vote == "I":
            return EvaluationResult(invalid_result=True, invalid_reason="unreadable", feedback="??")
        return EvaluationResult(
            passing=vote == "P", score=1.0 if vote == "P" else 0.0, feedback=f"vote {vote}"
        )


class App:
    def query(self, q):
        if "BOOM" in q:
            raise RuntimeError("the app broke")
        from llama_index.core.base.response.schema import Response

        return Response(response=f"Answer to {q}", source_nodes=[])


@pytest.fixture(scope="session")
def rag_query_engine():
    return App()


@pytest.fixture(scope="session")
def rag_evaluators():
    return {"vote": Scripted()}
"""

PLAIN_TEST = """
def test_plain():
    assert 1 + 1 == 2
"""


def votes(count: int, script: dict[str, int], *, seed: int) -> list[str]:
    """``count`` vote scripts, ``script`` giving how many of each, shuffled."""
    found = [word for word, n in script.items() for _ in range(n)]
    found += ["P"] * (count - len(found))
    random.Random(seed).shuffle(found)
    return found


def set_file(head: str, scripts: list[str], *, must_pass: int | None = None) -> str:
    lines = ["evaluators: [vote]", *head.splitlines(), "questions:"]
    for i, script in enumerate(scripts):
        extra = ", must_pass: true" if i == must_pass else ""
        lines.append(f"  - {{id: q{i}, query: '{script} question {i}'{extra}}}")
    return "\n".join(lines) + "\n"


def files(passing: bool = False) -> dict[str, str]:
    """The project's question files; ``passing``: only sets whose gates pass."""
    found = {
        "rag_gated": set_file("thresholds: {vote: 0.7}", votes(40, {"F": 8}, seed=1)),
        "rag_repeat": set_file(
            "repeat: 3\nthresholds: {vote: 0.6}",
            votes(12, {"PFP": 3, "FFP": 2, "FPF": 1, "PPF": 2}, seed=2),
        ),
        "rag_tiny": set_file("thresholds: {vote: 1.0}", ["P", "P"]),
        "rag_drop": set_file(
            "max_drop: 0.05\nthresholds: {vote: 0.5}",
            votes(30, {"D": 4, "U": 1, "F": 2}, seed=3),
        ),
    }
    if passing:
        found["rag_drop"] = set_file(
            "max_drop: 0.2\nthresholds: {vote: 0.5}", votes(30, {"D": 2, "U": 1}, seed=3)
        )
        return found
    failing = votes(20, {"F": 4, "BOOM": 2}, seed=4)
    found["rag_failing"] = set_file("thresholds: {vote: 0.9}", failing).replace(
        "'BOOM question", "'P BOOM question"
    )
    found["rag_vital"] = set_file("thresholds: {vote: 0.5}", ["P"] * 9 + ["F"], must_pass=9)
    found["rag_invalid"] = set_file(
        "max_invalid: 0.1\nthresholds: {vote: 0.5}", votes(20, {"I": 4}, seed=5)
    )
    return found
