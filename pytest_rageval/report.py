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

from pytest_rageval.baseline import Baseline, MetricChange, SetChange, compare_set
from pytest_rageval.retry import cause
from pytest_rageval.stats import detectable_drop
from pytest_rageval.verdicts import (
    MetricRate,
    MetricResult,
    describe_drop,
    describe_rate,
    format_fraction,
    printable,
    row_verdict,
    set_rates,
    shorten,
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
    "95% CI",
    "threshold",
    "verdict",
)
BASELINE_HEADERS = ("baseline", "delta", "change")
"""Columns added before the verdict when the run has a baseline."""
SET_KEYS = ("set", "thresholds", "max_invalid", "max_drop", "confidence", "baseline_rates")
"""Keys of a question record that belong to its set (the report keeps them once)."""
FLIPS_SHOWN = 10
"""Flipped questions listed per set and metric on the terminal (the rest are counted)."""
TEXT_LIMIT = 2000
"""Characters of each response and context kept by ``rag_report_text = truncate``."""


@dataclass
class SetSummary:
    """One gated set as reported: its rates and its questions' records."""

    name: str
    thresholds: dict[str, float]
    max_invalid: float | None = None
    questions: list[dict[str, Any]] = field(default_factory=list)
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
    """Group question records by set, in the order sets were first reported."""
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
    return list(sets.values())


def format_interval(interval: tuple[float, float] | list[float] | None) -> str:
    return "n/a" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def format_delta(delta: float | None) -> str:
    return "n/a" if delta is None else f"{delta:+.2f}"


def format_change(change: MetricChange | None) -> str:
    if change is None:
        return "n/a"
    return f"{change.test.change} (p={change.test.p_value:.2g})"


def table_rows(
    summaries: Iterable[SetSummary], changes: Mapping[str, SetChange] | None = None
) -> list[tuple[object, ...]]:
    """The terminal table's rows; with ``changes`` (a baseline), three more columns."""
    rows: list[tuple[object, ...]] = []
    for summary in summaries:
        rates = summary.rates
        against = changes.get(summary.name) if changes is not None else None
        extra: tuple[object, ...]
        if not rates:
            n = len(summary.questions)
            extra = ("n/a",) * len(BASELINE_HEADERS) if changes is not None else ()
            rows.append((summary.name, "-", n, 0, 0, 0, n, "n/a", "n/a", "n/a", *extra, "FAILED"))
        verdicts = summary.verdicts()
        for metric, rate in rates.items():
            extra = ()
            if changes is not None:
                change = against.metrics.get(metric) if against is not None else None
                if change is None:
                    extra = ("none", "n/a", "n/a")
                else:
                    extra = (
                        format_fraction(change.baseline_rate),
                        format_delta(change.delta),
                        format_change(change),
                    )
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
                    format_interval(rate.interval),
                    format_fraction(rate.threshold),
                    *extra,
                    verdicts[metric],
                )
            )
    return rows


def headers(with_baseline: bool) -> tuple[str, ...]:
    if not with_baseline:
        return TABLE_HEADERS
    return (*TABLE_HEADERS[:-1], *BASELINE_HEADERS, TABLE_HEADERS[-1])


def render_table(
    summaries: Iterable[SetSummary], changes: Mapping[str, SetChange] | None = None
) -> str:
    from tabulate import tabulate

    return tabulate(
        table_rows(summaries, changes),
        headers=headers(changes is not None),
        disable_numparse=True,
    )


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


def render_flips(changes: Mapping[str, SetChange], baseline_path: str) -> list[str]:
    """The questions whose verdicts changed since the baseline, per set and metric."""
    lines = [f"against the baseline {baseline_path}:"]
    for set_id, change in changes.items():
        if not change.found:
            lines.append(f"  no baseline for {set_id}")
            continue
        if change.new:
            lines.append(f"  {set_id}: new: {_some(change.new)}")
        if change.removed:
            lines.append(f"  {set_id}: removed: {_some(change.removed)}")
        for metric, flips in change.metrics.items():
            if not (flips.worse or flips.better or flips.apart):
                continue
            lines.append(
                f"  {set_id} {metric}: {len(flips.worse)} pass -> fail, "
                f"{len(flips.better)} fail -> pass ({format_change(flips)})"
            )
            for label, listed in (("pass -> fail", flips.worse), ("fail -> pass", flips.better)):
                for flip in listed[:FLIPS_SHOWN]:
                    lines.append(f"    {label}: {flip.id}: {shorten(flip.feedback, 120)}")
                if len(listed) > FLIPS_SHOWN:
                    lines.append(f"    {label}: and {len(listed) - FLIPS_SHOWN} more")
            if flips.apart:
                lines.append(f"    errored or invalid in either run: {_some(flips.apart)}")
    if len(lines) == 1:
        lines.append("  no question changed its verdict")
    return lines


def _some(ids: list[str], shown: int = FLIPS_SHOWN) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(printable(i) for i in ids[:shown]) + more


def weak_gates(summaries: Iterable[SetSummary]) -> list[str]:
    """Warnings for sets too small for their ``max_drop``: the smallest drop they detect
    (80% power, 5% level) is larger."""
    warnings: list[str] = []
    for summary in summaries:
        if summary.max_drop is None:
            continue
        for metric, rate in summary.rates.items():
            drop = summary.detectable(metric)
            if drop is None:
                warnings.append(
                    f"{summary.name} has {rate.n} questions for {metric}: too few to detect "
                    f"any drop, whatever max_drop ({format_fraction(summary.max_drop)}) says"
                )
            elif drop > summary.max_drop + 1e-9:
                warnings.append(
                    f"{summary.name} has {rate.n} questions: it can only detect drops of "
                    f"{format_fraction(drop)} or more in {metric} (max_drop "
                    f"{format_fraction(summary.max_drop)})"
                )
    return warnings


def error_causes(summaries: Iterable[SetSummary]) -> Counter[str]:
    """Questions that errored, counted by what went wrong (attempt counts left out)."""
    causes: Counter[str] = Counter()
    for summary in summaries:
        for record in summary.questions:
            if record["outcome"] == "error" and record["error"]:
                causes[cause(record["error"])] += 1
    return causes


def render_summary(
    summaries: list[SetSummary], notices: Iterable[str] = (), baseline: Baseline | None = None
) -> list[str]:
    """The ``rag evaluation`` section: the table, sets judged on nothing, the flips since
    the baseline, errors by cause and warnings."""
    changes = changes_of(summaries, baseline) if baseline is not None else None
    lines = render_table(summaries, changes).splitlines()
    for summary in summaries:
        if summary.problem is not None:
            lines.append(f"{summary.name}: {printable(summary.problem)}")
    for summary in summaries:
        lines.extend(f"FAILED {printable(reason)}" for reason in summary.unheld())
    if changes is not None and baseline is not None:
        lines.extend(render_flips(changes, baseline.path))
    causes = error_causes(s for s in summaries if s.problem is None)
    if causes:
        lines.append("errors by cause:")
        lines.extend(f"  {count} x {printable(text)}" for text, count in causes.most_common())
    notices = [*notices, *weak_gates(summaries)]
    lines.extend(f"warning: {printable(notice)}" for notice in notices)
    return lines


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
