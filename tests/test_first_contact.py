"""What a new user meets first: the examples, a project without an ini file, ids in any
language, the README's two ways of loading questions, and ``rageval init``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import console
import pytest
from openai_server import FakeOpenAI

REPO = Path(__file__).parent.parent

OFFLINE_APP = """
import pytest
from pytest_rageval import TokenF1Evaluator

ANSWERS = {
    "¿Quién fue Porfirio Díaz?": "Porfirio Díaz fue presidente de México.",
    "巴黎是哪个国家的首都？": "巴黎是法国的首都。",
    "東京タワーの高さは何メートルですか？": "東京タワーの高さは333メートルです。",
}


@pytest.fixture(scope="session")
def rag_query_engine():
    return ANSWERS.__getitem__


@pytest.fixture(scope="session")
def rag_evaluators():
    return {"f1": TokenF1Evaluator(threshold=0.8)}
"""


def test_pytest_examples_runs_the_offline_example_and_skips_only_the_notebook() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_API_BASE")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "examples", "-p", "no:cacheprovider", "-rs"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "examples/offline/rag_questions.yaml  f1 " in out
    assert "SKIPPED [8] examples/openai_notebook/test_batch_eval.py" in out
    assert "OpenAI notebook example: set OPENAI_API_KEY" in out
    assert out.rstrip().splitlines()[-1].startswith("=") and (
        "7 passed, 8 skipped, 1 tolerated" in out.rstrip().splitlines()[-1]
    )


def test_a_project_without_an_ini_file_is_quiet_under_w_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytester.makeconftest(OFFLINE_APP)
    pytester.makefile(
        ".yaml",
        rag_i18n="questions:\n  - query: 巴黎是哪个国家的首都？\n    reference: 巴黎是法国的首都\n",
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "warnings summary" not in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["asyncio: *asyncio_default_fixture_loop_scope=function*"])


def test_a_users_own_loop_scope_setting_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = module\n")
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["asyncio: *asyncio_default_fixture_loop_scope=module*"])


def test_ids_keep_letters_of_any_script_and_token_metrics_read_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(OFFLINE_APP)
    questions = {
        "questions": [
            {
                "query": "¿Quién fue Porfirio Díaz?",
                "reference": "Porfirio Díaz fue presidente de México",
            },
            {"query": "巴黎是哪个国家的首都？", "reference": "巴黎是法国的首都"},
            {
                "query": "東京タワーの高さは何メートルですか？",
                "reference": "東京タワーの高さは333メートルです",
            },
        ]
    }
    (pytester.path / "rag_i18n.json").write_text(
        json.dumps(questions, ensure_ascii=False), encoding="utf-8"
    )
    result = pytester.runpytest("-v", "-p", "no:cacheprovider", "--rag-report", "report.json")
    result.stdout.fnmatch_lines(
        [
            "rag_i18n.json::quién-fue-porfirio-díaz PASSED*",
            "rag_i18n.json::巴黎是哪个国家的首都 PASSED*",
            "rag_i18n.json::東京タワーの高さは何メートルですか PASSED*",
        ],
        consecutive=True,
    )
    report = json.loads((pytester.path / "report.json").read_text(encoding="utf-8"))
    scores = {q["id"]: q["metrics"]["f1"]["score"] for q in report["sets"][0]["questions"]}
    assert scores == {
        "quién-fue-porfirio-díaz": 1.0,
        "巴黎是哪个国家的首都": 1.0,
        "東京タワーの高さは何メートルですか": 1.0,
    }
    # selecting by a Unicode id works as for any test
    selected = pytester.runpytest("-p", "no:cacheprovider", "-k", "díaz")
    selected.assert_outcomes(passed=1, deselected=2)


LOADS_SUPPORT = """
import pytest
from pytest_rageval import load_questions


@pytest.mark.parametrize("rag_question", load_questions("{path}"))
def test_support_bot(rag_result):
    assert rag_result.response
