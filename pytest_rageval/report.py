"""The terminal table and the JSON report, built from question records (no pytest here)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rageval.verdicts import MetricRate, MetricResult, format_fraction, set_rates

REPORT_VERSION = 1
TABLE_HEADERS = ("set", "metric", "questions", "passed", "pass rate", "threshold", "verdict")


@dataclass
class SetSummary:
    """One gated set as reported: its rates and its questions' records."""

    name: str
    thresholds: dict[str, float]
    questions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rates(self) -> dict[str, MetricRate]:
        judged = [
            {name: MetricResult(**metric) for name, metric in record["metrics"].items()}
            for record in self.questions
        ]
        return set_rates(judged, self.thresholds)


def summarize(records: Iterable[Mapping[str, Any]]) -> list[SetSummary]:
    """Group question records by set, in the order sets were first reported."""
    sets: dict[str, SetSummary] = {}
    for record in records:
        name = record["set"]
        summary = sets.setdefault(name, SetSummary(name, dict(record["thresholds"])))
        summary.questions.append(
            {k: v for k, v in record.items() if k not in ("set", "thresholds")}
        )
    return list(sets.values())


def table_rows(summaries: Iterable[SetSummary]) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for summary in summaries:
        rates = summary.rates
        if not rates:
            rows.append((summary.name, "-", len(summary.questions), 0, "n/a", "n/a", "FAILED"))
        for metric, rate in rates.items():
            rows.append(
                (
                    summary.name,
                    metric,
                    rate.n,
                    rate.passed,
                    format_fraction(rate.pass_rate),
                    format_fraction(rate.threshold),
                    "ok" if rate.ok else "FAILED",
                )
            )
    return rows


def render_table(summaries: Iterable[SetSummary]) -> str:
    from tabulate import tabulate

    return tabulate(table_rows(summaries), headers=TABLE_HEADERS, disable_numparse=True)


def json_report(summaries: Iterable[SetSummary]) -> dict[str, Any]:
    """The ``--rag-report`` document (its schema is in the README)."""
    return {
        "version": REPORT_VERSION,
        "sets": [
            {
                "id": summary.name,
                "metrics": {name: rate.to_json() for name, rate in summary.rates.items()},
                "questions": summary.questions,
            }
            for summary in summaries
        ],
    }


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
