"""The pytest entry point: options, markers, hooks and fixtures, wired and nothing more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_rageval import (
    callphase,
    collect,
    hints,
    judgeline,
    options,
    shards,
    tolerated,
    xdist,
)
from pytest_rageval.fixtures import (  # noqa: F401 - fixtures are found by their names here
    rag_embed_model,
    rag_evaluators,
    rag_judge_llm,
    rag_query_engine,
    rag_result,
    rag_runner,
)
from pytest_rageval.keys import SETTINGS_KEY
from pytest_rageval.questions import Question
from pytest_rageval.session import RagSession
from pytest_rageval.text import printable
from pytest_rageval.wiring import SESSION_KEY


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)
    shards.add_options(parser)


ASYNCIO_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Give pytest-asyncio's fixture loop scope a default: unset, pytest-asyncio warns on
    every run (and ``-W error`` ends in an INTERNALERROR) in a project that never wrote
    an async fixture. ``function`` is the default pytest-asyncio announces; an ini file's
    own setting still wins. By now every installed plugin has added its options, so this
    redefinition comes after pytest-asyncio's own."""
    del args
    if early_config.pluginmanager.hasplugin("asyncio"):
        parser.addini(
            ASYNCIO_LOOP_SCOPE,
            type="string",
            help="default scope of the asyncio event loop used to execute async fixtures "
            "(pytest-rageval's default: function)",
            default="function",
        )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_rageval import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("rag_cache_info", False):
        return None
    from pytest_rageval.cache import VerdictCache

    info = VerdictCache(options.cache_dir(config), "readonly").info()
    if info["problem"] is not None:
        print(f"rag verdict cache: {info['path']} {info['problem']}")
        return 1
    print(
        f"rag verdict cache: {info['path']}: {info['verdicts']} verdicts, "
        f"{info['bytes'] / 1024:.1f} KiB"
    )
    return 0


def pytest_configure(config: pytest.Config) -> None:
    collect.forget_sightings()
    options.add_markers(config)
    settings = shards.configure(config, options.resolve_settings(config))
    config.stash[SETTINGS_KEY] = settings
    session = RagSession(config, settings)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "rageval-session")
    xdist.register(config, session)


def pytest_report_header(config: pytest.Config) -> str:
    settings = config.stash[SETTINGS_KEY]
    parts = [
        f"workers={settings.workers}",
        f"timeout={settings.timeout:g}s",
        f"retries={settings.retries}",
    ]
    if settings.query_retries:
        parts.append(f"query retries={settings.query_retries}")
    if settings.rpm is not None:
        parts.append(f"rpm={settings.rpm:g}")
    if settings.deadline is not None:
        parts.append(f"deadline={settings.deadline:g}s")
    parts.append(f"judge={settings.judge}")
    return "rageval: " + ", ".join(parts)


def pytest_report_collectionfinish(
    config: pytest.Config, items: list[pytest.Item]
) -> str | list[str]:
    said = judgeline.line(config.stash[SETTINGS_KEY].judge, items)
    return [] if said is None else said


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> pytest.TestReport | None:
    return callphase.unsampled_report(item, call)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if collect.matches(file_path, parent.config.stash[SETTINGS_KEY].files):
        return collect.RagFile.from_parent(parent, path=file_path)
    hints.passed_over(parent.config, file_path)
    return None


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        for line in hints.lines(config):
            terminalreporter.write_line(line, yellow=True)
    tolerated.summary(terminalreporter)


def pytest_make_parametrize_id(config: pytest.Config, val: Any, argname: str) -> str | None:
    if isinstance(val, Question):
        return printable(val.id)
    return None
