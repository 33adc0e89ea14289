from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

# numpy (under llama-index) cannot be imported twice in one process, and in-process
# pytester runs restore sys.modules afterwards: import it once, here, for good. The same
# for the openai SDK and its aiohttp transport, which the default judge uses: imported
# anew in each run, its client classes would differ from the ones it checks against. Its
# resources and types load lazily, on the default judge's first request: some 500 pydantic
# modules (0.7 s) that each in-process run would otherwise import again.
import llama_index.core
import llama_index.llms.openai  # noqa: F401
import openai.resources
import openai.types  # noqa: F401
import pytest

# nltk (llama-index's sentence splitter, rouge-score) imports scipy, whose C extensions,
# like numpy's, cannot load twice: first imported inside an in-process run, scipy is
# gone afterwards and the reference tests' `from scipy.stats import binom` fails
# (which test ran first on an xdist worker decides it: a flaky failure)
import scipy.stats  # noqa: F401
import tiktoken_ext.openai_public  # noqa: F401
from openai_server import FakeOpenAI, serve
from qfiles import session_fixtures

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).parent

APP_CONFTEST = """
import pytest
from fakes import ScriptedApp, ScriptedLLM


@pytest.fixture(scope="session")
def rag_judge_llm():
    return ScriptedLLM()


@pytest.fixture(scope="session")
def rag_query_engine():
    return ScriptedApp()
"""
"""A project whose app answers every question and whose judge follows fakes.judge_answer."""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A throwaway project that can import ``fakes`` (in process and in subprocesses),
    with the scripted app and judge as its fixtures and strict warnings."""
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    monkeypatch.setenv("PYTHONPATH", str(TESTS_DIR))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    pytester.makeconftest(APP_CONFTEST)
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    return pytester


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The loopback OpenAI-compatible server, with ``OPENAI_API_KEY`` and
    ``OPENAI_API_BASE`` pointing at it (for this process and its subprocesses)."""
    with serve() as (url, state):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
        monkeypatch.setenv("OPENAI_API_BASE", url)
        yield state


@pytest.fixture
def http_project(project: pytest.Pytester, openai_server: FakeOpenAI) -> pytest.Pytester:
    """The scripted app, judged by the plugin's default rag_judge_llm (the real OpenAI
    client) over HTTP on loopback."""
    project.makeconftest(
        session_fixtures("from fakes import ScriptedApp", rag_query_engine="ScriptedApp()")
    )
    return project


@pytest.fixture
def judged(http_project: pytest.Pytester) -> pytest.Pytester:
    """One question, judged for faithfulness only by the default judge over HTTP."""
    http_project.makefile(
        ".yaml",
        rag_set='evaluators: [faithfulness]\nquestions: [{id: q, query: "Where is Paris?"}]',
    )
    return http_project


SCRIPTED_JUDGE = """
import pytest
from fakes import ScriptedLLM


@pytest.fixture(scope="session")
def rag_judge_llm():
    return ScriptedLLM()
"""


@pytest.fixture
def scripted_judge(project: pytest.Pytester) -> Callable[[str], pytest.Pytester]:
    """Writes the project's conftest.py: the scripted judge, plus the fixtures (engines)
    in the source given."""

    def write(source: str) -> pytest.Pytester:
        project.makeconftest(SCRIPTED_JUDGE + "\n" + textwrap.dedent(source))
        return project

    return write


# Tests that start whole pytest runs of their own (several with xdist workers) take tens
# of seconds each on 2 cores. Started last, as the file order had them, one of them ends
# the suite on one xdist worker while the other idles; started first, longest first, and
# handed out one at a time, they share the workers (the longest-processing-time rule).
SLOWEST_FIRST = (
    "tests/test_ci_recipe_sharded.py::",
    "tests/test_xdist.py::test_each_question_is_judged_once_whatever_the_dist_mode",
    "tests/test_ci_recipe.py::",
    "tests/test_baseline.py::test_the_drop_gate_under_xdist",
    "tests/test_interrupts.py::test_a_ci_cancel_keeps_every_result_and_writes_every_report",
    "tests/test_sequential_gate.py::test_sequential_sets_run_under_xdist",
    "tests/test_cache_faults.py::test_a_killed_run_keeps_the_verdicts",
    "tests/test_cache_faults.py::test_a_cache_the_user_cannot_write",
    "tests/test_first_contact.py::",
    "tests/test_generate.py::",
)


def _rank(item: pytest.Item) -> int:
    for rank, prefix in enumerate(SLOWEST_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(SLOWEST_FIRST)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: the others keep their order


def pytest_configure(config: pytest.Config) -> None:
    # xdist's default sends each worker a quarter of its share at once, consecutive
    # tests: the slow ones above would all land on the first worker
    if getattr(config.option, "maxschedchunk", 0) is None:
        config.option.maxschedchunk = 1
