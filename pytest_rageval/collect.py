"""Collecting question set files: one test item per question."""

from __future__ import annotations

import contextlib
import fnmatch
import warnings
from pathlib import Path
from typing import Any

import pytest

from pytest_rageval.gcpause import paused
from pytest_rageval.keys import QUESTION_FILE_KEY, QUESTION_KEY
from pytest_rageval.questions import QuestionFileError, is_question_file, load_file
from pytest_rageval.text import printable
from pytest_rageval.wiring import SESSION_KEY


class RagEvalWarning(pytest.PytestWarning):
    """A pytest-rageval problem that does not stop the run."""


_loaded: dict[Path, tuple[str, int]] = {}
"""Files ``load_questions`` loaded in this run -> where it was called (file, line)."""
_collected: dict[Path, str] = {}
"""Files collected as question sets in this run -> their node id."""


def forget_sightings() -> None:
    """A new run (``pytester`` runs many in one process) starts with no files seen."""
    _loaded.clear()
    _collected.clear()


def _twice(nodeid: str, filename: str, line: int) -> RagEvalWarning:
    caller = Path(filename)
    with contextlib.suppress(ValueError):
        caller = caller.relative_to(Path.cwd())
    return RagEvalWarning(
        f"{nodeid} is collected as a question set (its name matches rag_files) and also "
        f"loaded with load_questions() at {caller}:{line}, so every question in it is "
        "asked and judged twice, as two sets; rename the file so that rag_files does not "
        "match it (e.g. support_questions.yaml), or narrow rag_files"
    )


def loaded(path: Path, filename: str, line: int) -> None:
    """Note a file ``load_questions`` loaded; warn (at the call) if it is also collected."""
    key = path.resolve()
    _loaded.setdefault(key, (filename, line))
    if key in _collected:
        warnings.warn_explicit(_twice(_collected[key], filename, line), None, filename, line)


def _collecting(path: Path, nodeid: str) -> None:
    key = path.resolve()
    _collected.setdefault(key, nodeid)
    if key in _loaded:
        warnings.warn(_twice(nodeid, *_loaded[key]), stacklevel=2)


def matches(path: Path, patterns: tuple[str, ...]) -> bool:
    return is_question_file(path) and any(fnmatch.fnmatch(path.name, p) for p in patterns)


def rag_data_question(request: pytest.FixtureRequest) -> None:
    """Ask one question of a data file and judge the answer (a pytest-rageval item)."""
    __tracebackhide__ = True
    request.config.stash[SESSION_KEY].ask(request.node, request)


class RagFile(pytest.File):
    """A question set file; its questions become :class:`RagItem` items."""

    @paused()  # 10,000 questions and their items: many objects, none in a cycle
    def collect(self) -> list[RagItem]:
        question_file = load_file(self.path, display=self.nodeid)
        _collecting(self.path, self.nodeid)
        # every item of a file runs the same function under the same node, so they share
        # one fixture closure (as pytest's own parametrized items do): worked out once
        fixtureinfo = None
        items = []
        for question in question_file.questions:
            item = RagItem.from_parent(
                self,
                name=printable(question.id),
                callobj=rag_data_question,
                fixtureinfo=fixtureinfo,
            )
            fixtureinfo = getattr(item, "_fixtureinfo", None)
            item.stash[QUESTION_KEY] = question
            item.stash[QUESTION_FILE_KEY] = question_file
            items.append(item)
        return items

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, QuestionFileError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class RagItem(pytest.Function):
    """One question of a data file, run as a test function so that fixtures resolve."""

    def reportinfo(self) -> tuple[Path, int | None, str]:
        question = self.stash[QUESTION_KEY]
        return self.path, (question.line - 1 if question.line else None), self.name
