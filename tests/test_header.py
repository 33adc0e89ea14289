"""The header says where the judge goes: its base URL with credentials redacted, the
user's own judge fixture, or no judge when no collected question needs one."""

from __future__ import annotations

import pytest

QUESTIONS = "questions: [{id: q, query: Where is Paris?, reference: Paris}]\n"
PLAIN_ENGINE = """
import pytest
from fakes import ScriptedApp

@pytest.fixture(scope="session")
def rag_query_engine():
    return ScriptedApp()
"""


def judge_line(result: pytest.RunResult) -> list[str]:
    return [
        line for line in result.stdout.lines if line.startswith("rageval: ") and "judge" in line
    ][1:]


def test_the_default_judge_shows_its_base_url_without_credentials(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(PLAIN_ENGINE)
    project.makefile(".yaml", rag_set=QUESTIONS)
    # a gateway that takes the key in its path
    monkeypatch.setenv("OPENAI_API_KEY", "gw-0123456789abcdef")
    monkeypatch.setenv("OPENAI_API_BASE", "https://gateway.example/gw-0123456789abcdef/v1")
    result = project.runpytest("--collect-only")
    assert judge_line(result) == [
        "rageval: judge: openai:gpt-4o-mini at https://gateway.example/***/v1"
    ]
    assert "0123456789abcdef" not in result.stdout.str()
    monkeypatch.delenv("OPENAI_API_BASE")
    result = project.runpytest("--collect-only")
    assert judge_line(result) == ["rageval: judge: openai:gpt-4o-mini at https://api.openai.com/v1"]
    result = project.runpytest(
        "--collect-only", "--rag-judge=openai-like:qwen2.5:7b@http://127.0.0.1:8080/v1"
    )
    assert judge_line(result) == [
        "rageval: judge: openai-like:qwen2.5:7b@http://127.0.0.1:8080/v1 at "
        "http://127.0.0.1:8080/v1"
    ]


def test_a_users_judge_fixture_is_named(project: pytest.Pytester) -> None:
    project.makefile(".yaml", rag_set=QUESTIONS)  # the project's conftest has rag_judge_llm
    result = project.runpytest("--collect-only")
    assert judge_line(result) == ["rageval: judge: the rag_judge_llm fixture of conftest"]


def test_a_run_of_metrics_that_need_no_llm_says_no_judge(project: pytest.Pytester) -> None:
    project.makeconftest(PLAIN_ENGINE)
    project.makefile(".yaml", rag_set="evaluators: [contains]\n" + QUESTIONS)
    result = project.runpytest()
    result.assert_outcomes(passed=1)
    assert judge_line(result) == ["rageval: no judge (no collected question needs an LLM judge)"]
