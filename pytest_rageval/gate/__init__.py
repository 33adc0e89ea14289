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
from statistics import NormalDist
from typing import Any

from pytest_rageval.correction import UncorrectableError
from pytest_rageval.gate.corrected import Calibrated, Calibration
from pytest_rageval.gate.sampled import Sampled, Sampling, replay
from pytest_rageval.stats import EPSILON, wilson
from pytest_rageval.thresholds import threshold_for
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
        rates = {}
        for metric in sampling.metrics:
            n, passed, invalid, errors = sampling.counted(metric)
            rates[metric] = MetricRate(
                n=n,
                passed=passed,
                threshold=threshold_for(self.thresholds, metric),
                invalid=invalid,
                errors=errors,
                max_invalid=self.max_invalid,
                confidence=sampling.level,
                baseline=(self.baselines or {}).get(metric) if self.drops else None,
                max_drop=self.max_drop if self.drops else None,
                sampled=sampling.sampled(metric, with_bounds=bounds),
            )
        return rates


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

    @property
    def failed(self) -> int:
        return self.n - self.passed - self.invalid - self.errors - self.pending

    @property
    def pass_rate(self) -> float | None:
        return self.passed / self.n if self.n else None

    @property
    def ok(self) -> bool:
        """The pass rate meets the threshold (with ``pending``: even if all of them fail)."""
        return self._meets(self.passed)

    @property
    def could_pass(self) -> bool:
        """The threshold can still be met if every pending question passes."""
        if self.sampled is not None:
            return self.sampled.rate != "fail"
        return self._meets(self.passed + self.pending)

    def _meets(self, passed: int) -> bool:
        if self.sampled is not None:
            return self.sampled.rate == "pass"
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
                if self.corrected is not None and not self.pending
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

    def add(self, metrics: Mapping[str, MetricResult], *, count: bool = False) -> None:
        """One question's results; ``count`` also counts them into ``expected``."""
        for name, metric in metrics.items():
            seen = self._counts.setdefault(name, [0, 0, 0, 0])
            seen[0] += 1
            seen[1] += metric.passing
            seen[2] += metric.result == "invalid"
            seen[3] += metric.result == "error"
            if count:
                self.expected[name] = self.expected.get(name, 0) + 1

    def rate(self, metric: str) -> MetricRate:
        seen, passed, invalid, errors = self._counts.get(metric, [0, 0, 0, 0])
        n = max(self.expected.get(metric, 0), seen)
        return MetricRate(
            n=n,
            passed=passed,
            threshold=threshold_for(self.thresholds, metric),
            invalid=invalid,
            errors=errors,
            max_invalid=self.max_invalid,
            pending=n - seen,
            confidence=self.confidence,
            baseline=self.baselines.get(metric),
            max_drop=self.max_drop,
            corrected=self.calibration.of(metric) if self.calibration is not None else None,
        )

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
