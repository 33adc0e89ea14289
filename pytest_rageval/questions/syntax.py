"""Reading a question file's text as YAML or JSON: each mapping with its line, a key given
twice refused, alias bombs and endless nesting refused, every error naming the line."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from pytest_rageval.questions.model import QuestionFileError
from pytest_rageval.text import quoted


def read_text(path: Path, name: str, what: str) -> str:
    """A file's text (UTF-8, a BOM allowed); QuestionFileError naming ``name`` otherwise."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise QuestionFileError(f"{name}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionFileError(f"{name}: cannot read the file as UTF-8 text: {exc}") from None


LINE_KEY = "__line__"


QUOTE_HINT = (
    " (a value that contains ': ' must be quoted, e.g. query: \"Refunds: how long do they take?\")"
)
"""Added to YAML's "mapping values are not allowed here" (libyaml: "... in this context"),
which an unquoted colon in a value causes."""

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
            + (QUOTE_HINT if str(exc.problem).startswith("mapping values are not allowed") else "")
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
