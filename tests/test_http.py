"""The default judge: llama-index's real OpenAI client over real HTTP on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_server import FakeOpenAI

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def http_set(http_project: pytest.Pytester) -> pytest.Pytester:
    http_project.makefile(
        ".yaml",
        rag_set="""
        thresholds: {faithfulness: 0.6}
        questions:
          - {id: paris, query: "Where is Paris?", reference: France}
          - {id: rome, query: "Where is Rome?"}
          - {id: atlantis, query: "Where is UNSUPPORTED Atlantis?"}
        """,
    )
    return http_project


def test_default_judge_over_http(http_set: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    result = http_set.runpytest_subprocess("-v", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "rag_set.yaml::paris PASSED*",
            "rag_set.yaml::rome PASSED*",
            "rag_set.yaml::atlantis TOLERATED*",
        ]
    )
    assert result.parseoutcomes() == {"passed": 2, "tolerated": 1}
    # the runner closes the client's connections: no ResourceWarning fails `-W error` runs
    assert result.ret == 0
    result.stderr.no_fnmatch_line("*ResourceWarning*")
    # the default judge's pooled aiohttp client is closed on the runner's loop at the end
    result.stderr.no_fnmatch_line("*Unclosed*")
    # 3 x faithfulness + 3 x relevancy + 1 x correctness (only paris has a reference)
    assert openai_server.chat_requests == 7
    faithfulness = [p for p in openai_server.prompts if "supported by the context" in p]
    assert any("Information: Answer: Where is Paris?" in p for p in faithfulness)


def test_transient_http_errors_are_retried(
    http_set: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    openai_server.fail_next = [500, 429]
    result = http_set.runpytest("-p", "no:cacheprovider", "--rag-workers=1")
    assert result.parseoutcomes() == {"passed": 2, "tolerated": 1}
    assert openai_server.chat_requests == 7 + 2


def test_without_retries_the_error_is_that_questions_own(
    http_set: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    openai_server.fail_next = [500]
    result = http_set.runpytest("-p", "no:cacheprovider", "--rag-workers=1", "--rag-retries=0")
    # exactly one request was refused: one question errs, the other two are judged, and
    # the error counts against the set (1/3 < 0.6), so atlantis is no longer tolerated
    assert result.parseoutcomes() == {"failed": 2, "passed": 1}
    result.stdout.fnmatch_lines(
        [
            "rag question errored: evaluator 'faithfulness': server error from "
            "http://127.0.0.1:*/v1 (500) after 1 attempt",
            "*rag_set.yaml: faithfulness pass rate 1/3 = 0.33 < threshold 0.60",
        ]
    )


def test_notebook_example_runs_against_a_compatible_server(
    pytester: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    pytest.importorskip("llama_index.embeddings.openai")
    result = pytester.runpytest_subprocess(
        # in place: no verdict cache in the repository, and every request made afresh
        str(EXAMPLES / "openai_notebook"),
        "-p",
        "no:cacheprovider",
        "-v",
        "--rag-cache=off",
    )
    result.assert_outcomes(passed=8)
    # the query engine's own LLM calls went to the server too
    assert openai_server.chat_requests > 16


def test_the_default_judge_uses_the_aiohttp_transport(openai_server: FakeOpenAI) -> None:
    import openai

    from pytest_rageval import judges

    llm, client = judges.default_judge(judges.JudgeSpec("openai", "gpt-4o-mini"), 30)
    assert isinstance(client, openai.DefaultAioHttpClient)
    assert llm._get_aclient()._client is client  # the pooled client, reused by every call
    assert (llm.max_retries, llm.temperature) == (0, 0.0)
