"""The ``--rag-report`` JSON document and atomic file writing (no pytest here)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

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
            "questions": [_limit_text(q, text) for q in summary.questions],
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


def _limit_text(record: Mapping[str, Any], mode: str) -> dict[str, Any]:
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


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float as None: the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def dumps(document: Mapping[str, Any]) -> str:
    """``document`` as strict JSON text (non-finite floats as null), valid Unicode."""
    text = json.dumps(strict_json(document), indent=2, ensure_ascii=False, allow_nan=False)
    return well_formed(text) + "\n"


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as strict JSON, atomically."""
    write_atomic(path, dumps(document))


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` atomically: a reader sees the old file or the new, never half. Any
    text can be written: a lone surrogate in it is written as U+FFFD."""
    text = well_formed(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        # mkstemp makes the file 0600; a report gets the mode any new file gets
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
