"""Keys and URL credentials never reach what a run shows or writes: the terminal (with the
judge's traceback), the JSON report (the next run's baseline), the HTML and Markdown
reports, JUnit XML and the verdict cache. The default judge (the real OpenAI client) talks
to the loopback server, which echoes the key it was sent when told to."""

from __future__ import annotations

import json
from pathlib import Path

import console

# kept loaded across in-process pytester runs (they restore sys.modules afterwards)
import llama_index.llms.openai
import llama_index.llms.openai_like  # noqa: F401
import pytest
from openai_server import FakeOpenAI, Fault

from pytest_rageval.redaction import redact

FAST = ["-p", "no:cacheprovider", "--rag-max-backoff=0.01", "--rag-retries=0"]
WRITTEN = ("report.json", "report.html", "report.md", "junit.xml")
REPORTS = [
    "--rag-report=report.json",
    "--rag-html=report.html",
    "--rag-markdown=report.md",
    "--junitxml=junit.xml",
]
ECHO_401 = Fault(
    status=401,
    body={
        "error": {
            "message": "Incorrect API key provided: {key}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    },
)


def artefacts(project: pytest.Pytester, result: pytest.RunResult) -> dict[str, str]:
    """Everything the run showed or wrote: its terminal output, its reports, the cache."""
    texts = {"terminal": result.stdout.str() + result.stderr.str()}
    for name in WRITTEN:
        path = project.path / name
        if path.exists():
            texts[name] = path.read_text(encoding="utf-8")
    cache = project.path / ".rageval_cache"
    if cache.exists():
        for path in cache.rglob("*"):
            if path.is_file():
                texts[str(path.relative_to(project.path))] = path.read_bytes().decode("latin-1")
    return texts


def leaks(texts: dict[str, str], secret: str) -> list[str]:
    return [name for name, text in texts.items() if secret in text]


@pytest.mark.parametrize("how", [[], ["-l"], ["--tb=native", "-rA"]])
def test_a_key_echoed_in_a_401_is_nowhere(
    judged: pytest.Pytester, openai_server: FakeOpenAI, how: list[str]
) -> None:
    key = "sk-test-not-a-real-key"  # the openai_server fixture's OPENAI_API_KEY
    openai_server.fail_always = ECHO_401
    result = judged.runpytest(*FAST, *REPORTS, *how)
    result.assert_outcomes(failed=1)
    assert openai_server.keys == [key]  # sent once (a 401 is not retried), and echoed
    # the judge's own exception, as pytest shows it above the plugin's line
    result.stdout.fnmatch_lines(
        [
            "*AuthenticationError: Error code: 401 - {'error': {'message': 'Incorrect API key "
            "provided: ***. You can find*"
        ]
    )
    texts = artefacts(judged, result)
    assert set(WRITTEN) <= set(texts)
    assert leaks(texts, key) == [] and leaks(texts, "not-a-real-key") == []
    error = json.loads(texts["report.json"])["sets"][0]["questions"][0]["error"]
    assert error.startswith(
        "evaluator 'faithfulness' raised AuthenticationError: Error code: 401 - {'error': "
        "{'message': 'Incorrect API key provided: ***. You can find"
    )


@pytest.mark.parametrize(
    ("variable", "key", "judge"),
    [
        # a Groq-shaped key
        ("OPENAI_API_KEY", "gsk_4pXq9ZcV2mTn8RwLb3Hy", "openai:gpt-4o-mini"),
        # a local server's key: any shape at all
        ("RAG_JUDGE_API_KEY", "local-judge-Secret-42", "openai-like:qwen2.5:7b@{url}"),
        ("RAG_JUDGE_API_KEY", "8f14e45fceea167a5a36dedd4bea2543", "openai-like:qwen2.5:7b@{url}"),
    ],
)
def test_configured_keys_of_any_shape_are_nowhere(
    judged: pytest.Pytester,
    openai_server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    key: str,
    judge: str,
) -> None:
    monkeypatch.setenv(variable, key)
    openai_server.fail_always = ECHO_401
    result = judged.runpytest(
        *FAST, *REPORTS, "-l", f"--rag-judge={judge.format(url=openai_server.url)}"
    )
    result.assert_outcomes(failed=1)
    assert openai_server.keys == [key]
    result.stdout.fnmatch_lines(["*Error code: 401 - *Incorrect API key provided: ***. *"])
    texts = artefacts(judged, result)
    assert set(WRITTEN) <= set(texts)
    assert leaks(texts, key) == []


def test_a_judge_answer_echoing_the_key_is_cached_redacted(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    key = "sk-test-not-a-real-key"
    openai_server.fail_always = Fault(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "YES (asked with key {key})"},
                    "finish_reason": "stop",
                }
            ],
        }
    )
    result = judged.runpytest("-p", "no:cacheprovider", *REPORTS)
    result.assert_outcomes(passed=1)
    texts = artefacts(judged, result)
    assert any(name.startswith(".rageval_cache") for name in texts)
    assert leaks(texts, key) == [] and leaks(texts, "not-a-real-key") == []
    question = json.loads(texts["report.json"])["sets"][0]["questions"][0]
    assert question["metrics"]["faithfulness"]["feedback"] == "YES (asked with key ***)"
    # the cached verdict, replayed by the next run, says the same
    again = judged.runpytest("-p", "no:cacheprovider", "--rag-report=again.json")
    again.assert_outcomes(passed=1)
    assert openai_server.chat_requests == 1
    question = json.loads((judged.path / "again.json").read_text())["sets"][0]["questions"][0]
    assert question["metrics"]["faithfulness"]["feedback"] == "YES (asked with key ***)"


