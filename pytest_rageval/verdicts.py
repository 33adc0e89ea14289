"""Per-metric results, set pass rates and each question's outcome (no pytest here).

Everything a report needs is turned into plain JSON-safe data here, so it can travel on
pytest reports (and later between xdist workers) and be written to the JSON report as is.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pytest_rageval.runner import QuestionResult
from pytest_rageval.thresholds import threshold_for

Outcome = Literal["passed", "tolerated", "failed", "error"]
EPSILON = 1e-9
"""Rates are compared with this slack, so 7 of 10 passing meets a threshold of 0.7."""


@dataclass(frozen=True)
class MetricResult:
    """One metric's judgement of one question."""

    passing: bool
    score: float | None = None
    feedback: str | None = None
    invalid: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "passing": self.passing,
            "score": self.score,
            "feedback": self.feedback,
            "invalid": self.invalid,
            "error": self.error,
        }


def metric_results(result: QuestionResult) -> dict[str, MetricResult]:
    """Every applicable metric of a question; errors and invalid judgements do not pass."""
    metrics: dict[str, MetricResult] = {}
    query_error = result.errors.get("query")
    for name in result.applicable:
        error = query_error or result.errors.get(name)
        if error is not None:
            metrics[name] = MetricResult(passing=False, error=error)
            continue
        evaluation = result.evaluations[name]
        invalid = bool(getattr(evaluation, "invalid_result", False)) or evaluation.passing is None
        feedback = getattr(evaluation, "feedback", None)
        if invalid and not feedback:
            feedback = getattr(evaluation, "invalid_reason", None)
        score = getattr(evaluation, "score", None)
        metrics[name] = MetricResult(
            passing=bool(evaluation.passing) and not invalid,
            score=float(score) if isinstance(score, (int, float)) else None,
            feedback=feedback if isinstance(feedback, str) else None,
            invalid=invalid,
        )
    return metrics


@dataclass(frozen=True)
class MetricRate:
    """A set's pass rate of one metric against its threshold."""

    n: int
    passed: int
    threshold: float

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.n if self.n else None

    @property
    def ok(self) -> bool:
        return self.passed >= self.threshold * self.n - EPSILON

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
            "threshold": self.threshold,
            "ok": self.ok,
        }


def set_rates(
    questions: Iterable[Mapping[str, MetricResult]], thresholds: Mapping[str, float]
) -> dict[str, MetricRate]:
    """Pass rate per metric over the questions it applies to, in first-seen metric order."""
    counts: dict[str, list[int]] = {}
    for metrics in questions:
        for name, metric in metrics.items():
            n_passed = counts.setdefault(name, [0, 0])
            n_passed[0] += 1
            n_passed[1] += metric.passing
    return {
        name: MetricRate(n, passed, threshold_for(thresholds, name))
        for name, (n, passed) in counts.items()
    }


def needs_set(metrics: Mapping[str, MetricResult], error: str | None, must_pass: bool) -> bool:
    """Whether the outcome depends on the set's rates (it failed a metric and may be tolerated)."""
    return error is None and not must_pass and any(not m.passing for m in metrics.values())


def outcome(
    metrics: Mapping[str, MetricResult],
    error: str | None,
    must_pass: bool,
    rates: Mapping[str, MetricRate] | None,
) -> Outcome:
    """passed / tolerated / failed / error, as the README defines them."""
    if error is not None:
        return "error"
    failed = [name for name, metric in metrics.items() if not metric.passing]
    if not failed:
        return "passed"
    if must_pass:
        return "failed"
    if rates is None:
        raise ValueError("a question that failed a metric needs its set's rates")
    return "failed" if any(not rates[name].ok for name in failed) else "tolerated"


def format_fraction(value: float | None) -> str:
    """Rates and thresholds as fractions, the way the table and messages show them."""
    return "n/a" if value is None else f"{value:.2f}"


def shorten(text: str | None, width: int = 300) -> str:
    if text is None:
        return "(none)"
    flat = " ".join(text.split())
    return textwrap.shorten(flat, width, placeholder=" [...]") if flat else "(empty)"


def explain(
    record: Mapping[str, Any],
    rates: Mapping[str, MetricRate] | None,
    set_name: str,
) -> str:
    """The failure message a user reads for a failed or errored question."""
    lines = [f"query:    {shorten(record['query'])}"]
    if record["outcome"] == "error":
        lines.insert(0, f"rag question errored: {record['error']}")
        if record["response"] is not None:
            lines.append(f"response: {shorten(record['response'])}")
        return "\n".join(lines)
    failed = [name for name, m in record["metrics"].items() if not m["passing"]]
    lines.insert(0, f"rag question failed {', '.join(failed)}")
    lines.append(f"response: {shorten(record['response'])}")
    for name in failed:
        metric = record["metrics"][name]
        judged = "invalid judgement" if metric["invalid"] else "failed"
        lines.append(f"{name}: {judged}; judge said: {shorten(metric['feedback'], 400)}")
        if record["must_pass"]:
            lines.append("  must_pass: this question may not fail any metric")
        elif rates is not None and name in rates:
            rate = rates[name]
            relation = ">=" if rate.ok else "<"
            shown = format_fraction(rate.pass_rate)
            lines.append(
                f"  {set_name}: {name} pass rate {rate.passed}/{rate.n} = {shown} "
                f"{relation} threshold {format_fraction(rate.threshold)}"
            )
    return "\n".join(lines)


def question_record(
    result: QuestionResult, metrics: Mapping[str, MetricResult], outcome_: Outcome
) -> dict[str, Any]:
    """The JSON-safe record of one question, as it appears in reports."""
    question = result.question
    return {
        "id": question.id,
        "query": question.query,
        "reference": question.reference,
        "must_pass": question.must_pass,
        "tags": list(question.tags),
        "response": result.response,
        "contexts": list(result.contexts),
        "outcome": outcome_,
        "error": result.error,
        "metrics": {name: metric.to_json() for name, metric in metrics.items()},
    }
