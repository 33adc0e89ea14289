"""A question and a loaded question file, as the rest of the package sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rageval.text import quoted, slug, well_formed
from pytest_rageval.thresholds import Layer

DEFAULT_QUERY_ENGINE = "rag_query_engine"


class QuestionFileError(ValueError):
    """A question file that cannot be loaded; the message names the file, the line and the fix."""


@dataclass(frozen=True, slots=True)
class Question:
    """One question of a set: what is asked and what it is judged against."""

    query: str
    id: str = ""
    reference: str | None = None
    contexts: tuple[str, ...] | None = None
    must_pass: bool = False
    tags: tuple[str, ...] = ()
    expected_sources: tuple[str, ...] | None = None
    """Document ids or file names retrieval should bring back (the retrieval metrics)."""
    pattern: str | None = None
    """A regular expression the answer should match (the ``regex`` metric)."""
    labels: tuple[tuple[str, bool], ...] = field(default=(), compare=False)
    """A person's verdict per metric on the answer ``labelled_response_sha256`` hashes:
    with enough of them, the set's rate of that metric is PPI++'s (:mod:`.gate.rates`)."""
    labelled_response_sha256: str | None = field(default=None, compare=False)
    """The SHA-256 of the answer (UTF-8) ``labels`` judge; they count only while the app
    still gives that answer."""
    source: str | None = field(default=None, compare=False)
    """The file the question came from, as messages name it."""
    line: int | None = field(default=None, compare=False)
    file_gate: Layer = field(default_factory=Layer, compare=False, repr=False)
    """The thresholds and gate options of the file the question came from."""

    def __post_init__(self) -> None:
        # every question, from a file or from Python, passes here: half an emoji in it
        # ("\ud83d" in JSON) cannot reach a cache key, a judge's request or a report
        for name in ("query", "id", "reference", "pattern"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, well_formed(value))
        for name in ("contexts", "tags", "expected_sources"):
            values = getattr(self, name)
            if isinstance(values, (tuple, list)):
                texts = (well_formed(v) if isinstance(v, str) else v for v in values)
                object.__setattr__(self, name, tuple(texts))
        if not self.id:
            object.__setattr__(self, "id", slugify(self.query))

    @property
    def where(self) -> str:
        """``path:line`` (or just the path) of the question, for messages."""
        if self.source is None:
            return "<python>"
        return f"{self.source}:{self.line}" if self.line else self.source


@dataclass(frozen=True)
class QuestionFile:
    """A loaded data file: its questions and the settings it carries."""

    path: Path
    questions: list[Question]
    gate: Layer = field(default_factory=Layer)
    evaluators: tuple[str, ...] | None = None
    query_engine: str = DEFAULT_QUERY_ENGINE
    evaluator_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Options of the built-in evaluators the file names (``{numeric: {tolerance: 0.5}}``)."""


def as_question(value: object) -> Question:
    """Accept a :class:`Question` or a plain query string."""
    if isinstance(value, Question):
        return value
    if isinstance(value, str) and value.strip():
        return Question(query=value)
    raise TypeError(
        "rag_question must be a pytest_rageval.Question or a non-empty query string, got "
        + quoted(value)
    )


def slugify(text: str, limit: int = 60) -> str:
    """A readable test id from a query: its words, in any script, joined by dashes
    (``text.slug``); ``question`` when it has no letters or digits at all."""
    return slug(text, limit) or "question"
