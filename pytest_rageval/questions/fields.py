"""Checking what a question file gives: each question's keys and values, unique ids, the
file's thresholds and its evaluators. Every error names the file, the line and the fix."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pytest_rageval.questions.model import Question, QuestionFileError
from pytest_rageval.questions.syntax import LINE_KEY
from pytest_rageval.text import quoted, well_formed
from pytest_rageval.thresholds import GATE_OPTIONS, Layer, ThresholdError, check_layer

QUESTION_KEYS = (
    "id",
    "query",
    "reference",
    "contexts",
    "expected_sources",
    "pattern",
    "must_pass",
    "tags",
    "labels",
    "labelled_response_sha256",
)
KEY_ALIASES = {
    "question": "query",
    "prompt": "query",
    "answer": "reference",
    "expected_answer": "reference",
    "ground_truth": "reference",
    "sources": "expected_sources",
    "regex": "pattern",
}
"""Keys other tools use for ours: suggested when one is given (difflib catches typos)."""


def did_you_mean(key: object, allowed: Sequence[str]) -> str:
    """``; did you mean 'query'?`` for an unknown key close to (or another tool's name for)
    an allowed one; empty when none is."""
    if not isinstance(key, str):
        return ""
    found = KEY_ALIASES.get(key.strip().lower())
    if found not in allowed:
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        found = close[0] if close else None
    return f"; did you mean {quoted(found)}?" if found else ""


def _question(
    name: str, raw: object, index: int, *, gate: Layer, source: str
) -> tuple[Question, bool]:
    """Validate one raw question; also say whether its id was given explicitly."""
    if not isinstance(raw, dict):
        raise QuestionFileError(
            f"{name}: question {index + 1} must be a mapping with a 'query', got {quoted(raw)}"
        )
    line = raw.pop(LINE_KEY, None)
    where = f"{name}:{line}" if line else f"{name}: question {index + 1}"
    unknown = [key for key in raw if key not in QUESTION_KEYS]
    if unknown:
        raise QuestionFileError(
            f"{where}: unknown key {quoted(unknown[0])}; allowed keys: "
            f"{', '.join(QUESTION_KEYS)}{did_you_mean(unknown[0], QUESTION_KEYS)}"
        )
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise QuestionFileError(f"{where}: 'query' is required and must be a non-empty string")
    qid = _question_id(where, raw.get("id"))
    reference = raw.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise QuestionFileError(f"{where}: 'reference' must be a string, got {quoted(reference)}")
    contexts, tags, sources = _lists(where, raw)
    must_pass = raw.get("must_pass", False)
    if not isinstance(must_pass, bool):
        raise QuestionFileError(
            f"{where}: 'must_pass' must be true or false, got {quoted(must_pass)}"
        )
    question = Question(
        query=query,
        id=qid,
        reference=reference,
        contexts=tuple(contexts) if contexts is not None else None,
        must_pass=must_pass,
        tags=tuple(tags),
        expected_sources=tuple(s.strip() for s in sources) if sources is not None else None,
        pattern=_pattern(where, raw.get("pattern")),
        **_labels(where, raw),
        source=source,
        line=line,
        file_gate=gate,
    )
    return question, bool(qid)


def _labels(where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A question's ``labels`` (metric: true/false) and the hash of the answer they judge."""
    labels, digest = raw.get("labels"), raw.get("labelled_response_sha256")
    if labels is None and digest is None:
        return {}
    if isinstance(labels, Mapping):
        labels = {k: v for k, v in labels.items() if k != LINE_KEY}
    if (
        not isinstance(labels, dict)
        or not labels
        or not all(isinstance(k, str) and isinstance(v, bool) for k, v in labels.items())
    ):
        raise QuestionFileError(
            f"{where}: 'labels' must map metric names to true or false "
            f"(e.g. {{faithfulness: true}}), got {quoted(labels)}"
        )
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest.strip().lower()):
        raise QuestionFileError(
            f"{where}: 'labels' need 'labelled_response_sha256': the SHA-256 (64 hex digits) "
            "of the UTF-8 answer the labels judge, got " + quoted(digest)
        )
    return {
        "labels": tuple(labels.items()),
        "labelled_response_sha256": digest.strip().lower(),
    }


