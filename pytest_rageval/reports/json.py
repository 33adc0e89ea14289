"""The ``--rag-report`` JSON document and atomic file writing (no pytest here)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from pytest_rageval.baseline import Baseline
from pytest_rageval.gate import run_passed
from pytest_rageval.reports.summary import SetSummary, changes_of, error_causes
from pytest_rageval.text import clip, well_formed

REPORT_VERSION = 1


def json_report(
    summaries: Iterable[SetSummary], text: str = "full", baseline: Baseline | None = None
) -> dict[str, Any]:
    """The ``--rag-report`` document (its schema is in the README). ``text`` is how much
    of each response and context it keeps: ``full``, ``truncate`` or ``none``."""
    summaries = list(summaries)
    changes = changes_of(summaries, baseline) if baseline is not None else {}
    sets = []
    for summary in summaries:
        entry: dict[str, Any] = {
            "id": summary.name,
            "metrics": {
                name: {
                    **rate.to_json(),
                    "detectable_drop": _rounded(summary.detectable(name)),
                    "verdict": verdict,
                    # the row's own verdict, never a part of it: True exactly when no
                    # question fails the run through this set and metric
                    "ok": verdict == "ok",
                }
                for (name, rate), verdict in zip(
                    summary.rates.items(), summary.verdicts().values(), strict=True
                )
            },
            "questions": [limit_text(q, text) for q in summary.questions],
        }
        if summary.sampling is not None:
            entry["sample"] = summary.sampling.to_json()
        if summary.name in changes:
            entry["baseline"] = changes[summary.name].to_json()
            entry["baseline"]["responses"] = {
                qid: _limit_response(response, text)
                for qid, response in entry["baseline"]["responses"].items()
            }
        sets.append(entry)
    document: dict[str, Any] = {"version": REPORT_VERSION, "sets": sets}
    document["baseline"] = baseline.path if baseline is not None else None
    document["errors"] = dict(error_causes(summaries).most_common())
    return document


def gate_passed(document: Mapping[str, Any]) -> bool:
    """Whether every set and metric of a report is ``ok`` and the run was complete: the
    rag gate's result, as every format shows it."""
    verdicts = [m["verdict"] for s in document.get("sets", []) for m in s["metrics"].values()]
    return run_passed(verdicts, document.get("complete", True))


def gate(document: Mapping[str, Any], exitstatus: int | None) -> dict[str, Any]:
    """The report's top-level ``gate``: whether the rag gate passed, and the exit status
    of the pytest run that wrote it (None where no run did, as in ``rageval report``)."""
    return {"passed": gate_passed(document), "exitstatus": exitstatus}


DIGITS = 12
"""Derived numbers (deltas, bounds) are rounded to this many decimals: a difference of
two rates is exact to far fewer, and ``-0.09999999999999998`` reads as noise."""


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def _limit_response(response: str | None, mode: str) -> str | None:
    return None if mode == "none" else response if mode == "full" else clip(response)


