"""``rageval init``: a starter conftest.py, question file and ini lines (no pytest here).

Nothing that exists is ever overwritten: an existing file is left as it is and what would
have gone into it is shown instead. The ini lines go into a new ``pytest.ini`` only when
neither the folder nor a parent folder has a pytest configuration yet (a new pytest.ini
would shadow an existing one in pyproject.toml, tox.ini or setup.cfg).
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

CONFTEST = '''\
"""pytest-rageval: the app under test and how its answers are judged."""

import pytest


@pytest.fixture(scope="session")
def rag_query_engine():
    """The app under test: a llama-index query engine, or any callable (sync or async)
    that takes the query string and returns a llama-index Response or an
    (answer, [context, ...]) pair. Faithfulness and relevancy judge the answer against
    the retrieved contexts: a plain string answer has none, and they mark it invalid."""
    # TODO: build and return your app, e.g.
    #   from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
    #   documents = SimpleDirectoryReader("docs").load_data()
    #   return VectorStoreIndex.from_documents(documents).as_query_engine()
    raise NotImplementedError("TODO in conftest.py: return your app from rag_query_engine")


@pytest.fixture(scope="session")
def rag_evaluators(rag_judge_llm):
    """Metric name -> llama-index evaluator. rag_questions.yaml sets each one's minimum
    pass rate. Built-in metrics that need no LLM (exact_match, rouge_l, numeric, hit_rate,
    ...) can also be named in a question file's `evaluators` list."""
    from llama_index.core.evaluation import FaithfulnessEvaluator, RelevancyEvaluator

    return {
        "faithfulness": FaithfulnessEvaluator(llm=rag_judge_llm),
        "relevancy": RelevancyEvaluator(llm=rag_judge_llm),
    }


# The judge is OpenAI's gpt-4o-mini with OPENAI_API_KEY, or whatever the ini option
# rag_judge names (openai:<model>, openai-like:<model>@<base_url>). Any llama-index LLM:
#
# @pytest.fixture(scope="session")
# def rag_judge_llm():
#     from llama_index.llms.ollama import Ollama
#
#     return Ollama(model="llama3.1", request_timeout=120)
'''

QUESTIONS = """\
# Questions for your app: each becomes a test. `pytest` asks them all and fails when a
# metric's pass rate falls below its threshold here.
thresholds:
  faithfulness: 0.9
  relevancy: 0.8
questions:
  # TODO: replace these with questions your users ask
  - id: refund-window
    query: How long do I have to return a purchase?
    reference: Purchases can be returned within 30 days.
    must_pass: true  # fails the run on its own when it fails
  - query: How do I contact support?
"""

INI_LINES = """\
asyncio_default_fixture_loop_scope = function
rag_workers = 8
rag_report = rag-report.json
# rag_judge = openai:gpt-4o-mini
# rag_judge = openai-like:<model>@http://127.0.0.1:8000/v1
# the toy judge `rageval judge-server` serves, to try the tool without a key:
# rag_judge = openai-like:toy@http://127.0.0.1:8001/v1
"""

GITIGNORE_LINES = (".rageval_cache/", "rag-report.json")
"""What a run writes that does not belong in version control: the verdict cache and the
report the ini lines ask for."""

PYTEST_INI = "[pytest]\n" + INI_LINES


def toml_lines(lines: str) -> str:
    """The ini lines as pyproject.toml's ``[tool.pytest.ini_options]`` wants them."""
    out = []
    for line in lines.splitlines():
        comment = line.startswith("# ")
        key, equals, value = line.removeprefix("# ").partition(" = ")
        if not equals:  # a comment that sets nothing: as it is
            out.append(line)
            continue
        out.append(f'{"# " if comment else ""}{key} = "{value}"')
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Outcome:
    """What ``init`` did with one file: ``written``, ``kept`` (it existed) or ``appended``
    (lines added to an existing ``.gitignore``)."""

    path: Path
    action: str
    content: str


def existing_config(folder: Path) -> Path | None:
    """The pytest configuration file that applies in ``folder``: its own or the nearest
    parent folder's, as pytest finds it, if any."""
    for candidate in (folder.resolve(), *folder.resolve().parents):
        found = _config_in(candidate)
        if found is not None:
            return found if candidate != folder.resolve() else folder / found.name
    return None


def _config_in(folder: Path) -> Path | None:
    for name, section in (
        ("pytest.ini", None),
        (".pytest.ini", None),
        ("pyproject.toml", "[tool.pytest"),
        ("tox.ini", "pytest"),
        ("setup.cfg", "tool:pytest"),
    ):
        path = folder / name
        if not path.is_file():
            continue
        if section is None:
            return path
        text = path.read_text(encoding="utf-8", errors="replace")
        if name == "pyproject.toml":
            if section in text:
                return path
            continue
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error:
            continue
        if parser.has_section(section):
            return path
    return None


def init(folder: Path) -> list[Outcome]:
    """Write the starter files into ``folder`` (created if missing); never overwrite."""
    folder.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for name, content in (("conftest.py", CONFTEST), ("rag_questions.yaml", QUESTIONS)):
        outcomes.append(_write(folder / name, content))
    config = existing_config(folder)
    if config is None:
        outcomes.append(_write(folder / "pytest.ini", PYTEST_INI))
    else:
        lines = toml_lines(INI_LINES) if config.name == "pyproject.toml" else INI_LINES
        outcomes.append(Outcome(config, "kept", lines))
    # beside the pytest configuration: the cache and the ini's report paths are relative to it
    outcomes.append(_ignore((folder if config is None else config.parent) / ".gitignore"))
    return outcomes


def _ignore(path: Path) -> Outcome:
    """Add what ``GITIGNORE_LINES`` lacks to a ``.gitignore`` (created if missing): action
    ``written``, ``appended``, or ``kept`` when it has them all."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = None
    present = set() if text is None else {line.strip() for line in text.splitlines()}
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if not missing:
        return Outcome(path, "kept", "")
    added = "# pytest-rageval\n" + "".join(f"{line}\n" for line in missing)
    if text is None:
        return _write(path, added)
    with path.open("a", encoding="utf-8") as file:
        file.write(("" if not text or text.endswith("\n") else "\n") + added)
    return Outcome(path, "appended", added)


def _write(path: Path, content: str) -> Outcome:
    try:
        with path.open("x", encoding="utf-8") as file:  # "x": never overwrite
            file.write(content)
    except FileExistsError:
        return Outcome(path, "kept", content)
    return Outcome(path, "written", content)
