"""Loading question sets from YAML, JSON, JSONL, CSV and llama-index datasets (no pytest here)."""

from __future__ import annotations

import csv
import functools
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_rageval.text import quoted, slug, well_formed
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
)
FILE_KEYS = ("questions", "thresholds", *GATE_OPTIONS, "evaluators", "query_engine")
CSV_COLUMNS = ("id", "query", "reference", "expected_sources", "pattern", "must_pass", "tags")
DEFAULT_QUERY_ENGINE = "rag_query_engine"
SUFFIXES = (".yaml", ".yml", ".json", ".jsonl", ".csv")


NOT_A_QUESTION_FILE = (
    "; if {name} is not a question file, narrow the ini option rag_files (default: "
    "rag_*.yaml rag_*.yml rag_*.json rag_*.jsonl rag_*.csv) so that it does not match it, "
    "e.g. rag_files = rag_questions*.yaml"
)


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


# -- parsing -------------------------------------------------------------------------------


def read_text(path: Path, name: str, what: str) -> str:
    """A file's text (UTF-8, a BOM allowed); QuestionFileError naming ``name`` otherwise."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise QuestionFileError(f"{name}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"{name}: cannot read the file as UTF-8 text: {exc}") from None


LINE_KEY = "__line__"


ALIAS_LIMIT = 10_000_000
"""How many characters (and values) YAML aliases may add to a file when written out in
full: beyond it the file is an "alias bomb" (a few hundred bytes that expand to
gigabytes), refused before anything is built from it."""


class _DuplicateKey(Exception):
    def __init__(self, key: object, first: int, line: int) -> None:
        super().__init__(key, first, line)
        self.key, self.first, self.line = key, first, line


def parse_yaml(text: str, name: str) -> Any:
    """YAML as data, each mapping with its line under ``LINE_KEY``; QuestionFileError
    naming the line when the syntax is wrong, a key is given twice in one mapping, or
    aliases expand beyond ``ALIAS_LIMIT``."""
    import yaml

    loader = _line_loader()(text)  # a safe loader (see below)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, name, len(text) + ALIAS_LIMIT)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise QuestionFileError(
            f"{name}{line}: not valid YAML: {exc.problem or exc}; fix the syntax at that line"
        ) from None
    except yaml.YAMLError as exc:
        raise QuestionFileError(f"{name}: not valid YAML: {exc}") from None
    except _DuplicateKey as exc:
        raise QuestionFileError(
            f"{name}:{exc.line}: the key {quoted(exc.key)} is given twice in one mapping "
            f"(first at line {exc.first}), and YAML would keep only the last value; remove "
            "or rename one of them"
        ) from None
    except RecursionError:
        raise QuestionFileError(_too_deep(name, "lists or mappings")) from None
    finally:
        loader.dispose()


def _too_deep(where: str, kinds: str) -> str:
    """The message for a file whose values are nested deeper than Python recurses."""
    return (
        f"{where}: {kinds} are nested too deeply to read (hundreds of levels inside each "
        "other); a question file needs a few"
    )


def _check_aliases(root: Any, name: str, limit: int) -> None:
    """QuestionFileError when the document, its aliases written out in full, is longer
    than ``limit`` (its scalars' characters and one for each value), or when an alias
    refers to a value that contains it. Counted on the composed nodes, each once."""
    import yaml

    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1 + len(node.value)
            continue
        children = (
            [part for pair in node.value for part in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
        )
        if done:
            open_.discard(key)
            sizes[key] = size = 1 + sum(sizes[id(child)] for child in children)
            if size > limit:
                raise QuestionFileError(
                    f"{name}:{node.start_mark.line + 1}: this value, its YAML aliases (*name) "
                    f"written out, is longer than {limit:,} characters: refused as an alias "
                    "bomb; write the values out, or repeat them less"
                )
            continue
        if key in sizes:
            continue
        if key in open_:  # on the path here: an alias to a value it is part of
            raise QuestionFileError(
                f"{name}:{node.start_mark.line + 1}: a YAML alias (*name) refers to this "
                "value from inside it, which makes it endless; write the value out"
            )
        open_.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


@functools.cache
def _line_loader() -> type:
    """PyYAML's safe loader, on libyaml's C parser when PyYAML was built with it (several
    times faster on big files), that records each mapping's line for messages and refuses
    a key given twice in one mapping."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class LineLoader(base):  # type: ignore[misc,valid-type]
        pass

    def construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # keys merged in with << may be overridden: that is what it is for
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise _DuplicateKey(key, lines[key], line)
                lines[key] = line
            except TypeError:
                continue  # an unhashable key: construct_mapping says so
        mapping: dict[Any, Any] = loader.construct_mapping(node, deep=True)
        mapping[LINE_KEY] = node.start_mark.line + 1
        return mapping

    LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return LineLoader


class _DuplicateJSONKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (``json`` would keep the last)."""
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateJSONKey(key)
            seen.add(key)
    return found


def _json(text: str, where: str) -> Any:
    """``json.loads``, with QuestionFileError naming ``where`` for a key given twice in
    one object or nesting too deep to read."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateJSONKey as exc:
        raise QuestionFileError(
            f"{where}: the key {quoted(exc.key)} is given twice in one object, and JSON would "
            "keep only the last value; remove or rename one of them"
        ) from None
    except RecursionError:
        raise QuestionFileError(_too_deep(where, "lists or objects")) from None


def _parse_json(text: str, name: str) -> Any:
    try:
        return _json(text, name)
    except json.JSONDecodeError as exc:
        raise QuestionFileError(
            f"{name}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno}); "
            "fix the syntax at that line"
        ) from None


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
            f"{', '.join(FILE_KEYS)}" + hint
        )
    raw_questions = data.get("questions")
    if not isinstance(raw_questions, list) or not raw_questions:
        raise QuestionFileError(
            f"{name}: 'questions' must be a non-empty list of questions "
            "(each a mapping with at least a 'query')"
        )
    gate = _file_gate(name, data)
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
            f"{', '.join(CSV_COLUMNS)}"
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


