"""Judging more than once: majority votes, ties, unstable questions, and the cache keeping
each vote."""

from __future__ import annotations

import json

import pytest

CONFTEST = """
import json
from collections import Counter

import pytest
from llama_index.core.evaluation import EvaluationResult

CALLS = Counter()
# the votes each question gets, in order: P passes, F fails, I is unreadable
SCRIPTS = {"steady": "PPP", "split": "PFP", "tie": "PF", "down": "FIP", "murky": "IIF"}


class Scripted:
    async def aevaluate(self, query=None, **kwargs):
        qid = query.split()[0]
        vote = SCRIPTS[qid][CALLS[qid] % len(SCRIPTS[qid])]
        CALLS[qid] += 1
        if vote == "I":
            return EvaluationResult(invalid_result=True, invalid_reason="unreadable", feedback="??")
        return EvaluationResult(
            passing=vote == "P", score=1.0 if vote == "P" else 0.0, feedback=f"vote {vote}"
        )


@pytest.fixture(scope="session")
def rag_query_engine():
    return lambda query: (f"Answer to {query}", [f"Context for {query}"])


@pytest.fixture(scope="session")
def rag_evaluators():
    return {"vote": Scripted()}


def pytest_sessionfinish(session):
    with open("calls.json", "w") as out:
        json.dump(CALLS, out)
"""


def votes_file(repeat: int | None, *ids: str) -> str:
    lines = ["thresholds: {vote: 0.0}"]
    if repeat is not None:
        lines.append(f"repeat: {repeat}")
    lines.append("questions:")
    lines += [f'  - {{id: {qid}, query: "{qid} question?"}}' for qid in ids]
    return "\n".join(lines) + "\n"


@pytest.fixture
def voting(project: pytest.Pytester) -> pytest.Pytester:
    project.makeconftest(CONFTEST)
    return project


def test_three_votes_a_majority_and_unstable_flags(voting: pytest.Pytester) -> None:
    voting.makefile(".yaml", rag_set=votes_file(3, "steady", "split", "down", "murky"))
    result = voting.runpytest("--rag-report=report.json")
    result.stdout.fnmatch_lines(
        [
            "unstable (the votes disagree):",
            "  rag_set.yaml split vote: 2 of 3 votes passing",
            "  rag_set.yaml down vote: 1 of 3 votes passing",
        ]
    )
    result.stdout.no_fnmatch_line("*murky vote:*")  # all three votes fail: stable
    assert json.loads((voting.path / "calls.json").read_text()) == {
        "steady": 3,
        "split": 3,
        "down": 3,
        "murky": 3,
    }
    questions = {
        q["id"]: q["metrics"]["vote"]
        for q in json.loads((voting.path / "report.json").read_text())["sets"][0]["questions"]
    }
    assert questions["steady"]["result"] == "passing" and questions["steady"]["unstable"] is False
    # two of three pass: passing; the score is the mean of the votes' scores
    assert questions["split"]["result"] == "passing" and questions["split"]["unstable"] is True
    assert questions["split"]["score"] == pytest.approx(2 / 3)
    assert [v["result"] for v in questions["split"]["votes"]] == ["passing", "failing", "passing"]
    # fail, invalid, pass: one of three passes, the invalid vote does not
    assert questions["down"]["result"] == "failing"
    # two of three unreadable: invalid
    assert questions["murky"]["result"] == "invalid"
    assert questions["murky"]["reason"] == "unreadable"


def test_a_tie_fails_and_precedence_marker_file_command_line(voting: pytest.Pytester) -> None:
    voting.makefile(".yaml", rag_set=votes_file(None, "tie"))
    result = voting.runpytest("--rag-repeat=2", "--rag-report=report.json")
    [question] = json.loads((voting.path / "report.json").read_text())["sets"][0]["questions"]
    assert question["metrics"]["vote"]["result"] == "failing"
    assert len(question["metrics"]["vote"]["votes"]) == 2
    result.stdout.fnmatch_lines(["  rag_set.yaml tie vote: 1 of 2 votes passing"])
    # the data file's repeat wins over the command line
    voting.makefile(".yaml", rag_set=votes_file(1, "tie"))
    voting.runpytest("--rag-repeat=2", "--rag-report=report.json", "--rag-cache=off")
    [question] = json.loads((voting.path / "report.json").read_text())["sets"][0]["questions"]
    assert "votes" not in question["metrics"]["vote"]


def test_each_vote_is_cached_apart(voting: pytest.Pytester) -> None:
    voting.makefile(".yaml", rag_set=votes_file(3, "split"))
    voting.runpytest().stdout.fnmatch_lines(["verdict cache (on): vote 0 hits, 3 misses"])
    again = voting.runpytest("--rag-report=report.json")
    again.stdout.fnmatch_lines(
        [
            "  rag_set.yaml split vote: 2 of 3 votes passing",
            "verdict cache (on): vote 3 hits, 0 misses",
        ]
    )
    assert json.loads((voting.path / "calls.json").read_text()) == {}
    # vote 1 of a repeated run is the verdict of a run without repeats
    voting.makefile(".yaml", rag_set=votes_file(1, "split"))
    voting.runpytest().stdout.fnmatch_lines(["verdict cache (on): vote 1 hits, 0 misses"])


def test_repeat_must_be_a_whole_number(voting: pytest.Pytester) -> None:
    voting.makefile(".yaml", rag_set=votes_file(0, "tie"))
    voting.runpytest().stdout.fnmatch_lines(
        ["rag_set.yaml:*: repeat must be a whole number >= 1, got 0"]
    )
    voting.makefile(".yaml", rag_set=votes_file(1, "tie"))
    bad = voting.runpytest("--rag-repeat=1.5")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--rag-repeat must be a whole number >= 1, got '1.5'*"])