def _question_id(where: str, qid: object) -> str:
    """A question's explicit id, checked ("" when none is given)."""
    if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
        raise QuestionFileError(f"{where}: 'id' must be a string, got {quoted(qid)}")
    # half an emoji becomes U+FFFD, as everywhere text enters; a control character is
    # refused, since no replacement would keep the id the user meant
    text = well_formed(str(qid).strip()) if qid is not None else ""
    control = next((c for c in text if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise QuestionFileError(
            f"{where}: 'id' {quoted(text)} contains the control character "
            f"U+{ord(control):04X}, which a terminal would act on or hide (the id is printed "
            "in the test id and in messages); remove it"
        )
    if text and not re.fullmatch(r"[^\s\[\]:/]+", text):
        raise QuestionFileError(
            f"{where}: 'id' {quoted(text)} may not contain spaces, brackets, ':' or '/' "
            "(it becomes part of the test's node id)"
        )
    return text


def _lists(where: str, raw: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """A question's ``contexts``, ``tags`` and ``expected_sources``, checked."""
    contexts = raw.get("contexts")
    if contexts is not None and (
        not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts)
    ):
        raise QuestionFileError(f"{where}: 'contexts' must be a list of strings")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise QuestionFileError(f"{where}: 'tags' must be a list of strings")
    sources = raw.get("expected_sources")
    if sources is not None and (
        not isinstance(sources, list)
        or not sources
        or not all(isinstance(s, str) and s.strip() for s in sources)
    ):
        raise QuestionFileError(
            f"{where}: 'expected_sources' must be a non-empty list of document ids or file "
            "names, e.g. [refunds.md]"
        )
    return contexts, tags, sources


def _pattern(where: str, pattern: object) -> str | None:
    """A question's ``pattern``, compiled once to check it."""
    if pattern is None:
        return None
    if not isinstance(pattern, str) or not pattern:
        raise QuestionFileError(f"{where}: 'pattern' must be a regular expression (a string)")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise QuestionFileError(
            f"{where}: 'pattern' {quoted(pattern)} is not a valid regular expression: {exc}"
        ) from None
    return pattern


def _unique(name: str, questions: list[tuple[Question, bool]]) -> list[Question]:
    """Explicit ids must be unique; ids made from queries get ``-2``, ``-3``... on collision."""
    first: dict[str, Question] = {}
    for question, explicit in questions:
        if not explicit:
            continue
        if question.id in first:
            raise QuestionFileError(
                f"{question.where}: duplicate question id {quoted(question.id)} "
                f"(first used at {first[question.id].where}); ids must be unique within {name}"
            )
        first[question.id] = question
    taken = set(first)
    result = []
    for question, explicit in questions:
        if not explicit:
            qid, n = question.id, 2
            while qid in taken:
                qid, n = f"{question.id}-{n}", n + 1
            taken.add(qid)
            question = replace(question, id=qid)
        result.append(question)
    return result


def _file_gate(name: str, data: Mapping[str, Any]) -> Layer:
    """The file's ``thresholds`` and gate options (``max_invalid``), validated."""
    value = data.get("thresholds")
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise QuestionFileError(
            f"{name}: 'thresholds' must map metric names to minimum pass rates, "
            "e.g. {faithfulness: 0.9}"
        )
    line = value.pop(LINE_KEY, None)
    misplaced = [key for key in value if key in GATE_OPTIONS]
    if misplaced:
        raise QuestionFileError(
            f"{name}{f':{line}' if line else ''}: {quoted(misplaced[0])} is not a metric; write it "
            f"at the top level of the file, beside 'thresholds'"
        )
    values = dict(value)
    values.update({key: data[key] for key in GATE_OPTIONS if key in data})
    try:
        return check_layer(values, f"{name}:{line}" if line else name)
    except ThresholdError as exc:
        raise QuestionFileError(str(exc)) from None


def _file_evaluators(
    name: str, value: object
) -> tuple[tuple[str, ...] | None, dict[str, dict[str, Any]]]:
    """The names a file's ``evaluators`` list gives, and the options given with them: an
    entry is a name, or a one-key mapping of a name to its options."""
    if value is None:
        return None, {}
    example = "e.g. [faithfulness, exact_match, {numeric: {tolerance: 0.5}}]"
    if not isinstance(value, Sequence) or isinstance(value, str) or not value:
        raise QuestionFileError(
            f"{name}: 'evaluators' must be a non-empty list of evaluator names, {example}"
        )
    names: list[str] = []
    options: dict[str, dict[str, Any]] = {}
    for entry in value:
        if isinstance(entry, dict):
            line = entry.pop(LINE_KEY, None)
            where = f"{name}:{line}" if line else name
            given = next(iter(entry.values()), None) if len(entry) == 1 else None
            if not isinstance(given, dict) or not all(isinstance(k, str) for k in given):
                raise QuestionFileError(
                    f"{where}: an 'evaluators' entry with options must map one evaluator name "
                    f"to its options, {example}"
                )
            given.pop(LINE_KEY, None)
            entry_name = next(iter(entry))
            options[entry_name] = given
        elif isinstance(entry, str):
            entry_name = entry
        else:
            raise QuestionFileError(
                f"{name}: 'evaluators' must list evaluator names (strings), {example}"
            )
        if entry_name in names:
            raise QuestionFileError(f"{name}: 'evaluators' names {quoted(entry_name)} twice")
        names.append(entry_name)
    return tuple(names), options