# -- validation ----------------------------------------------------------------------------


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
            f"{where}: unknown key {quoted(unknown[0])}; allowed keys: {', '.join(QUESTION_KEYS)}"
        )
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise QuestionFileError(f"{where}: 'query' is required and must be a non-empty string")
    qid = raw.get("id")
    if qid is not None and (isinstance(qid, bool) or not isinstance(qid, (str, int))):
        raise QuestionFileError(f"{where}: 'id' must be a string, got {quoted(qid)}")
    # half an emoji becomes U+FFFD, as everywhere text enters; a control character is
    # refused, since no replacement would keep the id the user meant
    qid = well_formed(str(qid).strip()) if qid is not None else ""
    control = next((c for c in qid if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise QuestionFileError(
            f"{where}: 'id' {quoted(qid)} contains the control character U+{ord(control):04X}, "
            "which a terminal would act on or hide (the id is printed in the test id and in "
            "messages); remove it"
        )
    if qid and not re.fullmatch(r"[^\s\[\]:/]+", qid):
        raise QuestionFileError(
            f"{where}: 'id' {quoted(qid)} may not contain spaces, brackets, ':' or '/' "
            "(it becomes part of the test's node id)"
        )
    reference = raw.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise QuestionFileError(f"{where}: 'reference' must be a string, got {quoted(reference)}")
    contexts = raw.get("contexts")
    if contexts is not None and (
        not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts)
    ):
        raise QuestionFileError(f"{where}: 'contexts' must be a list of strings")
    must_pass = raw.get("must_pass", False)
    if not isinstance(must_pass, bool):
        raise QuestionFileError(
            f"{where}: 'must_pass' must be true or false, got {quoted(must_pass)}"
        )
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
    pattern = raw.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            raise QuestionFileError(f"{where}: 'pattern' must be a regular expression (a string)")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise QuestionFileError(
                f"{where}: 'pattern' {quoted(pattern)} is not a valid regular expression: {exc}"
            ) from None
    question = Question(
        query=query,
        id=qid,
        reference=reference,
        contexts=tuple(contexts) if contexts is not None else None,
        must_pass=must_pass,
        tags=tuple(tags),
        expected_sources=tuple(s.strip() for s in sources) if sources is not None else None,
        pattern=pattern,
        source=source,
        line=line,
        file_gate=gate,
    )
    return question, bool(qid)


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
