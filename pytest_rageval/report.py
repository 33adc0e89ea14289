"""The terminal summary and the JSON report, built from question records (no pytest here)."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rageval.retry import cause
from pytest_rageval.verdicts import (
    MetricRate,
    MetricResult,
    format_fraction,
    printable,
    row_verdict,
    set_rates,
)

REPORT_VERSION = 1
TABLE_HEADERS = (
    "set",
    "metric",
    "questions",
    "passed",
    "failed",
    "invalid",
    "errors",
    "pass rate",
    "threshold",
    "verdict",
)
TEXT_LIMIT = 2000
"""Characters of each response and context kept by ``rag_report_text = truncate``."""


@dataclass
class SetSummary:
    """One gated set as reported: its rates and its questions' records."""

    name: str
    thresholds: dict[str, float]
    max_invalid: float | None = None
    questions: list[dict[str, Any]] = field(default_factory=list)

    @functools.cached_property
    def rates(self) -> dict[str, MetricRate]:
        """Rates over ``questions`` (computed once: read them after they are all in)."""
        judged = [
            {name: MetricResult.from_json(metric) for name, metric in record["metrics"].items()}
            for record in self.questions
        ]
        return set_rates(judged, self.thresholds, self.max_invalid)

    def verdicts(self) -> dict[str, str]:
        """Each metric's verdict, as the table shows it."""
        must_pass: Counter[str] = Counter()
        for record in self.questions:
            if record["must_pass"] and record["outcome"] == "failed":
                must_pass.update(n for n, m in record["metrics"].items() if not m["passing"])
        return {name: row_verdict(rate, must_pass[name]) for name, rate in self.rates.items()}

    @property
    def problem(self) -> str | None:
        """Why nothing of the set was judged, when that is so."""
        if self.rates:
            return None
        errors = [record["error"] for record in self.questions if record["error"]]
        return errors[0] if errors else "no metric applied to any question"


def summarize(records: Iterable[Mapping[str, Any]]) -> list[SetSummary]:
    """Group question records by set, in the order sets were first reported."""
    sets: dict[str, SetSummary] = {}
    for record in records:
        name = record["set"]
        summary = sets.setdefault(
            name, SetSummary(name, dict(record["thresholds"]), record.get("max_invalid"))
        )
        summary.questions.append(
            {k: v for k, v in record.items() if k not in ("set", "thresholds", "max_invalid")}
        )
    return list(sets.values())


def table_rows(summaries: Iterable[SetSummary]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for summary in summaries:
        rates = summary.rates
        if not rates:
            n = len(summary.questions)
            rows.append((summary.name, "-", n, 0, 0, 0, n, "n/a", "n/a", "FAILED"))
        verdicts = summary.verdicts()
        for metric, rate in rates.items():
            rows.append(
                (
                    summary.name,
                    metric,
                    rate.n,
                    rate.passed,
                    rate.failed,
                    rate.invalid,
                    rate.errors,
                    format_fraction(rate.pass_rate),
                    format_fraction(rate.threshold),
                    verdicts[metric],
                )
            )
    return rows


def render_table(summaries: Iterable[SetSummary]) -> str:
    from tabulate import tabulate

    return tabulate(table_rows(summaries), headers=TABLE_HEADERS, disable_numparse=True)


def error_causes(summaries: Iterable[SetSummary]) -> Counter[str]:
    """Questions that errored, counted by what went wrong (attempt counts left out)."""
    causes: Counter[str] = Counter()
    for summary in summaries:
        for record in summary.questions:
            if record["outcome"] == "error" and record["error"]:
                causes[cause(record["error"])] += 1
    return causes


def render_summary(summaries: list[SetSummary], notices: Iterable[str] = ()) -> list[str]:
    """The ``rag evaluation`` section: the table, sets judged on nothing, errors by cause
    and warnings."""
    lines = render_table(summaries).splitlines()
    for summary in summaries:
        if summary.problem is not None:
            lines.append(f"{summary.name}: {printable(summary.problem)}")
    causes = error_causes(s for s in summaries if s.problem is None)
    if causes:
        lines.append("errors by cause:")
        lines.extend(f"  {count} x {printable(text)}" for text, count in causes.most_common())
    lines.extend(f"warning: {printable(notice)}" for notice in notices)
    return lines


def json_report(summaries: Iterable[SetSummary], text: str = "full") -> dict[str, Any]:
    """The ``--rag-report`` document (its schema is in the README). ``text`` is how much
    of each response and context it keeps: ``full``, ``truncate`` or ``none``."""
    summaries = list(summaries)
    return {
        "version": REPORT_VERSION,
        "sets": [
            {
                "id": summary.name,
                "metrics": {
                    name: {**rate.to_json(), "verdict": verdict}
                    for (name, rate), verdict in zip(
                        summary.rates.items(), summary.verdicts().values(), strict=True
                    )
                },
                "questions": [_limit_text(q, text) for q in summary.questions],
            }
            for summary in summaries
        ],
        "errors": dict(error_causes(summaries).most_common()),
    }


def _limit_text(record: Mapping[str, Any], mode: str) -> dict[str, Any]:
    if mode == "full":
        return dict(record)
    limited = dict(record)
    if mode == "none":
        limited["response"] = None
        limited["contexts"] = None
        return limited
    limited["response"] = _truncate(record["response"])
    if record["contexts"] is not None:
        limited["contexts"] = [_truncate(context) for context in record["contexts"]]
    return limited


def _truncate(text: str | None) -> str | None:
    if text is None or len(text) <= TEXT_LIMIT:
        return text
    return f"{text[:TEXT_LIMIT]} [... {len(text) - TEXT_LIMIT} more characters]"


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float as None: the report is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` atomically: a reader sees the old file or the new, never half."""
    text = json.dumps(strict_json(document), indent=2, ensure_ascii=False, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