def limit_text(record: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """A question's record as a report keeps it: ``text`` ``full``, ``truncate`` or
    ``none`` of its response and contexts (a shard's part keeps them the same way)."""
    if mode == "full":
        return dict(record)
    limited = dict(record)
    if mode == "none":
        limited["response"] = None
        limited["contexts"] = None
        return limited
    limited["response"] = clip(record["response"])
    if record["contexts"] is not None:
        limited["contexts"] = [clip(context) for context in record["contexts"]]
    return limited


_string = json.encoder.encode_basestring  # as json.dumps(ensure_ascii=False) writes one
_FLUSH = 1 << 14
"""Pieces held before they are written out: a report is streamed, never held whole."""


def encode(value: Any, write: Callable[[str], object]) -> None:
    """Pass ``value``'s strict JSON text to ``write`` piece by piece: the text
    ``json.dumps(value, indent=2, ensure_ascii=False)`` gives, with every non-finite
    float as null (and every key as ``str(key)``), as valid Unicode. It is written here
    rather than by :mod:`json` because ``indent`` turns off json's C encoder: its Python
    one took 7 s over 100,000 questions, and a strict copy of the document and its whole
    text held at once cost 500 MB more."""
    encoder = _Encoder(write)
    text = _scalar(value)
    if text is None:
        encoder.nested(value, 0)
    else:
        encoder.pieces.append(text)
    encoder.flush()


def _scalar(item: Any) -> str | None:
    """``item``'s JSON text, or None when it is a list or mapping."""
    kind = type(item)
    if kind is str:
        return _string(item)
    if item is None:
        return "null"
    if item is True:
        return "true"
    if item is False:
        return "false"
    if kind is int:
        return int.__repr__(item)
    if kind is float:
        return float.__repr__(item) if math.isfinite(item) else "null"
    if kind is dict or kind is list or isinstance(item, (Mapping, list, tuple)):
        return None
    if isinstance(item, str):
        return _string(item)
    if isinstance(item, int):
        return int.__repr__(item)
    if isinstance(item, float):
        return float.__repr__(item) if math.isfinite(item) else "null"
    raise TypeError(f"Object of type {kind.__name__} is not JSON serializable")


class _Encoder:
    """One :func:`encode`: the pieces not yet written, and the line break (with its
    indent) of each depth."""

    def __init__(self, write: Callable[[str], object]) -> None:
        self.write = write
        self.pieces: list[str] = []
        self.breaks = ["\n"]

    def flush(self) -> None:
        # a string's text is never cut between pieces, so each is made valid on its own
        self.write(well_formed("".join(self.pieces)))
        self.pieces.clear()

    def newline(self, level: int) -> str:
        breaks = self.breaks
        while len(breaks) <= level:
            breaks.append("\n" + "  " * len(breaks))
        return breaks[level]

    def nested(self, item: Any, level: int) -> None:
        """A list or mapping at depth ``level``, written out when the pieces pile up."""
        if type(item) is dict or isinstance(item, Mapping):
            if not item:
                self.pieces.append("{}")
                return
            self.mapping(item, level)
        else:
            if not item:
                self.pieces.append("[]")
                return
            self.sequence(item, level)
        if len(self.pieces) > _FLUSH:
            self.flush()

    def mapping(self, item: Mapping[Any, Any], level: int) -> None:
        append = self.pieces.append
        string = _string
        inner = self.newline(level + 1)
        opening = "{" + inner
        for key, member in item.items():
            name = string(key if type(key) is str else str(key))
            # the common kinds first, without a call
            if type(member) is str:
                append(f"{opening}{name}: {string(member)}")
            elif member is None:
                append(f"{opening}{name}: null")
            else:
                text = _scalar(member)
                if text is None:
                    append(f"{opening}{name}: ")
                    self.nested(member, level + 1)
                else:
                    append(f"{opening}{name}: {text}")
            opening = "," + inner
        append(self.newline(level) + "}")

    def sequence(self, item: Any, level: int) -> None:
        append = self.pieces.append
        inner = self.newline(level + 1)
        opening = "[" + inner
        for member in item:
            if type(member) is str:
                append(opening + _string(member))
            else:
                text = _scalar(member)
                if text is None:
                    append(opening)
                    self.nested(member, level + 1)
                else:
                    append(opening + text)
            opening = "," + inner
        append(self.newline(level) + "]")


def dumps(document: Mapping[str, Any]) -> str:
    """``document`` as strict JSON text (non-finite floats as null), valid Unicode."""
    pieces: list[str] = []
    encode(document, pieces.append)
    return "".join(pieces) + "\n"


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as strict JSON, atomically, without holding its whole text."""

    def write(handle: TextIO) -> None:
        encode(document, handle.write)
        handle.write("\n")

    _write_atomic(path, write)


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` atomically: a reader sees the old file or the new, never half. Any
    text can be written: a lone surrogate in it is written as U+FFFD."""
    text = well_formed(text)
    _write_atomic(path, lambda handle: handle.write(text))


def _write_atomic(path: Path, write: Callable[[TextIO], object]) -> None:
    """Call ``write`` with a temporary file beside ``path``, then put it in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
        # mkstemp makes the file 0600; a report gets the mode any new file gets
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
