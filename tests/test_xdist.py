"""pytest-xdist: each question asked and judged once, sets gated whole on one worker, one
summary and report from the controller, and one --rag-workers budget for all workers."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from openai_server import FakeOpenAI
from qfiles import write_set

from pytest_rageval.cache import VerdictCache

pytest.importorskip("xdist")

FAITHFULNESS = "supported by the context"


def two_files_and_a_test(project: pytest.Pytester, n: int = 6) -> None:
    """Two data-file sets of ``n`` (one UNSUPPORTED answer each) and a Python test set."""
    for name in ("alpha", "beta"):
        write_set(
            project,
            n,
            f"rag_{name}",
            head="thresholds: {faithfulness: 0.8}\n",
            query=lambda i, name=name: f"{name} {'UNSUPPORTED ' if i == 0 else ''}town {i}?",
        )
    project.makepyfile(
        test_app="""
        import pytest

        @pytest.mark.rag_threshold(faithfulness=0.7, relevancy=0.0, correctness=0.0)
        @pytest.mark.parametrize("rag_question", [f"gamma town {i}?" for i in range(4)])
        def test_answers(rag_result):
            pass

        @pytest.mark.parametrize("x", range(6))
        def test_plain(x):
            pass
        """
    )


def asked(state: FakeOpenAI) -> Counter[str]:
    """Faithfulness judgements per question, from the prompts the server saw."""
    counts: Counter[str] = Counter()
    for prompt in state.prompts:
        if FAITHFULNESS in prompt:
            match = re.search(r"Answer: (.+?\?)", prompt)
            assert match is not None
            counts[match.group(1)] += 1
    return counts


@pytest.mark.parametrize(
    ("dist", "nodeid", "scope"),
    [
        ("load", "tests/test_a.py::TestX::test_y[1]", "tests/test_a.py::TestX::test_y[1]"),
        ("worksteal", "tests/test_a.py::test_y[1]", "tests/test_a.py::test_y[1]"),
        ("loadscope", "tests/test_a.py::TestX::test_y[1]", "tests/test_a.py::TestX"),
        ("loadfile", "tests/test_a.py::TestX::test_y[1]", "tests/test_a.py"),
        ("loadgroup", "tests/test_a.py::test_y@db", "db"),
        ("loadgroup", "tests/test_a.py::test_y", "tests/test_a.py::test_y"),
    ],
)
def test_other_tests_keep_the_scope_their_dist_mode_gives(
    dist: str, nodeid: str, scope: str
) -> None:
    # what xdist's own scheduler for each mode groups a non-rag test by (the run below
    # checks two modes end to end; each costs a pytest and two workers)
    from pytest_rageval.xdist import _fallback

    split = _fallback(dist)
    assert split is not None
    assert split(None, nodeid) == scope


@pytest.mark.parametrize("dist", ["load", "loadgroup"])
def test_each_question_is_judged_once_whatever_the_dist_mode(
    http_project: pytest.Pytester, openai_server: FakeOpenAI, dist: str
) -> None:
    two_files_and_a_test(http_project)
    openai_server.delay = 0.05
    result = http_project.runpytest_subprocess(
        "-n",
        "2",
        "--dist",
        dist,
        "-p",
        "no:cacheprovider",
        "--rag-report=report.json",
        "--rag-workers=4",
    )
    # 1 of 6 UNSUPPORTED: 5/6 = 0.83 >= 0.8 over the whole set, so it is tolerated
    assert result.parseoutcomes() == {"passed": 20, "tolerated": 2}
    counts = asked(openai_server)
    assert len(counts) == 16 and set(counts.values()) == {1}, counts
    # one --rag-workers budget: two workers with 2 slots each, never more than 4 in flight
    assert 2 <= openai_server.peak_in_flight <= 4, openai_server.peak_in_flight
    # both workers wrote into one verdict cache, and no verdict was lost
    cached = VerdictCache(http_project.path / ".rageval_cache").info()["verdicts"]
    assert cached == openai_server.chat_requests
    # the controller alone prints the summary, with every question of every set
    for row in (
        "rag_alpha.yaml * faithfulness * 6 * 5 * 1 * 0 * 0 * 0.83 * 0.80 * ok",
        "rag_beta.yaml * faithfulness * 6 * 5 * 1 * 0 * 0 * 0.83 * 0.80 * ok",
        "test_app.py::test_answers * faithfulness * 4 * 4 * 0 * 0 * 0 * 1.00 * 0.70 * ok",
    ):
        result.stdout.fnmatch_lines(["*= rag evaluation =*", row])
    result.stdout.no_fnmatch_line("incomplete:*")
    assert result.stdout.str().count("= rag evaluation =") == 1
    report = json.loads((http_project.path / "report.json").read_text())
    sizes = {rag_set["id"]: len(rag_set["questions"]) for rag_set in report["sets"]}
    assert sizes == {"rag_alpha.yaml": 6, "rag_beta.yaml": 6, "test_app.py::test_answers": 4}
    assert report["complete"] is True
    # the tokens both workers metered add up to what the server counted
    usage = report["usage"]
    judged = sum(entry["prompt_tokens"] for name, entry in usage.items() if name != "query")
    assert judged == openai_server.usage["judge"]["prompt_tokens"] > 0


def test_worker_share_splits_the_budget() -> None:
    from pytest_rageval.xdist import worker_share

    assert [worker_share(8, i, 3) for i in range(3)] == [3, 3, 2]
    assert [worker_share(2, i, 4) for i in range(4)] == [1, 1, 1, 1]  # at least one each
