"""The gate: one place decides every pass rate, outcome and verdict (no pytest here).

A set's :class:`Gate` holds its thresholds, ``max_invalid``, ``confidence`` and drop gate
against a baseline. From the set's metric results it gives the rates (:meth:`Gate.rates`,
or a :class:`Tally` as results arrive), each question's outcome (:func:`outcome`), each
metric's verdict (:func:`row_verdicts`) and why a set fails the run where no question
carries it (:func:`unheld`); :func:`run_passed` is the run's rule. Live gating, every
report and ``rageval diff`` ask this module; none compares a rate with a threshold itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_rageval.gate.corrected import Calibration
from pytest_rageval.gate.rates import MetricRate as MetricRate
from pytest_rageval.gate.rates import Tally as Tally
from pytest_rageval.gate.sampled import Sampling, replay
from pytest_rageval.stats import EPSILON
from pytest_rageval.verdicts import MetricResult, Outcome


@dataclass(frozen=True)
class Gate:
    """How one set is gated: thresholds (a metric no layer names needs 1.0), the most
    invalid judgements (``max_invalid``), the Wilson ``confidence`` the thresholds are
    gated on, and the drop gate: at most ``max_drop`` below the baseline's pass rates
    (``baselines``; None when the set has no baseline)."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    max_invalid: float | None = None
    max_drop: float | None = None
    confidence: float | None = None
    baselines: Mapping[str, float | None] | None = None
    sample: str = "all"
    """``all`` (every question is judged) or ``sequential`` (:mod:`.sampled`)."""
    seed: int | None = None
    """The seed of a sequential set's visiting order (None: stable per set name)."""
    calibration: Calibration | None = None
    """The set's labels file as the run's judge judged it: its metrics are gated on the
    corrected rate (:mod:`.corrected`)."""

    @property
    def sequential(self) -> bool:
        return self.sample == "sequential"

    @property
    def drops(self) -> bool:
        """Whether a drop from the baseline is gated (a baseline and ``max_drop``)."""
        return self.baselines is not None and self.max_drop is not None

    def tally(self, expected: Mapping[str, int]) -> Tally:
        """A tally of this set's results as they arrive (``expected``: how many questions
        each metric applies to)."""
        return Tally(
            expected,
            self.thresholds,
            self.max_invalid,
            confidence=self.confidence,
            baselines=self.baselines if self.drops else None,
            max_drop=self.max_drop if self.drops else None,
            calibration=self.calibration,
        )

    def rates(self, questions: Iterable[Mapping[str, MetricResult]]) -> dict[str, MetricRate]:
        """Pass rate per metric over the questions it applies to, in first-seen order."""
        tally = self.tally({})
        for metrics in questions:
            tally.add(metrics, count=True)
        return tally.rates()

    def to_json(self) -> dict[str, Any]:
        return {
            "thresholds": dict(self.thresholds),
            "max_invalid": self.max_invalid,
            "max_drop": self.max_drop,
            "confidence": self.confidence,
            "baselines": dict(self.baselines) if self.baselines is not None else None,
            "sample": self.sample,
            "seed": self.seed,
            **({"calibration": self.calibration.to_json()} if self.calibration else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Gate:
        baselines = data.get("baselines")
        return cls(
            dict(data.get("thresholds") or {}),
            data.get("max_invalid"),
            data.get("max_drop"),
            data.get("confidence"),
            dict(baselines) if baselines is not None else None,
            data.get("sample") or "all",
            data.get("seed"),
            Calibration.from_json(data.get("calibration")),
        )

    def sampling(self, name: str, records: Iterable[Mapping[str, Any]]) -> Sampling:
        """A sequential set's decision, replayed from its questions' records."""
        return replay(name, self, records)

    def sampled_rates(self, sampling: Sampling, *, bounds: bool = True) -> dict[str, MetricRate]:
        """A sequential set's rates: counts over the questions judged, decisions from
        ``sampling`` (``bounds``: with the interval at the stopping point)."""
        tally = self.tally({})  # the threshold, max_invalid and drop gate; no counts
        return {
            metric: tally.rate_from(
                metric,
                *sampling.counted(metric),
                confidence=sampling.level,
                sampled=sampling.sampled(metric, with_bounds=bounds),
            )
            for metric in sampling.metrics
        }


def newly_failing(
    metrics: Mapping[str, MetricResult], before: Mapping[str, str] | None
) -> frozenset[str]:
    """The metrics a question fails now and did not fail in the baseline: it passed them
    there, or is new (``before`` None). Invalid and errored results are never counted."""
    return frozenset(
        name
        for name, metric in metrics.items()
        if metric.result == "failing" and (before is None or before.get(name) in ("passing", None))
    )


def needs_set(metrics: Mapping[str, MetricResult], error: str | None, must_pass: bool) -> bool:
    """Whether the outcome depends on the set's rates (it failed a metric and may be tolerated)."""
    return error is None and not must_pass and any(not m.passing for m in metrics.values())


def outcome(
    metrics: Mapping[str, MetricResult],
    error: str | None,
    must_pass: bool,
    rates: Mapping[str, MetricRate] | None,
    newly: Collection[str] = (),
) -> Outcome:
    """passed / tolerated / failed / error, as the README defines them (``newly``: as for
    :meth:`Tally.decide`)."""
    if error is not None:
        return "error"
    failed = [name for name, metric in metrics.items() if not metric.passing]
    if not failed:
        return "passed"
    if must_pass:
        return "failed"
    if rates is None:
        raise ValueError("a question that failed a metric needs its set's rates")
    for name in failed:
        rate = rates[name]
        if not rate.ok or (metrics[name].invalid and rate.invalid_exceeded):
            return "failed"
        if name in newly and rate.dropped:
            return "failed"
    return "tolerated"


def row_verdict(rate: MetricRate, must_pass_failures: int = 0) -> str:
    """The table's verdict of one set and metric; ``ok`` exactly when none of its
    questions fails the run through this metric."""
    if rate.errors:
        return "ERROR"
    if rate.labelled is not None and not rate.pending and rate.labelled.problem(rate.confidence):
        return "ERROR"  # too few labels: PPI++ refuses, and the raw rate is no substitute
    if not rate.ok and (rate.sampled is None or rate.sampled.rate == "fail"):
        return "FAILED"
    if rate.invalid_exceeded:
        return "FAILED (invalid)"
    if rate.dropped:
        return "FAILED (drop)"
    if must_pass_failures:
        return "FAILED (must_pass)"
    if rate.sampled is not None and rate.sampled.undecided:
        return "not decided"  # a sequential set stopped for another metric or question
    return "ok"


def row_verdicts(
    rates: Mapping[str, MetricRate], questions: Iterable[Mapping[str, Any]]
) -> dict[str, str]:
    """Each metric's verdict, as the table shows it, from the set's rates and its
    questions' records (a ``must_pass`` question that failed fails its metrics' rows)."""
    must_pass: Counter[str] = Counter()
    for record in questions:
        if record["must_pass"] and record["outcome"] == "failed":
            must_pass.update(n for n, m in record["metrics"].items() if not m["passing"])
    return {name: row_verdict(rate, must_pass[name]) for name, rate in rates.items()}


def unheld(
    rates: Mapping[str, MetricRate],
    verdicts: Mapping[str, str],
    questions: Iterable[Mapping[str, Any]],
) -> list[str]:
    """The metrics that fail the set where no question failed through them (a confidence
    bound, or a drop with nothing newly failing): the run fails as a whole for them."""
    questions = list(questions)
    return [
        name
        for name in rates
        if verdicts[name] in ("FAILED", "FAILED (drop)")
        and not any(
            record["outcome"] == "failed"
            and not record["metrics"].get(name, {}).get("passing", True)
            for record in questions
        )
    ]


def run_passed(verdicts: Iterable[str], complete: bool = True) -> bool:
    """The rag gate's result: at least one set metric, every one ``ok``, and a complete
    run."""
    verdicts = list(verdicts)
    return bool(verdicts) and all(verdict == "ok" for verdict in verdicts) and complete


def fell_more(drop: float, max_drop: float) -> bool:
    """Whether a fall in pass rate (or a drop a set can detect) is more than ``max_drop``."""
    return drop > max_drop + EPSILON
