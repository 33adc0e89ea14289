"""The verdict cache: a real SQLite file, hits and misses, every key part, modes, and a
corrupt file set aside (xdist workers sharing it: test_xdist.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fakes import ScriptedApp, ScriptedLLM
from llama_index.core.evaluation import (
    CorrectnessEvaluator,
    EvaluationResult,
    FaithfulnessEvaluator,
    RelevancyEvaluator,
)
from llama_index.core.prompts import PromptTemplate
from openai_server import FakeOpenAI
from qfiles import session_fixtures
from verdict_file import QUESTIONS

from pytest_rageval import Question, Runner, cache
from pytest_rageval.cache import VerdictCache, describe_evaluator, verdict_key


@pytest.fixture
def cached(http_project: pytest.Pytester) -> pytest.Pytester:
    http_project.makefile(".yaml", rag_set=QUESTIONS)
    return http_project


def test_an_identical_rerun_makes_no_judge_calls(
    cached: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    first = cached.runpytest("--rag-report=first.json")
    first.assert_outcomes(passed=3)
    assert openai_server.chat_requests == 6
    first.stdout.fnmatch_lines(
        ["verdict cache (on): faithfulness 0 hits, 3 misses; relevancy 0 hits, 3 misses"]
    )
    assert (cached.path / ".rageval_cache" / "verdicts.sqlite3").is_file()
    second = cached.runpytest("--rag-report=second.json")
    second.assert_outcomes(passed=3)
    assert openai_server.chat_requests == 6  # not one more
    second.stdout.fnmatch_lines(
        ["verdict cache (on): faithfulness 3 hits, 0 misses; relevancy 3 hits, 0 misses"]
    )
    import json

    report = json.loads((cached.path / "second.json").read_text())
    assert report["cache"]["metrics"] == {
        "faithfulness": {"hits": 3, "misses": 0},
        "relevancy": {"hits": 3, "misses": 0},
    }
    assert report["timing"]["judge_calls"] == 0
    # the same verdicts, feedback included
    first_sets = json.loads((cached.path / "first.json").read_text())["sets"]
    assert [q["metrics"] for q in report["sets"][0]["questions"]] == [
        q["metrics"] for q in first_sets[0]["questions"]
    ]


def test_modes_off_readonly_refresh(cached: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    cached.runpytest("--rag-cache=off").assert_outcomes(passed=3)
    assert not (cached.path / ".rageval_cache").exists()
    cached.runpytest("--rag-cache=readonly").assert_outcomes(passed=3)
    assert VerdictCache(cached.path / ".rageval_cache").info()["verdicts"] == 0
    cached.runpytest("-o", "rag_cache=refresh").assert_outcomes(passed=3)
    assert VerdictCache(cached.path / ".rageval_cache").info()["verdicts"] == 6
    assert openai_server.chat_requests == 18
    cached.runpytest("--rag-cache=refresh").assert_outcomes(passed=3)
    assert openai_server.chat_requests == 24  # refresh judges again
    cached.runpytest("--rag-cache=readonly").assert_outcomes(passed=3)
    assert openai_server.chat_requests == 24


def test_cache_info_and_clear(cached: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    cached.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        rag_cache_dir = build/verdicts
        """
    )
    cached.runpytest().assert_outcomes(passed=3)
    info = cached.runpytest("--rag-cache-info")
    assert info.ret == 0
    info.stdout.fnmatch_lines(
        ["rag verdict cache: */build/verdicts/verdicts.sqlite3: 6 verdicts, *KiB"]
    )
    info.stdout.no_fnmatch_line("*passed*")  # nothing ran
    cached.runpytest("--rag-cache-clear").assert_outcomes(passed=3)
    assert openai_server.chat_requests == 12  # cleared, so judged again
    bad = cached.runpytest("--rag-cache=sometimes")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--rag-cache: invalid choice: 'sometimes'*"])


@pytest.mark.parametrize(
    "damage",
    [
        b"this is not a database at all, just text" * 100,
        b"SQLite format 3\x00" + b"\x00" * 50,  # a torn header
    ],
)
def test_a_corrupt_cache_is_set_aside_and_rebuilt(
    cached: pytest.Pytester, openai_server: FakeOpenAI, damage: bytes
) -> None:
    folder = cached.path / ".rageval_cache"
    folder.mkdir()
    (folder / "verdicts.sqlite3").write_bytes(damage)
    result = cached.runpytest()
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "warning: the verdict cache */verdicts.sqlite3 was set aside: *; moved to "
            "verdicts.sqlite3.broken-*; rebuilt"
        ]
    )
    assert [p.name for p in folder.glob("verdicts.sqlite3.broken-*")]
    assert cached.runpytest().stdout.str().count("3 hits") == 2


