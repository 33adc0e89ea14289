"""The sequential gate of one set (``sample: sequential``; no pytest here).

The set's questions are visited in a random order fixed by a seed before any verdict is
seen. Each gated bound (a metric's threshold, its ``max_invalid``, its drop from the
baseline) is a test of the full set's rate by betting, without replacement
(:mod:`pytest_rageval.sequential`), at its share of ``1 - confidence``. The set is
decided, and no further question is asked, once any bound is certain to fail, or every
bound certain to hold; at the end of the order every bound is decided exactly, as a
full run decides it. Verdicts are taken strictly in the visiting order: a result that
comes in early waits for those before it, so the decision is the same however the
answers raced, and a merge of CI shards can replay it from the records.

An error, or a failed ``must_pass`` question, fails the set at once, as in a full run.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pytest_rageval import sequential
from pytest_rageval.sequential import Decision, SequentialTest
from pytest_rageval.thresholds import threshold_for
from pytest_rageval.verdicts import MetricResult

SetDecision = Literal["passed", "failed", "error"]
Kind = Literal["rate", "invalid", "drop"]
SHOWN: dict[str, str] = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR"}
"""A set's decision as messages and reports show it."""
DEFAULT_CONFIDENCE = 0.95
"""The level of a sequential set that names no ``confidence``."""


@dataclass(frozen=True)
class Sampled:
    """What the sequential gate decided of one metric: each bound's decision ("pass",
    "fail", or None: not decided when the set stopped for another reason), and the
    anytime-valid interval of the full set's pass rate at the stopping point."""

    population: int
    """How many of the set's questions the metric applies to."""
    rate: Decision | None
    invalid: Decision | None = None
    drop: Decision | None = None
    bounds: tuple[float, float] | None = None
    level: float = DEFAULT_CONFIDENCE
    read: int = 0
    """How many questions of the visiting order the set's decision read."""
    size: int = 0
    """How many questions the set has."""

    def to_json(self) -> dict[str, Any]:
        return {
            "population": self.population,
            "rate": self.rate,
            "invalid": self.invalid,
            "drop": self.drop,
            "level": self.level,
        }

    @property
    def undecided(self) -> bool:
        """No bound failed, and one is not decided (the set stopped for another reason)."""
        decisions = (self.rate, self.invalid, self.drop)
        return "fail" not in decisions and None in decisions


@dataclass
class _Bound:
    metric: str
    kind: Kind
    tau: float
    test: SequentialTest


