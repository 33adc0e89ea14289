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
from pytest_rageval.reports.summary import SetSummary, changes_of, error_causes
from pytest_rageval.text import clip

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
                    "detectable_drop": summary.detectable(name),
                    "verdict": verdict,
                }
                for (name, rate), verdict in zip(
                    summary.rates.items(), summary.verdicts().values(), strict=True
                )
            },
            "questions": [_limit_text(q, text) for q in summary.questions],
        }
        if summary.name in changes:
            entry["baseline"] = changes[summary.name].to_json()
        sets.append(entry)
    document: dict[str, Any] = {"version": REPORT_VERSION, "sets": sets}
    document["baseline"] = baseline.path if baseline is not None else None
    document["errors"] = dict(error_causes(summaries).most_common())
    return document


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
    """``document`` as strict JSON text (non-finite floats as null)."""
    return json.dumps(strict_json(document), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` as strict JSON, atomically."""
    write_atomic(path, dumps(document))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` atomically: a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