def test_a_foreign_sqlite_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema', 'someone else 7')")
    store = VerdictCache(tmp_path)
    store.put("faithfulness", "k", {"passing": True})
    store.flush()  # writes are gathered; the file is opened when they are committed
    assert store.get("faithfulness", "k") == {"passing": True}
    assert VerdictCache(tmp_path).info()["verdicts"] == 1
    assert "set aside" in store.notices[0] and "someone else 7" in store.notices[0]


def test_a_flush_of_many_rows_writes_each_of_them(tmp_path: Path) -> None:
    # rows go in as statements of many rows each: more rows than one statement holds,
    # for both tables, each read back from a fresh cache on the same file
    n = 1234
    store = VerdictCache(tmp_path)
    for i in range(n):
        store.put("faithfulness", f"k{i}", {"passing": i % 3 == 0, "feedback": f"why {i} \u00e9"})
        store.record(f"r{i}", f"answer {i}", [f"context {i}", "'; DROP TABLE verdicts; --"])
    store.flush()
    again = VerdictCache(tmp_path)
    assert again.info()["verdicts"] == n
    for i in (0, 1, 248, 249, 250, 997, n - 1):
        assert again.get("faithfulness", f"k{i}") == {
            "passing": i % 3 == 0,
            "feedback": f"why {i} \u00e9",
        }
        assert again.recall(f"r{i}") == (
            f"answer {i}",
            [f"context {i}", "'; DROP TABLE verdicts; --"],
            None,
        )
    with sqlite3.connect(tmp_path / "verdicts.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM recordings").fetchone() == (n,)


# -- the key: one test per part ----------------------------------------------------------

BASE: dict[str, Any] = {
    "query": "Where is Paris?",
    "response": "Paris is in France.",
    "contexts": ["Paris is the capital of France."],
    "arguments": {"reference": "France"},
    "repeat": 1,
}


def key_of(evaluator: Any, **change: Any) -> str:
    return verdict_key(describe_evaluator(evaluator), **{**BASE, **change})


def judge(**settings: Any) -> ScriptedLLM:
    return ScriptedLLM(**settings)


def openai_judge(**settings: Any) -> Any:
    """llama-index's OpenAI, built offline (nothing is sent)."""
    from llama_index.llms.openai import OpenAI

    return OpenAI(**{"model": "gpt-4o-mini", "api_key": "sk-test-not-real", **settings})


def test_the_same_judgement_has_the_same_key() -> None:
    assert key_of(FaithfulnessEvaluator(llm=judge())) == key_of(FaithfulnessEvaluator(llm=judge()))


@pytest.mark.parametrize(
    ("part", "other"),
    [
        ("query", {"query": "Where is Lyon?"}),
        ("response", {"response": "Paris is in Texas."}),
        ("contexts", {"contexts": ["Paris, Texas, is a city."]}),
        ("no contexts", {"contexts": None}),
        ("reference", {"arguments": {"reference": "Texas"}}),
        ("reference contexts", {"arguments": {"reference": "France", "reference_contexts": ["x"]}}),
        ("repeat index", {"repeat": 2}),
    ],
)
def test_every_judged_text_is_part_of_the_key(part: str, other: dict[str, Any]) -> None:
    evaluator = FaithfulnessEvaluator(llm=judge())
    assert key_of(evaluator) != key_of(evaluator, **other), part


EvaluatorPair = tuple[Callable[[], Any], Callable[[], Any]]


@pytest.mark.parametrize(
    ("part", "pair"),
    [
        (
            "class",
            (lambda: FaithfulnessEvaluator(llm=judge()), lambda: RelevancyEvaluator(llm=judge())),
        ),
        (
            "settings",
            (
                lambda: CorrectnessEvaluator(llm=judge(), score_threshold=4.0),
                lambda: CorrectnessEvaluator(llm=judge(), score_threshold=3.0),
            ),
        ),
        (
            "judge model",
            (
                lambda: FaithfulnessEvaluator(llm=openai_judge(model="gpt-4o-mini")),
                lambda: FaithfulnessEvaluator(llm=openai_judge(model="gpt-4o")),
            ),
        ),
        (
            "judge temperature",
            (
                lambda: FaithfulnessEvaluator(llm=openai_judge(temperature=0.0)),
                lambda: FaithfulnessEvaluator(llm=openai_judge(temperature=0.7)),
            ),
        ),
        (
            "judge max_tokens",
            (
                lambda: FaithfulnessEvaluator(llm=openai_judge(max_tokens=16)),
                lambda: FaithfulnessEvaluator(llm=openai_judge(max_tokens=512)),
            ),
        ),
        (
            "prompt template",
            (
                lambda: FaithfulnessEvaluator(llm=judge()),
                lambda: FaithfulnessEvaluator(
                    llm=judge(),
                    eval_template=PromptTemplate("Is {query_str} backed by {context_str}?"),
                ),
            ),
        ),
    ],
)
def test_every_part_of_the_evaluator_is_part_of_the_key(part: str, pair: EvaluatorPair) -> None:
    assert key_of(pair[0]()) != key_of(pair[1]()), part