"""


@pytest.mark.parametrize(
    ("test_module", "data_path"),
    [("test_support.py", "rag_support.yaml"), ("a_tests/test_support.py", "../rag_support.yaml")],
    ids=["data-file-collected-first", "test-module-collected-first"],
)
def test_load_questions_of_a_collected_file_warns(
    project: pytest.Pytester, test_module: str, data_path: str
) -> None:
    project.makefile(".yaml", rag_support="questions:\n  - query: How do I reset my password?\n")
    module = project.path / test_module
    module.parent.mkdir(exist_ok=True)
    module.write_text(LOADS_SUPPORT.format(path=data_path))
    result = project.runpytest(
        "-p", "no:cacheprovider", "-W", "default::pytest_rageval.collect.RagEvalWarning"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*RagEvalWarning: rag_support.yaml is collected as a question set (its name matches "
            f"rag_files) and also loaded with load_questions() at {test_module}:6, so every "
            "question in it is asked and judged twice, as two sets; rename the file so that "
            "rag_files does not match it (e.g. support_questions.yaml), or narrow rag_files"
        ]
    )
    # the project's filterwarnings = error: a collection error, not an INTERNALERROR
    strict = project.runpytest("-p", "no:cacheprovider")
    assert "INTERNALERROR" not in strict.stdout.str()
    strict.stdout.fnmatch_lines(["*ERROR collecting*", "*is collected as a question set*"])


def test_load_questions_of_a_file_not_collected_is_quiet(project: pytest.Pytester) -> None:
    project.makefile(
        ".yaml", support_questions="questions:\n  - query: How do I reset my password?\n"
    )
    project.makepyfile(test_support=LOADS_SUPPORT.format(path="support_questions.yaml"))
    result = project.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def run_init(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return console.rageval("init", *args, cwd=cwd)


def test_rageval_init_starts_a_project_that_runs_once_its_todo_is_filled(
    tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    done = console.installed("init", "app", cwd=tmp_path)  # the script pip installs
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:3] == [
        "wrote app/conftest.py",
        "wrote app/rag_questions.yaml",
        "wrote app/pytest.ini",
    ]
    folder = tmp_path / "app"
    conftest = (folder / "conftest.py").read_text()
    todo = '    raise NotImplementedError("TODO in conftest.py: return your app from rag_query_engine")'
    assert todo in conftest
    # as written, pytest says what to do
    first = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 1
    assert (
        "conftest.py:16: the rag_query_engine fixture is not written yet: "
        "TODO in conftest.py: return your app from rag_query_engine"
    ) in first.stdout
    # the user fills in the TODO: an app; judged by the default judge over HTTP
    (folder / "conftest.py").write_text(
        conftest.replace(
            todo,
            "    return lambda query: ('Purchases can be returned within 30 days.', ['Purchases can be returned within 30 days.'])",
        )
    )
    second = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 passed" in second.stdout.splitlines()[-1]
    assert "rag_questions.yaml  faithfulness " in second.stdout
    assert (folder / "rag-report.json").is_file()  # the ini lines took effect
    assert openai_server.chat_requests == 4


def test_rageval_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("# mine\n")
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-q"\n')
    done = run_init(cwd=tmp_path)
    assert done.returncode == 0
    assert (tmp_path / "conftest.py").read_text() == "# mine\n"
    assert not (tmp_path / "pytest.ini").exists()  # it would shadow pyproject.toml's
    assert "wrote rag_questions.yaml" in done.stdout
    assert "conftest.py exists, left unchanged; the starter would hold:" in done.stdout
    assert (
        "pyproject.toml holds your pytest configuration, left unchanged; add these lines "
        "to its [tool.pytest.ini_options] section:\n"
        '    asyncio_default_fixture_loop_scope = "function"\n'
        '    rag_workers = "8"\n'
    ) in done.stdout
    again = run_init(cwd=tmp_path)
    assert again.returncode == 1
    assert again.stdout.splitlines()[-1] == "rageval init: every file exists; nothing was written"


def test_rageval_init_in_a_subfolder_leaves_the_projects_config_in_charge(tmp_path: Path) -> None:
    (tmp_path / "tox.ini").write_text("[pytest]\naddopts = -q\n")
    done = run_init("tests", cwd=tmp_path)
    assert done.returncode == 0
    assert not (tmp_path / "tests" / "pytest.ini").exists()
    assert (tmp_path / "tests" / "conftest.py").exists()
    assert f"{tmp_path / 'tox.ini'} holds your pytest configuration, left unchanged" in done.stdout
    assert "    rag_workers = 8" in done.stdout


def test_rageval_init_says_what_a_plain_string_answer_gets(
    pytester: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    project = pytester
    done = console.rageval("init", cwd=project.path)
    assert done.returncode == 0, done.stderr
    conftest = (project.path / "conftest.py").read_text()
    import ast

    tree = ast.parse(conftest)
    engine = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "rag_query_engine"
    )
    assert ast.get_docstring(engine) == (
        "The app under test: a llama-index query engine, or any callable (sync or async)\n"
        "that takes the query string and returns a llama-index Response or an\n"
        "(answer, [context, ...]) pair. Faithfulness and relevancy judge the answer against\n"
        "the retrieved contexts: a plain string answer has none, and they mark it invalid."
    )
    todo = '    raise NotImplementedError("TODO in conftest.py: return your app from rag_query_engine")'
    # what the docstring says, tried: a string answer is invalid, an answer with contexts passes
    (project.path / "conftest.py").write_text(
        conftest.replace(
            todo, "    return lambda query: 'Purchases can be returned within 30 days.'"
        )
    )
    strings = project.runpytest("-p", "no:cacheprovider")
    strings.assert_outcomes(failed=2)
    strings.stdout.fnmatch_lines(
        ["*the query engine returned a plain string, so there are no retrieved contexts*"]
    )
    (project.path / "conftest.py").write_text(
        conftest.replace(
            todo,
            "    return lambda query: ('Purchases can be returned within 30 days.', ['Purchases can be returned within 30 days.'])",
        )
    )
    project.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_rageval_init_shows_both_judge_forms(tmp_path: Path) -> None:
    assert run_init(cwd=tmp_path).returncode == 0
    assert (tmp_path / "pytest.ini").read_text().splitlines()[-4:] == [
        "# rag_judge = openai:gpt-4o-mini",
        "# rag_judge = openai-like:<model>@http://127.0.0.1:8000/v1",
        "# the toy judge `rageval judge-server` serves, to try the tool without a key:",
        "# rag_judge = openai-like:toy@http://127.0.0.1:8001/v1",
    ]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    done = run_init(cwd=tmp_path / "sub")
    assert '    # rag_judge = "openai-like:<model>@http://127.0.0.1:8000/v1"\n' in done.stdout


def test_rageval_init_keeps_its_cache_and_report_out_of_git(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    done = run_init("empty", cwd=tmp_path)
    assert "wrote empty/.gitignore" in done.stdout.splitlines()
    assert (empty / ".gitignore").read_text() == (
        "# pytest-rageval\n.rageval_cache/\nrag-report.json\n"
    )
    # a project's own .gitignore: only the missing lines are added, once
    project = tmp_path / "project"
    project.mkdir()
    (project / ".gitignore").write_text("node_modules/\nrag-report.json")
    done = run_init(cwd=project)
    assert "added .rageval_cache/ to .gitignore" in done.stdout.splitlines()
    expected = "node_modules/\nrag-report.json\n# pytest-rageval\n.rageval_cache/\n"
    assert (project / ".gitignore").read_text() == expected
    again = run_init(cwd=project)
    assert again.returncode == 1
    assert (project / ".gitignore").read_text() == expected
    assert ".gitignore" not in again.stdout
    # in a subfolder of a project, beside the configuration the cache is relative to
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (project / ".gitignore").unlink()
    run_init("tests", cwd=project)
    assert (project / ".gitignore").read_text() == (
        "# pytest-rageval\n.rageval_cache/\nrag-report.json\n"
    )
    assert not (project / "tests" / ".gitignore").exists()
