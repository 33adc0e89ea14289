"""A set's pass rate of one metric against its threshold (``MetricRate``), and the rates
as results arrive (``Tally``): the arithmetic the gate decides with (no pytest here)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from pytest_rageval.correction import UncorrectableError
from pytest_rageval.gate.corrected import Calibrated, Calibration, OwnLabels
from pytest_rageval.gate.sampled import Sampled
from pytest_rageval.stats import EPSILON, wilson
from pytest_rageval.thresholds import threshold_for
from pytest_rageval.verdicts import MetricResult, Outcome


@dataclass(frozen=True)
class MetricRate:
    """A set's pass rate of one metric against its threshold.

    ``n`` questions the metric applies to, of which ``passed`` passed, ``invalid`` were
    invalid and ``errors`` errored (the rest failed); ``pending`` of them have no result
    yet (a rate decided early). ``max_invalid`` is the most invalid judgements allowed,
    as a fraction of ``n`` (None: no limit).
    """

    n: int
    passed: int
    threshold: float
    invalid: int = 0
    errors: int = 0
    max_invalid: float | None = None
    pending: int = 0
    confidence: float | None = None
    """Gate the threshold on the lower bound of this two-sided Wilson interval."""
    baseline: float | None = None
    """The baseline run's pass rate, when the set has one."""
    max_drop: float | None = None
    """The most the pass rate may fall below ``baseline``."""
    sampled: Sampled | None = None
    """A sequential set's decisions (the counts are then those of the questions the
    decision read)."""
    corrected: Calibrated | None = None
    """The labels that correct the judge's rate: the threshold (and ``confidence``) then
    apply to the corrected rate."""
    labelled: OwnLabels | None = None
    """Labels on the set's own questions: the threshold (and ``confidence``) then apply
    to PPI++'s rate, once every question is in (it replaces ``corrected``)."""

    @property
    def failed(self) -> int:
        return self.n - self.passed - self.invalid - self.errors - self.pending

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.n if self.n else None

    @property
    def ok(self) -> bool:
        """The pass rate meets the threshold (with ``pending``: even if all of them fail)."""
        if self.labelled is not None and self.pending:
            return False  # PPI++ reads every verdict: nothing is certain before the last
        return self._meets(self.passed)

    @property
    def could_pass(self) -> bool:
        """The threshold can still be met if every pending question passes."""
        if self.sampled is not None:
            return self.sampled.rate != "fail"
        if self.labelled is not None and self.pending:
            return True
        return self._meets(self.passed + self.pending)

    def _meets(self, passed: int) -> bool:
        if self.sampled is not None:
            return self.sampled.rate == "pass"
        if self.labelled is not None and self.n:
            try:
                ppi = self.labelled.rate(self.confidence)
            except UncorrectableError:
                return False  # never the raw rate (the row errors with the reason)
            value = ppi.lower if self.confidence is not None else ppi.estimate
            return value >= self.threshold - EPSILON
        if self.corrected is not None and self.n:
            try:
                rate = self.corrected.rate(passed, self.n, self.confidence)
            except UncorrectableError:
                return False  # never the raw rate (the set errors before it gets here)
            value = rate.lower if self.confidence is not None else rate.estimate
            return value >= self.threshold - EPSILON
        if self.confidence is None or not self.n:
            return passed >= self.threshold * self.n - EPSILON
        return self.lower_bound(passed) >= self.threshold - EPSILON

    def lower_bound(self, passed: int) -> float:
        """The lower bound of the ``confidence`` Wilson interval of ``passed / n``."""
        z = NormalDist().inv_cdf(1 - (1 - (self.confidence or 0.95)) / 2)
        interval = wilson(passed, self.n, z)
        return interval[0] if interval is not None else 0.0

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% Wilson interval of the pass rate (None without questions); of a
        sequential set, the anytime-valid interval of the full set's rate."""
        if self.sampled is not None:
            return self.sampled.bounds
        return wilson(self.passed, self.n) if not self.pending else None

    @property
    def floor(self) -> float | None:
        """The lowest pass rate the drop gate allows (None: no drop gate)."""
        if self.baseline is None or self.max_drop is None:
            return None
        return self.baseline - self.max_drop

    @property
    def dropped(self) -> bool:
        """More than ``max_drop`` below the baseline, even if every pending question passes."""
        if self.sampled is not None:
            return self.sampled.drop == "fail"
        floor = self.floor
        return (
            floor is not None
            and bool(self.n)
            and (self.passed + self.pending < floor * self.n - EPSILON)
        )

    @property
    def kept(self) -> bool:
        """Within ``max_drop`` of the baseline, even if every pending question fails."""
        if self.sampled is not None:
            return self.sampled.drop == "pass"
        floor = self.floor
        return floor is None or not self.n or self.passed >= floor * self.n - EPSILON

    @property
    def invalid_ok(self) -> bool:
        """Invalid judgements within ``max_invalid`` (with ``pending``: even if all are)."""
        if self.sampled is not None:
            return self.sampled.invalid == "pass"
        if self.max_invalid is None:
            return True
        return self.invalid + self.pending <= self.max_invalid * self.n + EPSILON

    @property
    def invalid_exceeded(self) -> bool:
        if self.sampled is not None:
            return self.sampled.invalid == "fail"
        return self.max_invalid is not None and self.invalid > self.max_invalid * self.n + EPSILON

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "passed": self.passed,
            "failed": self.failed,
            "invalid": self.invalid,
            "errors": self.errors,
            "pass_rate": self.pass_rate,
            "threshold": self.threshold,
            "max_invalid": self.max_invalid,
            "interval": (
                [round(bound, 12) for bound in self.interval] if self.interval is not None else None
            ),
            "confidence": self.confidence,
            "max_drop": self.max_drop,
            **({"sampled": self.sampled.to_json()} if self.sampled is not None else {}),
            **(
                {"corrected": self.corrected.to_json(self.passed, self.n, self.confidence)}
                if self.corrected is not None and self.labelled is None and not self.pending
                else {}
            ),
            **(
                {"corrected": self.labelled.to_json(self.confidence)}
                if self.labelled is not None and not self.pending
                else {}
            ),
        }