def test_credentials_in_openai_api_base_are_a_usage_error(
    judged: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = openai_server.url.replace("http://", "http://admin:hunter2pass@")
    monkeypatch.setenv("OPENAI_API_BASE", url)
    result = judged.runpytest(*FAST, *REPORTS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    shown = openai_server.url.replace("http://", "http://***@")
    result.stderr.fnmatch_lines(
        [
            f"ERROR: OPENAI_API_BASE={shown} has credentials in it (user:password@), which "
            "OpenAI clients do not send: remove them, and set the key in OPENAI_API_KEY"
        ]
    )
    assert openai_server.chat_requests == 0
    assert leaks(artefacts(judged, result), "hunter2pass") == []


def test_credentials_in_openai_api_base_stop_the_command_line_too(
    tmp_path: Path, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = openai_server.url.replace("http://", "http://admin:hunter2pass@")
    monkeypatch.setenv("OPENAI_API_BASE", url)
    (tmp_path / "labels.yaml").write_text(
        "cases:\n  - query: Q?\n    response: A.\n    labels: {relevancy: true}\n"
    )
    done = console.rageval("calibrate", "labels.yaml", cwd=tmp_path)
    assert done.returncode == 2
    shown = openai_server.url.replace("http://", "http://***@")
    assert done.stderr == (
        f"rageval: error: OPENAI_API_BASE={shown} has credentials in it (user:password@), "
        "which OpenAI clients do not send: remove them, and set the key in OPENAI_API_KEY\n"
    )
    assert openai_server.chat_requests == 0


def test_credentials_in_rag_judge_are_a_usage_error(
    judged: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    url = openai_server.url.replace("http://", "http://admin:hunter2pass@")
    judged.makeini(
        f"""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        rag_judge = openai-like:qwen2.5:7b@{url}
        """
    )
    result = judged.runpytest(*FAST, *REPORTS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    shown = openai_server.url.replace("http://", "http://***@")
    result.stderr.fnmatch_lines(
        [
            f"ERROR: rag_judge in *tox.ini: the base URL {shown} has credentials in it "
            "(user:password@), which OpenAI clients do not send: remove them, and set the key "
            "in RAG_JUDGE_API_KEY"
        ]
    )
    assert openai_server.chat_requests == 0
    assert leaks(artefacts(judged, result), "hunter2pass") == []


def test_url_credentials_are_redacted_everywhere(
    project: pytest.Pytester,
) -> None:
    project.makeconftest(
        """
        import pytest
        from fakes import ScriptedLLM

        @pytest.fixture(scope="session")
        def rag_judge_llm():
            return ScriptedLLM()

        @pytest.fixture(scope="session")
        def rag_query_engine():
            def app(query):
                store = "postgresql://admin:hunter2pass@db.internal:5432/docs"
                raise RuntimeError(f"cannot reach {store}")
            return app
        """
    )
    project.makefile(".yaml", rag_set='questions: [{id: q, query: "Q?"}]')
    result = project.runpytest("-p", "no:cacheprovider", *REPORTS, "-l")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E *RuntimeError: cannot reach postgresql://***@db.internal:5432/docs",
            "E *rag question errored: query engine raised RuntimeError: cannot reach "
            "postgresql://***@db.internal:5432/docs",
        ]
    )
    texts = artefacts(project, result)
    assert set(WRITTEN) <= set(texts)
    assert leaks(texts, "hunter2pass") == [] and leaks(texts, "admin:") == []


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("key sk-proj-abcdefgh1234", "key sk-proj-***"),
        ("Groq gsk_4pXq9ZcV2mTn8RwLb3Hy.", "Groq gsk_***."),
        ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer ***"),
        (
            "GET https://u:p@host/v1 and http://token@h:80/x",
            "GET https://***@host/v1 and http://***@h:80/x",
        ),
        (
            "mail me@example.com at https://example.com/@me",
            "mail me@example.com at https://example.com/@me",
        ),
        ("sk-short and gsk_short stay", "sk-short and gsk_short stay"),
    ],
)
def test_redact_without_configured_keys(
    text: str, redacted: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAG_JUDGE_API_KEY", raising=False)
    assert redact(text) == redacted


def test_placeholder_keys_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # what local servers take as keys: replacing these everywhere would garble reports
    monkeypatch.setenv("OPENAI_API_KEY", "ollama")
    monkeypatch.setenv("RAG_JUDGE_API_KEY", "EMPTY")
    assert redact("ollama answered EMPTY") == "ollama answered EMPTY"
    monkeypatch.setenv("RAG_JUDGE_API_KEY", "my-judge-key")
    assert redact("it sent my-judge-key twice: my-judge-key") == "it sent *** twice: ***"
