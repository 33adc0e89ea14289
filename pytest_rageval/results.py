"""What the runner learned about a question, and its errors: plain data any module may
import (the runner, verdicts, the session, reports) without importing the runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_rageval.questions import Question
from pytest_rageval.text import well_formed


class TaskTimeout(TimeoutError):
    """A query or evaluation that did not finish within the runner's per-task timeout."""


class GaveUp(Exception):
    """A transient failure that outlasted the retries; the message says what happened in
    words (``rate limited by http://host/v1 (429) after 4 attempts over 38 s``)."""


@dataclass(slots=True)
class QuestionResult:
    """What the runner learned about one question. Plain data, safe to keep after the run.

    ``evaluations`` holds the llama-index ``EvaluationResult`` of every evaluator that
    returned one; ``errors`` maps ``"query"`` or an evaluator name to a message.
    ``contexts`` is None when the app returned a plain string (no contexts at all).
    """

    question: Question
    response: str | None = None
    contexts: list[str] | None = field(default_factory=list)
    evaluations: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    applicable: tuple[str, ...] = ()
    """The metrics that apply to this question, in evaluator order."""
    skipped: tuple[str, ...] = ()
    """Metrics that do not apply to this question (e.g. correctness without a reference)."""
    exceptions: dict[str, BaseException] = field(default_factory=dict, repr=False)
    """The exception behind each error (with the app's or judge's traceback)."""
    evaluated: bool = True
    """False when the run stopped (deadline, interrupt, -x) before this question finished."""
    votes: dict[str, list[Any]] = field(default_factory=dict)
    """With ``repeat`` > 1: each evaluator's votes cast, in order (``evaluations`` holds
    vote 1); fewer than ``repeat`` when the first ones decided the majority."""
    repeat: int = 1
    """The votes asked of each evaluator."""
    sources: list[list[str]] | None = None
    """Each retrieved node's ids (document id, file name); None without nodes."""

    @property
    def error(self) -> str | None:
        """The first error, with where it happened, or None."""
        for where, message in self.errors.items():
            exc = self.exceptions.get(where)
            if exc is not None and not isinstance(exc, GaveUp):
                return f"{error_source(where)} raised {message}"
            return f"{error_source(where)}: {message}"
        return None


def error_source(where: str) -> str:
    """``query engine`` or ``evaluator 'faithfulness'``: who an error belongs to."""
    return "query engine" if where == "query" else f"evaluator {where!r}"


def describe(exc: BaseException) -> str:
    """What went wrong, for reports: the words of a :class:`GaveUp`, ``"Type: message"``
    for anything else."""
    text = well_formed(str(exc).strip())
    if isinstance(exc, GaveUp):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
