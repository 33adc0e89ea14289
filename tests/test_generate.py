"""``rageval generate`` against the loopback OpenAI-compatible server: llama-index's
generation prompts, per-chunk limits, deduplication, the LabelledRagDataset file the
plugin collects, and resuming after a rate limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import console
import pytest
from openai_server import Budget, FakeOpenAI

from pytest_rageval.generate import parse_questions

DOCS = {
    "bees.txt": "Honeybees live in colonies of many thousands.\nThe queen lays the eggs.",
    "lava.txt": "Molten rock at the surface is called lava.\nMagma stays below ground.",
    "lights.txt": "Lighthouses guide ships at night.\nEach has its own flash pattern.",
}


def make_docs(folder: Path) -> Path:
    docs = folder / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text + "\n", encoding="utf-8")
    return docs


def rageval(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return console.rageval("generate", *args, cwd=cwd)


def test_questions_and_answers_from_llama_index_prompts(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    make_docs(tmp_path)
    done = rageval("docs", "--out", "rag_generated.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # per chunk the server offers 5 lines: q1, "Which facts...", q1 again, q4, q5. The first
    # chunk keeps q1, "Which facts", q4 (3, its limit); the others q1, q4, q5, as
    # "Which facts..." was asked before; q1's repeat is dropped everywhere: 1 + 2 + 2
    assert done.stdout.strip() == (
        "wrote 9 questions from 3 chunks to rag_generated.json; 5 duplicate questions dropped"
    )
    data = json.loads((tmp_path / "rag_generated.json").read_text())
    queries = [e["query"] for e in data["examples"]]
    assert queries == [
        "What does the text say about Honeybees live in colonies?",
        "Which facts does the text give?",
        "Who is named in Honeybees live in colonies?",
        "What does the text say about Molten rock at the?",
        "Who is named in Molten rock at the?",
        "Why does Molten rock at the matter?",
        "What does the text say about Lighthouses guide ships at?",
        "Who is named in Lighthouses guide ships at?",
        "Why does Lighthouses guide ships at matter?",
    ]
    first = data["examples"][0]
    assert first == {
        "query": "What does the text say about Honeybees live in colonies?",
        "query_by": {"model_name": "gpt-4o-mini", "type": "ai"},
        "reference_contexts": [
            "Honeybees live in colonies of many thousands.\nThe queen lays the eggs."
        ],
        # the server answers llama-index's QA prompt with the context's first line
        "reference_answer": "Honeybees live in colonies of many thousands.",
        "reference_answer_by": {"model_name": "gpt-4o-mini", "type": "ai"},
    }
    # llama-index's own prompts: DatasetGenerator's question prompt and query, the QA prompt
    question_prompts = [p for p in openai_server.prompts if "generate only questions" in p]
    assert len(question_prompts) == 3
    assert "You are a Teacher/Professor. Your task is to setup 3 questions" in question_prompts[0]
    qa_prompts = [p for p in openai_server.prompts if "answer the query" in p]
    assert len(qa_prompts) == 9
    assert openai_server.chat_requests == 12


def test_the_generated_file_is_collected_as_it_is(
    tmp_path: Path, openai_server: FakeOpenAI, pytester: pytest.Pytester
) -> None:
    make_docs(tmp_path)
    assert (
        rageval(
            "docs",
            "--out",
            str(pytester.path / "rag_generated.json"),
            "--max-questions",
            "4",
            cwd=tmp_path,
        ).returncode
        == 0
    )
    pytester.makeconftest(
        """
        import pytest
        from pytest_rageval import ContextRecallEvaluator

        @pytest.fixture(scope="session")
        def rag_query_engine():
            return lambda query: ("an answer", ["Honeybees live in colonies of many thousands. The queen lays the eggs."])

        @pytest.fixture(scope="session")
        def rag_evaluators():
            return {"context_recall": ContextRecallEvaluator()}
        """
    )
    pytester.makeini("[pytest]\nfilterwarnings = error\nrag_thresholds = context_recall=0.5\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    # --max-questions 4: the first chunk's 3 and one of the second's
    assert result.parseoutcomes() == {"passed": 3, "tolerated": 1}
    result.stdout.fnmatch_lines(
        ["rag_generated.json::what-does-the-text-say-about-honeybees-live-in-colonies PASSED*"]
    )


def test_a_rate_limit_stops_the_run_and_the_same_command_continues(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    make_docs(tmp_path)
    # the first chunk takes 4 requests (questions, 3 answers), the second's questions the
    # 5th; its answers hit the limit
    openai_server.budget = Budget(limit=5, window=600)
    stopped = rageval("docs", "--out", "rag_q.json", "--retries", "0", cwd=tmp_path)
    assert stopped.returncode == 1
    assert "rageval generate: stopped at chunk 2 of 3: RateLimitError: " in stopped.stderr
    assert stopped.stderr.splitlines()[-1] == (
        "3 questions are saved in rag_q.json; run the same command again to continue where it stopped"
    )
    assert "Traceback" not in stopped.stderr
    saved = json.loads((tmp_path / "rag_q.json").read_text())["examples"]
    assert len(saved) == 3
    asked = openai_server.chat_requests

    openai_server.budget = None
    resumed = rageval("docs", "--out", "rag_q.json", "--retries", "0", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(
        "wrote 6 questions from 2 chunks to rag_q.json (3 already there, 1 chunks done before)"
    )
    # the first chunk is not asked again: 2 chunks x (1 + 3 requests)
    assert openai_server.chat_requests - asked == 8
    whole = rageval("docs", "--out", "rag_whole.json", cwd=tmp_path)
    assert whole.returncode == 0
    assert json.loads((tmp_path / "rag_q.json").read_text()) == json.loads(
        (tmp_path / "rag_whole.json").read_text()
    )


def test_a_rate_limit_with_a_short_retry_after_is_waited_out(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    make_docs(tmp_path)
    openai_server.budget = Budget(limit=6, window=1.0)
    done = rageval("docs", "--out", "rag_q.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads((tmp_path / "rag_q.json").read_text())["examples"]) == 9
    assert 429 in openai_server.statuses


def test_bad_input_is_named(tmp_path: Path, openai_server: FakeOpenAI) -> None:
    missing = rageval("nowhere", cwd=tmp_path)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "rageval: error: nowhere: no such folder of documents",
    )
    (tmp_path / "empty").mkdir()
    empty = rageval("empty", cwd=tmp_path)
    assert empty.returncode == 2
    assert empty.stderr.startswith("rageval: error: empty: No files found in empty.")
    make_docs(tmp_path)
    (tmp_path / "notes.json").write_text("{not json")
    clash = rageval("docs", "--out", "notes.json", cwd=tmp_path)
    assert clash.returncode == 2
    assert "notes.json: exists but is not a generated question file" in clash.stderr
    assert (tmp_path / "notes.json").read_text() == "{not json"  # nothing a user wrote is lost
    bad = rageval("docs", "--per-chunk", "0", cwd=tmp_path)
    assert bad.returncode == 2
    assert "argument --per-chunk: must be a whole number >= 1, got '0'" in bad.stderr


def test_no_deprecation_warning_leaks(tmp_path: Path, openai_server: FakeOpenAI) -> None:
    make_docs(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            str(console.RAGEVAL),
            "generate",
            "docs",
            "--max-questions",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_numbering_and_bullets_are_stripped() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_questions("1. One?\n2) Two?\n\n- Three?\n(4) Four?\nQ5: Five?\n  Six?  ") == [
            "One?",
            "Two?",
            "Three?",
            "Four?",
            "Five?",
            "Six?",
        ]


def test_a_progress_bar_on_a_terminal(tmp_path: Path, openai_server: FakeOpenAI) -> None:
    import fcntl
    import pty
    import struct
    import termios

    make_docs(tmp_path)
    main, child = pty.openpty()
    # a terminal 100 columns wide (a new pseudo-terminal has no size: tqdm draws nothing)
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [str(console.RAGEVAL), "generate", "docs"],
        cwd=tmp_path,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    output = b""
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        output += data
    assert process.wait(timeout=120) == 0
    os.close(main)
    text = output.decode(errors="replace")
    assert "generating: 100%" in text and "3/3 [" in text and "questions=9" in text
    assert "wrote 9 questions from 3 chunks to rag_questions.json" in text
