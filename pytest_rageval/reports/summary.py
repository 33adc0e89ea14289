"""Sets as reported: question records grouped by set, their rates and verdicts, and
their comparison with a baseline (no pytest here). Every format renders from these."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_rageval.baseline import Baseline, SetChange, compare_set
from pytest_rageval.retry import cause
from pytest_rageval.stats import detectable_drop
from pytest_rageval.verdicts import (
    MetricRate,
    MetricResult,
    describe_drop,
    describe_rate,
    row_verdict,
    set_rates,
)

SET_KEYS = ("set", "thresholds", "max_invalid", "max_drop", "confidence", "baseline_rates")
"""Keys of a question record that belong to its set (the report keeps them once)."""


@dataclass
class SetSummary:
    """One gated set as reported: its rates and its questions' records."""

    name: str
    thresholds: dict[str, float]
    max_invalid: float | None = None
    questions: list[dict[str, Any]] = field(default_factory=list)
    """Its questions' records, less what the set added to each (``QuestionRecord``)."""
    max_drop: float | None = None
    confidence: float | None = None
    baseline_rates: dict[str, float | None] | None = None
    """The baseline's printed pass rates (None: no baseline for this set)."""

    @functools.cached_property
    def judged(self) -> list[dict[str, MetricResult]]:
        return [
            {name: MetricResult.from_json(metric) for name, metric in record["metrics"].items()}
            for record in self.questions
        ]

    @functools.cached_property
    def rates(self) -> dict[str, MetricRate]:
        """Rates over ``questions`` (computed once: read them after they are all in)."""
        drop_gate = self.baseline_rates is not None and self.max_drop is not None
        return set_rates(
            self.judged,
            self.thresholds,
            self.max_invalid,
            confidence=self.confidence,
            baselines=self.baseline_rates if drop_gate else None,
            max_drop=self.max_drop if drop_gate else None,
        )

    def verdicts(self) -> dict[str, str]:
        """Each metric's verdict, as the table shows it."""
        must_pass: Counter[str] = Counter()
        for record in self.questions:
            if record["must_pass"] and record["outcome"] == "failed":
                must_pass.update(n for n, m in record["metrics"].items() if not m["passing"])
        return {name: row_verdict(rate, must_pass[name]) for name, rate in self.rates.items()}

    def unheld(self) -> list[str]:
        """Why the set fails where no question of it failed through the metric (a
        confidence bound or a drop with nothing newly failing): the run fails as a whole."""
        reasons = []
        verdicts = self.verdicts()
        for name, rate in self.rates.items():
            if verdicts[name] not in ("FAILED", "FAILED (drop)"):
                continue
            if any(
                record["outcome"] == "failed"
                and not record["metrics"].get(name, {}).get("passing", True)
                for record in self.questions
            ):
                continue
            why = (
                describe_drop(self.name, name, rate)
                if rate.dropped and rate.ok
                else (describe_rate(self.name, name, rate))
            )
            reasons.append(f"{why}, and no question failed it: the set fails the run")
        return reasons

    def detectable(self, metric: str) -> float | None:
        """The smallest drop this set detects in ``metric`` (80% power, 5% level), from
        the baseline's rate, or the threshold without one."""
        rate = self.rates[metric]
        p0 = (self.baseline_rates or {}).get(metric)
        return detectable_drop(rate.n, rate.threshold if p0 is None else p0)

    @property
    def problem(self) -> str | None:
        """Why nothing of the set was judged, when that is so."""
        if self.rates:
            return None
        errors = [record["error"] for record in self.questions if record["error"]]
        return errors[0] if errors else "no metric applied to any question"


def summarize(records: Iterable[Mapping[str, Any]]) -> list[SetSummary]:
    """Group question records by set, sets by name (the same order whatever the order
    their questions finished in, with or without pytest-xdist)."""
    sets: dict[str, SetSummary] = {}
    for record in records:
        name = record["set"]
        summary = sets.get(name)
        if summary is None:
            summary = sets[name] = SetSummary(
                name,
                dict(record["thresholds"]),
                record.get("max_invalid"),
                max_drop=record.get("max_drop"),
                confidence=record.get("confidence"),
                baseline_rates=record.get("baseline_rates"),
            )
        summary.questions.append({k: v for k, v in record.items() if k not in SET_KEYS})
    return sorted(sets.values(), key=lambda summary: summary.name)


def changes_of(summaries: Iterable[SetSummary], baseline: Baseline) -> dict[str, SetChange]:
    """Each set of this run against the baseline."""
    return {
        summary.name: compare_set(
            summary.name,
            {name: rate.pass_rate for name, rate in summary.rates.items()},
            summary.questions,
            baseline,
        )
        for summary in summaries
    }


def error_causes(summaries: Iterable[SetSummary]) -> Counter[str]:
    """Questions that errored, counted by what went wrong (attempt counts left out)."""
    causes: Counter[str] = Counter()
    for summary in summaries:
        for record in summary.questions:
            if record["outcome"] == "error" and record["error"]:
                causes[cause(record["error"])] += 1
    return causes


def summaries_from_document(document: Mapping[str, Any]) -> list[SetSummary]:
    """The sets of a saved ``--rag-report`` document, as the run that wrote it had them."""
    summaries = []
    for entry in document.get("sets", []):
        metrics = entry.get("metrics", {})
        gate: Mapping[str, Any] = next(iter(metrics.values()), {})
        base = entry.get("baseline")
        summaries.append(
            SetSummary(
                entry["id"],
                {name: rate["threshold"] for name, rate in metrics.items()},
                gate.get("max_invalid"),
                questions=list(entry.get("questions", [])),
                max_drop=gate.get("max_drop"),
                confidence=gate.get("confidence"),
                baseline_rates=(
                    {
                        name: change.get("baseline_pass_rate")
                        for name, change in base.get("metrics", {}).items()
                    }
                    if base and base.get("found")
                    else None
                ),
            )
        )
    return summaries
