"""Typed stash keys: all per-run state lives in ``config.stash`` and ``item.stash``.

The modules below the session read these; the session object's own key lives in
:mod:`pytest_rageval.wiring`, above the session, so that no key here names a type from a
layer above it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_rageval.questions import Question, QuestionFile
    from pytest_rageval.settings import Settings
    from pytest_rageval.verdicts import QuestionRecord

SETTINGS_KEY: pytest.StashKey[Settings] = pytest.StashKey()
QUESTION_KEY: pytest.StashKey[Question] = pytest.StashKey()
"""The question of a data-file item, or of a Python test parametrized with rag_question."""
QUESTION_FILE_KEY: pytest.StashKey[QuestionFile] = pytest.StashKey()
PROBLEM_KEY: pytest.StashKey[str] = pytest.StashKey()
"""Why an item could not be evaluated (no query engine, no judge key...); fails its call."""
RECORD_KEY: pytest.StashKey[QuestionRecord] = pytest.StashKey()
"""The JSON-safe record of an item's question once judged; copied onto its call report."""
DEFERRED_KEY: pytest.StashKey[bool] = pytest.StashKey()
"""Set on a shard (``--rag-shard``): its sets' gates are decided by ``rageval merge``, so
a question its set's rates would decide is recorded as ``judged``, and the shard writes
a partial report instead of the run's reports."""
