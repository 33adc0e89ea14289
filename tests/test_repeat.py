"""Judging more than once: majority votes stopped once decided, ties, unstable questions,
and the cache keeping each vote."""

from __future__ import annotations

import functools
import itertools
import json

import pytest

from pytest_rageval.sequential import votes_to_cast
from pytest_rageval.verdicts import MetricResult, majority

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
    result.stdout.no_fnmatch_line("*murky vote:*")  # no vote passes: stable
    # two agreeing votes of three decide: the third is not asked for
    assert json.loads((voting.path / "calls.json").read_text()) == {
        "steady": 2,
        "split": 3,
        "down": 3,
        "murky": 2,
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
    # two of three unreadable: invalid (and the third vote cannot change that)
    assert questions["murky"]["result"] == "invalid"
    assert [v["result"] for v in questions["murky"]["votes"]] == ["invalid", "invalid"]
    assert questions["murky"]["repeat"] == 3
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


# hand-written references: the verdict of all k votes (True passes, False fails, None is
# unreadable) and the fewest votes, cast one at a time, after which no later votes could
# change it
def full_verdict(votes: tuple[bool | None, ...]) -> str:
    if sum(vote is True for vote in votes) * 2 > len(votes):
        return "passing"
    if sum(vote is None for vote in votes) * 2 > len(votes):
        return "invalid"
    return "failing"


@functools.cache
def settled(cast: tuple[bool | None, ...], k: int) -> bool:
    rests = itertools.product((True, False, None), repeat=k - len(cast))
    return len({full_verdict(cast + rest) for rest in rests}) == 1


def one_at_a_time(votes: tuple[bool | None, ...]) -> int:
    return next(cast for cast in range(len(votes) + 1) if settled(votes[:cast], len(votes)))


@pytest.mark.parametrize("k", range(1, 7))
def test_waves_make_the_calls_of_one_vote_at_a_time(k: int) -> None:
    """Every sequence of k votes: the waves stop where voting one at a time would, and the
    majority of the votes cast is the verdict of all k."""
    for votes in itertools.product((True, False, None), repeat=k):
        cast = 0
        while wave := votes_to_cast(votes[:cast], k):
            assert wave >= 1 and cast + wave <= one_at_a_time(votes)
            cast += wave
        assert cast == one_at_a_time(votes)
        ballots = [MetricResult(passing=vote is True, invalid=vote is None) for vote in votes]
        assert majority(ballots[:cast], k).result == full_verdict(votes)
        assert majority(ballots[:cast], k).repeat == k


def test_the_first_wave_is_the_fewest_votes_that_can_decide() -> None:
    # odd k: a majority of agreeing votes; even k: half failing already cannot pass
    assert [votes_to_cast((), k) for k in (1, 2, 3, 4, 5, 6, 7)] == [1, 1, 2, 2, 3, 3, 4]
    # after P F P of 5, one more pass decides; after I I F, one more unreadable does
    assert votes_to_cast((True, False, True), 5) == 1
    assert votes_to_cast((None, None, False), 5) == 1
    # after P P F F of 7, two more are needed whatever they are; of 6, one more F
    # decides (a tie fails)
    assert votes_to_cast((True, True, False, False), 7) == 2
    assert votes_to_cast((True, True, False, False), 6) == 1


EARLY_CONFTEST = """
import asyncio
import json
from collections import Counter, defaultdict

import pytest
from llama_index.core.evaluation import EvaluationResult

CALLS = Counter()
DONE = Counter()
# per question, how many of its judge calls had finished when each call started
STARTED_AFTER = defaultdict(list)


class Scripted:
    async def aevaluate(self, query=None, **kwargs):
        qid, script = query.split()[0].split("-")
        index = CALLS[qid] + 1  # votes start in index order
        CALLS[qid] += 1
        STARTED_AFTER[qid].append(DONE[qid])
        await asyncio.sleep(0.05)
        DONE[qid] += 1
        vote = script[index - 1]
        if vote == "I":
            return EvaluationResult(
                invalid_result=True, invalid_reason=f"vote {index} I", feedback="??"
            )
        return EvaluationResult(
            passing=vote == "P",
            score=1.0 if vote == "P" else 0.0,
            feedback=f"vote {index} {vote}",
        )


@pytest.fixture(scope="session")
def rag_query_engine():
    return lambda query: (f"Answer to {query}", [f"Context for {query}"])


@pytest.fixture(scope="session")
def rag_evaluators():
    return {"vote": Scripted()}


def pytest_sessionfinish(session):
    with open("calls.json", "w") as out:
        json.dump({"calls": CALLS, "started_after": STARTED_AFTER}, out)
"""

# each question's id holds its scripted votes, by index: P passes, F fails, I unreadable
SCRIPTS = {
    3: ["a-PPF", "b-FIP", "c-FFP", "d-IIP", "e-PFF"],
    5: ["f-PPPFF", "g-FFFPP", "h-PFPFP", "i-PFPPF", "j-IIFIP"],
}
# the verdict of all K votes (a reference written out) and the votes cast one at a time
# until the rest cannot change it
EXPECTED = {
    "a": ("passing", 2),
    "b": ("failing", 3),
    "c": ("failing", 2),
    "d": ("invalid", 2),
    "e": ("failing", 3),
    "f": ("passing", 3),
    "g": ("failing", 3),
    "h": ("passing", 5),
    "i": ("passing", 4),
    "j": ("invalid", 4),
}


def early_sets(project: pytest.Pytester) -> None:
    project.makeconftest(EARLY_CONFTEST)
    for k, ids in SCRIPTS.items():
        lines = ["thresholds: {vote: 0.0}", f"repeat: {k}", "questions:"]
        lines += [f'  - {{id: {qid[0]}, query: "{qid} question?"}}' for qid in ids]
        project.makefile(".yaml", **{f"rag_k{k}": "\n".join(lines) + "\n"})


def report_metrics(project: pytest.Pytester) -> dict[str, dict[str, object]]:
    document = json.loads((project.path / "report.json").read_text())
    return {q["id"]: q["metrics"]["vote"] for rset in document["sets"] for q in rset["questions"]}


def test_early_stopped_repeats_give_the_full_verdicts_with_fewer_calls(
    project: pytest.Pytester,
) -> None:
    early_sets(project)
    # the reference verdicts are verdicts.majority's over all K scripted votes too
    for k, ids in SCRIPTS.items():
        for qid in ids:
            script = qid.split("-")[1]
            full = majority([MetricResult(passing=v == "P", invalid=v == "I") for v in script], k)
            assert full.result == EXPECTED[qid[0]][0]
    result = project.runpytest("--rag-report=report.json", "--rag-workers=32")
    seen = json.loads((project.path / "calls.json").read_text())
    # 31 judge calls instead of 5 x 3 + 5 x 5 = 40
    assert seen["calls"] == {qid: cast for qid, (_, cast) in EXPECTED.items()}
    assert sum(seen["calls"].values()) == 31
    metrics = report_metrics(project)
    assert {qid: m["result"] for qid, m in metrics.items()} == {
        qid: verdict for qid, (verdict, _) in EXPECTED.items()
    }
    # the votes cast are votes 1..L, in order; the report says how many were asked for
    for qid, metric in metrics.items():
        script = next(s for ids in SCRIPTS.values() for s in ids if s[0] == qid).split("-")[1]
        cast = EXPECTED[qid][1]
        assert len(metric["votes"]) == cast and metric["repeat"] == len(script)
        assert [v["reason"] or v["feedback"] for v in metric["votes"]] == [
            f"vote {index} {vote}" for index, vote in enumerate(script[:cast], 1)
        ]
    # the score is the mean over the votes cast: P F P P
    assert metrics["i"]["score"] == pytest.approx(0.75)
    assert metrics["h"]["score"] == pytest.approx(0.6)
    assert metrics["a"]["unstable"] is False  # P P: the F was never cast
    assert metrics["j"]["unstable"] is False  # I I F I: none passes
    result.stdout.fnmatch_lines(
        [
            "unstable (the votes disagree):",
            "  rag_k3.yaml b vote: 1 of 3 votes passing",
            "  rag_k3.yaml e vote: 1 of 3 votes passing",
            "  rag_k5.yaml h vote: 3 of 5 votes passing",
            "  rag_k5.yaml i vote: 3 of 4 votes passing "
            "(of 5 asked: the other 1 could not change the majority)",
            "verdict cache (on): vote 0 hits, 31 misses",
        ]
    )


def test_votes_go_in_waves_and_a_cached_run_calls_no_judge(project: pytest.Pytester) -> None:
    early_sets(project)
    project.runpytest("--rag-report=report.json", "--rag-workers=32")
    started_after = json.loads((project.path / "calls.json").read_text())["started_after"]
    # K=5: three votes at once (the fewest that can decide), then one at a time, each
    # after the ones before it finished; K=3: two at once, then one
    assert started_after["h"] == [0, 0, 0, 3, 4]
    assert started_after["i"] == [0, 0, 0, 3]
    assert started_after["f"] == [0, 0, 0]
    assert started_after["b"] == [0, 0, 2]
    assert started_after["a"] == [0, 0]
    first = report_metrics(project)
    again = project.runpytest("--rag-report=report.json", "--rag-workers=32")
    again.stdout.fnmatch_lines(["verdict cache (on): vote 31 hits, 0 misses"])
    assert json.loads((project.path / "calls.json").read_text())["calls"] == {}
    assert report_metrics(project) == first
