"""Loading a question file: YAML, JSON, JSONL, CSV and llama-index labelled datasets, into
a :class:`~pytest_rageval.questions.model.QuestionFile` (no pytest here)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from pytest_rageval.questions.fields import (
    _file_evaluators,
    _file_gate,
    _question,
    _unique,
    did_you_mean,
)
from pytest_rageval.questions.model import (
    DEFAULT_QUERY_ENGINE,
    Question,
    QuestionFile,
    QuestionFileError,
)
from pytest_rageval.questions.syntax import LINE_KEY, _json, _parse_json, parse_yaml, read_text
from pytest_rageval.text import quoted
from pytest_rageval.thresholds import GATE_OPTIONS, Layer

FILE_KEYS = ("questions", "thresholds", *GATE_OPTIONS, "evaluators", "query_engine")
CSV_COLUMNS = ("id", "query", "reference", "expected_sources", "pattern", "must_pass", "tags")
SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".csv")


NOT_A_QUESTION_FILE = (
    "; if {name} is not a question file, narrow the ini option rag_files (default: "
    "rag_*.yaml rag_*.yml rag_*.json rag_*.jsonl rag_*.csv) so that it does not match it, "
    "e.g. rag_files = rag_questions*.yaml"
)


def is_question_file(path: Path) -> bool:
    return path.suffix.lower() in SUFFIXES


def load_file(path: Path, display: str | None = None) -> QuestionFile:
    """Load any supported question file. ``display`` is how messages name it."""
    __tracebackhide__ = True
    name = display or str(path)
    suffix = path.suffix.lower()
    text = read_text(path, name, "question file")
    if suffix in (".yaml", ".yml"):
        return _from_document(path, name, parse_yaml(text, name))
    if suffix == ".json":
        return _from_document(path, name, _parse_json(text, name))
    if suffix == ".jsonl":
        return _from_jsonl(path, name, text)
    if suffix == ".csv":
        return _from_csv(path, name, text)
    raise QuestionFileError(
        f"{name}: unsupported file type {quoted(suffix)}; use one of {', '.join(SUFFIXES)}"
    )


def _from_document(path: Path, name: str, data: Any) -> QuestionFile:
    if not isinstance(data, dict):
        raise QuestionFileError(
            f"{name}: expected a mapping with a 'questions' list at the top level "
            f"(or a llama-index LabelledRagDataset with 'examples'), got {type(data).__name__}"
            + NOT_A_QUESTION_FILE.format(name=name)
        )
    data.pop(LINE_KEY, None)
    if "examples" in data and "questions" not in data:
        return _from_labelled_dataset(path, name, data)
    unknown = [key for key in data if key not in FILE_KEYS]
    if unknown:
        hint = NOT_A_QUESTION_FILE.format(name=name) if "questions" not in data else ""
        raise QuestionFileError(
            f"{name}: unknown top-level key {quoted(unknown[0])}; allowed keys: "
            f"{', '.join(FILE_KEYS)}{did_you_mean(unknown[0], FILE_KEYS)}" + hint
        )
    raw_questions = data.get("questions")
    if not isinstance(raw_questions, list) or not raw_questions:
        raise QuestionFileError(
            f"{name}: 'questions' must be a non-empty list of questions "
            "(each a mapping with at least a 'query')"
        )
    gate = _file_gate(name, data)
    if "calibration" in gate.options:  # relative to the file that names it
        labels = path.parent / gate.options["calibration"]
        gate = replace(gate, options={**gate.options, "calibration": str(labels)})
    evaluators, options = _file_evaluators(name, data.get("evaluators"))
    engine = data.get("query_engine", DEFAULT_QUERY_ENGINE)
    if not isinstance(engine, str) or not engine.isidentifier():
        raise QuestionFileError(
            f"{name}: 'query_engine' must be the name of a fixture (an identifier), got "
            f"{quoted(engine)}"
        )
    questions = [
        _question(name, raw, index, gate=gate, source=name)
        for index, raw in enumerate(raw_questions)
    ]
    return QuestionFile(path, _unique(name, questions), gate, evaluators, engine, options)


def _from_labelled_dataset(path: Path, name: str, data: dict[str, Any]) -> QuestionFile:
    examples = data["examples"]
    if not isinstance(examples, list) or not examples:
        raise QuestionFileError(f"{name}: 'examples' must be a non-empty list")
    questions = []
    for index, example in enumerate(examples):
        if not isinstance(example, dict):
            raise QuestionFileError(f"{name}: example {index + 1} must be a mapping")
        line = example.pop(LINE_KEY, None)
        raw = {
            "query": example.get("query"),
            "reference": example.get("reference_answer"),
            "contexts": example.get("reference_contexts"),
        }
        if line is not None:
            raw[LINE_KEY] = line
        questions.append(_question(name, raw, index, gate=Layer(), source=name))
    return QuestionFile(path, _unique(name, questions))


def _from_jsonl(path: Path, name: str, text: str) -> QuestionFile:
    questions: list[tuple[Question, bool]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = _json(line, f"{name}:{number}")
        except json.JSONDecodeError as exc:
            raise QuestionFileError(
                f"{name}:{number}: not valid JSON: {exc.msg}; each line must be one JSON object"
            ) from None
        if isinstance(raw, dict):
            raw[LINE_KEY] = number
        questions.append(_question(name, raw, len(questions), gate=Layer(), source=name))
    if not questions:
        raise QuestionFileError(f"{name}: no questions; write one JSON object per line")
    return QuestionFile(path, _unique(name, questions))


def _from_csv(path: Path, name: str, text: str) -> QuestionFile:
    reader = csv.DictReader(text.splitlines())
    try:
        return _csv_rows(path, name, reader)
    except csv.Error as exc:
        line = reader.reader.line_num  # the line it stopped on (DictReader's lags a row)
        if "field larger than field limit" in str(exc):
            raise QuestionFileError(
                f"{name}:{line}: a value is longer than the CSV reader takes "
                f"({csv.field_size_limit():,} characters); shorten it, or write this set as "
                "YAML or JSONL"
            ) from None
        raise QuestionFileError(f"{name}:{line}: not valid CSV: {exc}") from None


def _csv_rows(path: Path, name: str, reader: csv.DictReader[str]) -> QuestionFile:
    columns = [column.strip() for column in reader.fieldnames or []]
    if "query" not in columns:
        raise QuestionFileError(
            f"{name}:1: the header row must have a 'query' column "
            f"(optional: {', '.join(c for c in CSV_COLUMNS if c != 'query')}), "
            f"got {quoted(columns)}"
        )
    unknown = [column for column in columns if column not in CSV_COLUMNS]
    if unknown:
        raise QuestionFileError(
            f"{name}:1: unknown column {quoted(unknown[0])}; allowed columns: "
            f"{', '.join(CSV_COLUMNS)}{did_you_mean(unknown[0], CSV_COLUMNS)}"
        )
    twice = next((column for n, column in enumerate(columns) if column in columns[:n]), None)
    if twice is not None:
        raise QuestionFileError(
            f"{name}:1: the column {quoted(twice)} is given twice in the header row, and "
            "only its last value would be kept; remove or rename one of them"
        )
    questions: list[tuple[Question, bool]] = []
    for row in reader:
        raw: dict[str, Any] = {}
        for key, value in row.items():
            if key is None or value is None:
                raise QuestionFileError(
                    f"{name}:{reader.line_num}: this row has a different number of fields "
                    "than the header; quote values that contain commas"
                )
            value = value.strip()
            key = key.strip()
            if key == "must_pass":
                raw[key] = _csv_bool(name, reader.line_num, value)
            elif key in ("tags", "expected_sources"):
                items = [item.strip() for item in value.split(";") if item.strip()]
                if items or key == "tags":
                    raw[key] = items
            elif value:
                raw[key] = value
        raw[LINE_KEY] = reader.line_num
        questions.append(_question(name, raw, len(questions), gate=Layer(), source=name))
    if not questions:
        raise QuestionFileError(f"{name}: no questions below the header row")
    return QuestionFile(path, _unique(name, questions))


def _csv_bool(name: str, line: int, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("", "false", "no", "0"):
        return False
    if lowered in ("true", "yes", "1"):
        return True
    raise QuestionFileError(f"{name}:{line}: must_pass must be true or false, got {quoted(value)}")
