"""A configuration mistake is said once per set, on the set's first item, and the other
items fail with one line pointing there; an untouched ``rageval init`` TODO is one short
message, not pages of plugin and pytest frames."""

from __future__ import annotations

import console
import pytest

FIFTY = "questions:\n" + "".join(f"  - {{id: q{i:02d}, query: Question {i}?}}\n" for i in range(50))

ENGINE = """
import pytest
from fakes import ScriptedApp

@pytest.fixture(scope="session")
def rag_query_engine():
    return ScriptedApp()
"""

POINTER = (
    "not evaluated: rag_set.yaml could not be set up; the reason is shown on rag_set.yaml::q00"
)


def _count(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


@pytest.mark.parametrize(
    ("conftest", "questions", "message"),
    [
        pytest.param(
            None,
            "thresholds: {faithfullness: 0.9}\n" + FIFTY,
            "rag_set.yaml:1 sets a threshold for 'faithfullness', which no evaluator of "
            "rag_set.yaml provides (did you mean 'faithfulness'?)",
            id="metric typo",
        ),
        pytest.param(
            "",
            FIFTY,
            "no query engine: define a fixture named 'rag_query_engine' in your conftest.py",
            id="no engine",
        ),
        pytest.param(ENGINE, FIFTY, "no judge: OPENAI_API_KEY is not set.", id="no key"),
    ],
)
def test_a_configuration_mistake_is_said_once_per_set(
    project: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    conftest: str | None,
    questions: str,
    message: str,
) -> None:
    # the short test summary is counted: as CI prints it, uncut by the terminal's width
    monkeypatch.setenv("CI", "true")
    if conftest is not None:
        project.makeconftest(conftest)
    project.makefile(".yaml", rag_set=questions)
    result = project.runpytest()
    result.assert_outcomes(failed=50)
    lines = result.stdout.lines
    # once each: its failure section, the rag evaluation summary, the short test summary
    assert _count(lines, message) == 3, "\n".join(lines)
    assert _count(lines, f"FAILED rag_set.yaml::q00 - Failed: {message}") == 1
    # the 49 others: one line in the failures, one in the summary
    assert _count(lines, POINTER) == 2 * 49
    assert f"FAILED rag_set.yaml::q49 - Failed: {POINTER}" in lines


def test_an_untouched_init_todo_is_one_short_message(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")  # the short summary uncut by the terminal's width
    assert console.rageval("init", cwd=pytester.path).returncode == 0
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    text = result.stdout.str()
    message = (
        "conftest.py:16: the rag_query_engine fixture is not written yet: "
        "TODO in conftest.py: return your app from rag_query_engine"
    )
    # once each: its failure section, the rag evaluation summary, the short test summary
    assert _count(result.stdout.lines, message) == 3, text
    failures = text.split("= FAILURES =")[1].split("short test summary info")[0]
    assert len(failures.splitlines()) < 15, failures
    assert "pytest_rageval" not in text and "_pytest" not in text


def test_a_misnamed_engine_fixture_gets_a_did_you_mean(project: pytest.Pytester) -> None:
    project.makeconftest(
        """
        import pytest
        from fakes import ScriptedApp

        @pytest.fixture(scope="session")
        def support_engine():
            return ScriptedApp()

        @pytest.fixture(scope="session")
        def rag_engine():
            return ScriptedApp()
        """
    )
    project.makefile(".yaml", rag_a="query_engine: suport_engine\nquestions: [{query: Q}]")
    project.makefile(".yaml", rag_b="questions: [{query: Q}]")
    result = project.runpytest()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "no fixture named 'suport_engine', which rag_a.yaml uses as its query engine "
            "(did you mean 'support_engine'?); define it in a conftest.py next to that file*",
            "no query engine: define a fixture named 'rag_query_engine' in your conftest.py that "
            "returns your llama-index query engine (or a callable taking the query string); "
            "your fixture 'rag_engine' looks meant to be it: rename it to rag_query_engine, "
            "or name it in the question file (query_engine: ...)",
        ]
    )
