"""A labels file: cases people judged by hand, for ``rageval calibrate`` and the
corrected gate (no pytest here)::

    cases:
      - query: How long do refunds take?
        response: Refunds take 5 days.
        contexts: [Refunds are processed within 5 business days.]
        reference: Within 5 business days.      # optional (correctness, token metrics)
        labels: {faithfulness: true, relevancy: true}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_rageval.questions.model import QuestionFileError
from pytest_rageval.questions.syntax import LINE_KEY, parse_yaml, read_text
from pytest_rageval.text import quoted

CASE_KEYS = ("query", "response", "contexts", "reference", "labels")


class CalibrationError(ValueError):
    """A labels file or evaluators that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Case:
    """One hand-labelled judgement."""

    query: str
    response: str
    contexts: tuple[str, ...] | None
    reference: str | None
    labels: dict[str, bool]
    where: str


def load_labels(path: Path, display: str | None = None) -> list[Case]:
    """The cases of a labels file, validated; CalibrationError names the line and the fix."""
    name = display or str(path)
    try:
        data = parse_yaml(read_text(path, name, "labels file"), name)
    except QuestionFileError as exc:
        raise CalibrationError(str(exc)) from None
    example = "cases: [{query, response, contexts, labels: {faithfulness: true}}]"
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise CalibrationError(
            f"{name}: expected a mapping with a non-empty 'cases' list: {example}"
        )
    cases = []
    for index, raw in enumerate(data["cases"]):
        if not isinstance(raw, dict):
            raise CalibrationError(f"{name}: case {index + 1} must be a mapping: {example}")
        line = raw.pop(LINE_KEY, None)
        where = f"{name}:{line}" if line else f"{name}: case {index + 1}"
        unknown = [key for key in raw if key not in CASE_KEYS]
        if unknown:
            raise CalibrationError(
                f"{where}: unknown key {quoted(unknown[0])}; allowed keys: {', '.join(CASE_KEYS)}"
            )
        for key in ("query", "response"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise CalibrationError(f"{where}: '{key}' is required and must be a string")
        contexts = raw.get("contexts")
        if contexts is not None and (
            not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts)
        ):
            raise CalibrationError(f"{where}: 'contexts' must be a list of strings")
        reference = raw.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise CalibrationError(f"{where}: 'reference' must be a string")
        labels = raw.get("labels")
        if isinstance(labels, dict):
            labels.pop(LINE_KEY, None)
        if not isinstance(labels, dict) or not labels:
            raise CalibrationError(
                f"{where}: 'labels' must map metric names to true (passes) or false, "
                "e.g. {faithfulness: true, relevancy: false}"
            )
        wrong = [metric for metric, value in labels.items() if not isinstance(value, bool)]
        if wrong:
            raise CalibrationError(
                f"{where}: the label of {quoted(wrong[0])} must be true or false, "
                f"got {quoted(labels[wrong[0]])}"
            )
        cases.append(
            Case(
                query=raw["query"],
                response=raw["response"],
                contexts=tuple(contexts) if contexts is not None else None,
                reference=reference,
                labels={str(k): v for k, v in labels.items()},
                where=where,
            )
        )
    return cases