class Sampling:
    """A sequential set's decision, fed its questions' results as they come in.

    ``applicable`` maps each question id to the metrics that apply to it; ``must_pass``
    names the questions that may not fail any metric (always asked). Not thread-safe
    by itself (``RagSet`` feeds it under its lock)."""

    def __init__(
        self,
        name: str,
        gate: Any,
        applicable: Mapping[str, Sequence[str]],
        must_pass: Collection[str] = (),
    ) -> None:
        self.name = name
        self.seed: int = gate.seed if gate.seed is not None else sequential.default_seed(name)
        self.order: list[str] = sequential.order(sorted(applicable), self.seed)
        self.applicable = {qid: tuple(names) for qid, names in applicable.items()}
        self.must_pass = frozenset(must_pass)
        self.level = gate.confidence if gate.confidence is not None else DEFAULT_CONFIDENCE
        self.metrics: list[str] = []
        for names in applicable.values():
            self.metrics.extend(n for n in names if n not in self.metrics)
        population = {m: sum(m in names for names in applicable.values()) for m in self.metrics}
        self.population = population
        bounds: list[tuple[str, Kind, float]] = []
        for metric in self.metrics:
            bounds.append((metric, "rate", threshold_for(gate.thresholds, metric)))
            if gate.max_invalid is not None:
                bounds.append((metric, "invalid", 1.0 - gate.max_invalid))
            baseline = (gate.baselines or {}).get(metric) if gate.drops else None
            if baseline is not None:
                bounds.append((metric, "drop", baseline - gate.max_drop))
        alpha = sequential.split_alpha(1.0 - self.level, max(1, len(bounds)))
        self._bounds = [
            _Bound(metric, kind, tau, SequentialTest(population[metric], tau, alpha))
            for metric, kind, tau in bounds
        ]
        self.results: dict[str, tuple[Mapping[str, MetricResult], str | None]] = {}
        self._counts: dict[str, tuple[int, int, int, int]] = {}
        self.visited = 0
        """How many questions of the order the decision has read (its prefix)."""
        self.decision: SetDecision | None = None
        self.reason: str | None = None
        self._check()

    @property
    def size(self) -> int:
        return len(self.order)

    def wanted(self, question_id: str) -> bool:
        """Whether the question is still to be asked: the set is not decided, or it is a
        ``must_pass`` question (always asked)."""
        return self.decision is None or question_id in self.must_pass

    def add(self, question_id: str, metrics: Mapping[str, MetricResult], error: str | None) -> None:
        """One question's result (in any order): the decision reads it in its turn."""
        before = self.results.get(question_id)
        if before is not None:
            self._count(before[0], -1)
        self.results[question_id] = (metrics, error)
        self._count(metrics, 1)
        if self.decision is not None:
            return
        if error is not None:
            self._decide("error", f"question {question_id!r} errored")
            return
        if question_id in self.must_pass:
            failed = [name for name, metric in metrics.items() if not metric.passing]
            if failed:
                self._decide(
                    "failed", f"must_pass question {question_id!r} failed {', '.join(failed)}"
                )
                return
        while self.decision is None and self.visited < self.size:
            qid = self.order[self.visited]
            if qid not in self.results:
                return
            self._feed(*self.results[qid])
            self.visited += 1
            self._check()

    def _feed(self, metrics: Mapping[str, MetricResult], error: str | None) -> None:
        for bound in self._bounds:
            metric = metrics.get(bound.metric)
            if metric is None or bound.test.decision is not None:
                continue
            if bound.kind == "invalid":
                bound.test.update(0.0 if metric.invalid else 1.0)
            else:
                bound.test.update(1.0 if metric.passing else 0.0)

    def _check(self) -> None:
        for bound in self._bounds:
            if bound.test.decision == "fail":
                self._decide("failed", self._why(bound))
                return
        if all(bound.test.decision == "pass" for bound in self._bounds):
            self._decide("passed", f"every bound holds at {self.level:.0%}")

    def _decide(self, decision: SetDecision, reason: str) -> None:
        self.decision, self.reason = decision, reason

    def _why(self, bound: _Bound) -> str:
        level = f"at {self.level:.0%}"
        if bound.kind == "rate":
            return f"{bound.metric} < {bound.tau:.2f} {level}"
        if bound.kind == "invalid":
            return f"{bound.metric} invalid judgements > max_invalid {1 - bound.tau:.2f} {level}"
        return f"{bound.metric} < {bound.tau:.2f}, more than max_drop below the baseline {level}"

    def skipped_reason(self) -> str:
        """Why a question that was never visited was not asked."""
        decided = SHOWN[self.decision or "failed"]
        return (
            f"not sampled: {self.name} decided {decided} ({self.reason}) on the first "
            f"{self.visited:,} of its {self.size:,} questions in random order"
        )

    def sampled(self, metric: str, *, with_bounds: bool = True) -> Sampled:
        """What the gate decided of ``metric`` (with the interval at the stopping point,
        which costs a replay over every possible count: ask for it once per report)."""
        found = {bound.kind: bound for bound in self._bounds if bound.metric == metric}
        rate = found["rate"].test
        return Sampled(
            population=self.population.get(metric, 0),
            rate=rate.decision,
            invalid=found["invalid"].test.decision if "invalid" in found else "pass",
            drop=found["drop"].test.decision if "drop" in found else "pass",
            bounds=_rounded(rate.bounds()) if with_bounds else None,
            level=self.level,
            read=self.visited,
            size=self.size,
        )

    def counted(self, metric: str) -> tuple[int, int, int, int]:
        """(n, passed, invalid, errors) of ``metric`` over the questions judged (those the
        decision read, and those that were already running when it was made)."""
        n, passed, invalid, errors = self._counts.get(metric, (0, 0, 0, 0))
        return n, passed, invalid, errors

    def _count(self, metrics: Mapping[str, MetricResult], sign: int) -> None:
        """Keep :meth:`counted` as results come in (it is read for every failed question
        that waits on the set, so it is not recounted over all the results each time)."""
        for name, result in metrics.items():
            n, passed, invalid, errors = self._counts.get(name, (0, 0, 0, 0))
            self._counts[name] = (
                n + sign,
                passed + sign * result.passing,
                invalid + sign * (result.result == "invalid"),
                errors + sign * (result.result == "error"),
            )

    def to_json(self) -> dict[str, Any]:
        """The set's ``sample`` entry in the report."""
        return {
            "method": "sequential",
            "seed": self.seed,
            "level": self.level,
            "population": self.size,
            "visited": len(self.results),
            "decided_after": self.visited,
            "decision": self.decision,
            "reason": self.reason,
        }


def _rounded(bounds: tuple[float, float]) -> tuple[float, float]:
    return (round(bounds[0], 12), round(bounds[1], 12))


def replay(
    name: str,
    gate: Any,
    records: Iterable[Mapping[str, Any]],
) -> Sampling:
    """The decision of a sequential set from its questions' records, as the run made it:
    every question (visited or not) with the metrics that apply to it."""
    records = list(records)
    applicable = {
        record["id"]: tuple(record.get("applicable") or record["metrics"]) for record in records
    }
    must_pass = [record["id"] for record in records if record["must_pass"]]
    sampling = Sampling(name, gate, applicable, must_pass)
    for record in records:
        if record.get("outcome") == "skipped":
            continue
        metrics = {n: MetricResult.from_json(m) for n, m in record["metrics"].items()}
        sampling.add(record["id"], metrics, record.get("error"))
    return sampling