class Tally:
    """A set's results as they arrive, for deciding a question before the set is done.

    ``expected`` is how many questions each metric applies to. A question that did not
    pass a metric is *failed* as soon as the set's rate of that metric is certain to miss
    its threshold (or, when the question is invalid, certain to exceed ``max_invalid``),
    and *tolerated* as soon as neither can happen any more. Not thread-safe by itself.
    """

    def __init__(
        self,
        expected: Mapping[str, int],
        thresholds: Mapping[str, float],
        max_invalid: float | None = None,
        *,
        confidence: float | None = None,
        baselines: Mapping[str, float | None] | None = None,
        max_drop: float | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.expected = dict(expected)
        self.calibration = calibration
        self.thresholds = thresholds
        self.max_invalid = max_invalid
        self.confidence = confidence
        self.baselines = baselines or {}
        self.max_drop = max_drop
        self._counts: dict[str, list[int]] = {}  # metric -> [seen, passed, invalid, errors]
        self._labels: dict[str, list[tuple[bool | None, bool]]] = {}  # (person, judge)
        self._stale: dict[str, int] = {}

    def add(self, metrics: Mapping[str, MetricResult], *, count: bool = False) -> None:
        """One question's results; ``count`` also counts them into ``expected``."""
        for name, metric in metrics.items():
            seen = self._counts.setdefault(name, [0, 0, 0, 0])
            seen[0] += 1
            seen[1] += metric.passing
            seen[2] += metric.result == "invalid"
            seen[3] += metric.result == "error"
            self._labels.setdefault(name, []).append((metric.human, metric.passing))
            self._stale[name] = self._stale.get(name, 0) + metric.stale
            if count:
                self.expected[name] = self.expected.get(name, 0) + 1

    def rate(self, metric: str) -> MetricRate:
        seen, passed, invalid, errors = self._counts.get(metric, [0, 0, 0, 0])
        n = max(self.expected.get(metric, 0), seen)
        return self.rate_from(
            metric,
            n,
            passed,
            invalid,
            errors,
            pending=n - seen,
            confidence=self.confidence,
            corrected=self.calibration.of(metric) if self.calibration is not None else None,
            labelled=self._own_labels(metric),
        )

    def rate_from(
        self,
        metric: str,
        n: int,
        passed: int,
        invalid: int,
        errors: int,
        *,
        confidence: float | None,
        pending: int = 0,
        sampled: Sampled | None = None,
        corrected: Calibrated | None = None,
        labelled: OwnLabels | None = None,
    ) -> MetricRate:
        """``metric``'s rate from these counts, against this tally's threshold,
        ``max_invalid`` and drop gate (a sequential set's rates come from here too)."""
        return MetricRate(
            n=n,
            passed=passed,
            threshold=threshold_for(self.thresholds, metric),
            invalid=invalid,
            errors=errors,
            max_invalid=self.max_invalid,
            pending=pending,
            confidence=confidence,
            baseline=self.baselines.get(metric),
            max_drop=self.max_drop,
            sampled=sampled,
            corrected=corrected,
            labelled=labelled,
        )

    def _own_labels(self, metric: str) -> OwnLabels | None:
        """The metric's labels on the set's own questions (None: no question labels it)."""
        verdicts = self._labels.get(metric, [])
        stale = self._stale.get(metric, 0)
        if not stale and all(human is None for human, _ in verdicts):
            return None
        return OwnLabels.of(verdicts, stale)

    def rates(self) -> dict[str, MetricRate]:
        names = list(self._counts) + [m for m in self.expected if m not in self._counts]
        return {name: self.rate(name) for name in names}

    def decide(
        self, metrics: Mapping[str, MetricResult], newly: Collection[str] = ()
    ) -> Outcome | None:
        """The outcome of a question that errored or failed no metric needs no set; for the
        others, its outcome once certain, else None (wait for more results). ``newly``:
        the metrics it fails now and did not fail in the baseline (the drop gate's)."""
        undecided = False
        for name, metric in metrics.items():
            if metric.passing or metric.result == "error":
                continue
            rate = self.rate(name)
            if not rate.could_pass:
                return "failed"
            if metric.invalid and rate.invalid_exceeded:
                return "failed"
            if name in newly and rate.dropped:
                return "failed"
            if not rate.ok or (metric.invalid and not rate.invalid_ok):
                undecided = True
            if name in newly and not rate.kept:
                undecided = True
        return None if undecided else "tolerated"
