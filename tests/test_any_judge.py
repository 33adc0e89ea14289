"""Any LLM as judge without code: ``rag_judge`` names OpenAI or any OpenAI-compatible
server, here the loopback one, through the real clients over HTTP."""

from __future__ import annotations

# imported once, here, for good: in-process pytester runs restore sys.modules afterwards,
# and the judge class (cached) must keep seeing the same openai and httpx modules
import llama_index.llms.openai
import llama_index.llms.openai_like  # noqa: F401
import pytest
from openai_server import FakeOpenAI

from pytest_rageval.judges import JudgeSpec, parse_judge

QUESTIONS = """
thresholds: {faithfulness: 1.0, relevancy: 1.0}
questions:
  - query: What is the capital of France?
  - query: What is the capital of Italy?
"""


def test_an_openai_like_server_judges_without_an_openai_key(
    http_project: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the user's OpenAI key must never reach another server
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-leak")
    monkeypatch.setenv("RAG_JUDGE_API_KEY", "local-secret")
    http_project.makeini(
        f"""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        rag_judge = openai-like:qwen2.5:7b@{openai_server.url}
        """
    )
    http_project.makefile(".yaml", rag_capitals=QUESTIONS)
    result = http_project.runpytest(
        "-p", "no:cacheprovider", "--rag-cache=off", "--rag-report=r.json"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [f"rageval: workers=8, *, judge=openai-like:qwen2.5:7b@{openai_server.url}"]
    )
    assert openai_server.models == ["qwen2.5:7b"] * 4
    assert openai_server.keys == ["local-secret"] * 4
    report = (http_project.path / "r.json").read_text()
    assert f'"judge": "openai-like:qwen2.5:7b@{openai_server.url}"' in report
    assert "local-secret" not in report


def test_without_a_key_variable_a_local_judge_sends_none(
    http_project: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("RAG_JUDGE_API_KEY", raising=False)
    http_project.makefile(".yaml", rag_capitals=QUESTIONS)
    result = http_project.runpytest(
        "-p", "no:cacheprovider", f"--rag-judge=openai-like:llama3@{openai_server.url}"
    )
    result.assert_outcomes(passed=2)
    assert set(openai_server.keys) == {"none"}


def test_rag_judge_names_the_openai_model(
    http_project: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    http_project.makefile(".yaml", rag_capitals=QUESTIONS)
    result = http_project.runpytest("-p", "no:cacheprovider", "--rag-judge=openai:gpt-4o")
    result.assert_outcomes(passed=2)
    assert set(openai_server.models) == {"gpt-4o"}
    assert set(openai_server.keys) == {"sk-test-not-a-real-key"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("gpt-4o", "expected openai:<model> or openai-like:<model>@<base_url>, got 'gpt-4o'"),
        ("anthropic:claude", "expected openai:<model> or openai-like:<model>@<base_url>*"),
        ("openai:", "expected openai:<model>, e.g. openai:gpt-4o-mini, got 'openai:'"),
        (
            "openai-like:llama3",
            "expected openai-like:<model>@<base_url>, e.g. *, got 'openai-like:llama3'",
        ),
        ("openai-like:llama3@localhost:8000", "expected openai-like:<model>@<base_url>*"),
    ],
)
def test_a_bad_judge_is_a_usage_error_naming_where(
    project: pytest.Pytester, value: str, message: str
) -> None:
    project.makeini(f"[pytest]\nrag_judge = {value}\n")
    result = project.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: rag_judge in */tox.ini: {message}"])


def test_judge_specs_parse() -> None:
    assert parse_judge("openai:gpt-4o-mini") == JudgeSpec("openai", "gpt-4o-mini")
    # Ollama's model names hold colons; the base URL follows the last @
    assert parse_judge("openai-like:qwen2.5:7b@http://localhost:11434/v1") == JudgeSpec(
        "openai-like", "qwen2.5:7b", "http://localhost:11434/v1"
    )
    assert str(parse_judge(" openai-like:m@https://h/v1 ")) == "openai-like:m@https://h/v1"