def test_a_custom_template_set_later_is_part_of_the_key() -> None:
    evaluator = FaithfulnessEvaluator(llm=judge())
    before = key_of(evaluator)
    evaluator.update_prompts(
        {"eval_template": PromptTemplate("Judge {query_str} by {context_str}.")}
    )
    assert key_of(evaluator) != before


def test_credentials_and_time_outs_are_not_part_of_the_key() -> None:
    one = FaithfulnessEvaluator(llm=openai_judge(api_key="sk-test-one", timeout=10.0))
    two = FaithfulnessEvaluator(llm=openai_judge(api_key="sk-test-two", timeout=99.0))
    assert key_of(one) == key_of(two)


def test_the_answer_reader_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = key_of(FaithfulnessEvaluator(llm=judge()))
    monkeypatch.setattr(cache, "READER", "strict-2")
    assert key_of(FaithfulnessEvaluator(llm=judge())) != before


# -- what is stored ----------------------------------------------------------------------


class Flaky:
    """Raises on its first call, answers invalid on its second, passes after."""

    def __init__(self) -> None:
        self.calls = 0

    async def aevaluate(self, **kwargs: Any) -> EvaluationResult:
        self.calls += 1
        if self.calls == 1:
            raise ValueError("the judge fell over")
        if self.calls == 2:
            return EvaluationResult(invalid_result=True, invalid_reason="unreadable", feedback="??")
        return EvaluationResult(passing=True, score=1.0, feedback="YES")


def test_errors_are_never_cached_invalid_verdicts_are(tmp_path: Path) -> None:
    store = VerdictCache(tmp_path)
    flaky = Flaky()
    for expected_calls, verdicts in ((1, 0), (2, 1), (2, 1)):
        runner = Runner(2, retries=0, cache=store)
        try:
            result = runner.evaluate(ScriptedApp(), [Question(query="Q?")], {"flaky": flaky})[0]
        finally:
            runner.close()
        assert flaky.calls == expected_calls
        assert store.info()["verdicts"] == verdicts
    # the cached verdict is the invalid one, as the judge gave it
    assert result.evaluations["flaky"].invalid_result is True
    assert result.evaluations["flaky"].feedback == "??"
    assert store.stats()["metrics"] == {"flaky": {"hits": 1, "misses": 2}}


REPLAY_APP = """
import os


@pytest.fixture(scope="session")
def rag_query_engine():
    def app(query):
        if os.environ.get("APP_DOWN"):
            raise RuntimeError("the app is down")
        return f"Answer: {query}", [f"Context: {query}"]

    return app
"""


def test_replay_reuses_the_apps_recorded_answers(
    scripted_judge: Callable[[str], pytest.Pytester], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = scripted_judge(REPLAY_APP)
    project.makefile(".yaml", rag_set=QUESTIONS)
    project.runpytest().assert_outcomes(passed=3)
    monkeypatch.setenv("APP_DOWN", "1")
    # without --rag-replay the app under test is always called
    project.runpytest().assert_outcomes(failed=3)
    replayed = project.runpytest("--rag-replay")
    replayed.assert_outcomes(passed=3)
    replayed.stdout.fnmatch_lines(
        [
            "verdict cache (on): faithfulness 3 hits, 0 misses; relevancy 3 hits, 0 misses; "
            "3 app answers replayed (--rag-replay)"
        ]
    )
    # a question never recorded calls the app
    project.makefile(".yaml", rag_set=QUESTIONS + '  - {id: oslo, query: "Where is Oslo?"}\n')
    result = project.runpytest("--rag-replay")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*query engine raised RuntimeError: the app is down*"])
    # --rag-cache-clear forgets the recordings too
    project.runpytest("--rag-replay", "--rag-cache-clear").assert_outcomes(failed=4)


def test_asking_again_is_part_of_the_key(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=QUESTIONS)
    project.runpytest().stdout.fnmatch_lines(["verdict cache (on): faithfulness 0 hits, 3 misses*"])
    project.runpytest("--rag-reask").stdout.fnmatch_lines(
        ["verdict cache (on): faithfulness 0 hits, 3 misses*"]
    )
    project.runpytest("--rag-reask").stdout.fnmatch_lines(
        ["verdict cache (on): faithfulness 3 hits, 0 misses*"]
    )


def test_local_evaluators_skip_the_cache(project: pytest.Pytester) -> None:
    # judging "contains" locally costs less than looking it up
    project.makeconftest(
        session_fixtures(
            "from pytest_rageval import ContainsEvaluator",
            rag_query_engine='lambda query: (f"Paris. {query}", ["Paris is in France."])',
            rag_evaluators='{"contains": ContainsEvaluator()}',
        )
    )
    project.makefile(".yaml", rag_set='questions: [{id: q, query: "Where?", reference: Paris}]')
    result = project.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("verdict cache*")
    assert VerdictCache(project.path / ".rageval_cache").info()["verdicts"] == 0
