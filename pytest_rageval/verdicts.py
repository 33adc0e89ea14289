"""Per-metric results, set pass rates and each question's outcome (no pytest here).

Everything a report needs is turned into plain JSON-safe data here, so it can travel on
pytest reports (and later between xdist workers) and be written to the JSON report as is.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Literal, TypedDict

from pytest_rageval.redaction import redact_all
from pytest_rageval.results import QuestionResult
from pytest_rageval.stats import wilson
from pytest_rageval.text import clip
from pytest_rageval.text import printable as text_printable
from pytest_rageval.thresholds import threshold_for

Outcome = Literal["passed", "tolerated", "failed", "error"]
Result = Literal["passing", "failing", "invalid", "error"]
EPSILON = 1e-9
"""Rates are compared with this slack, so 7 of 10 passing meets a threshold of 0.7."""


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric's judgement of one question: passing, failing, invalid (the judge
    answered, but not in a form that can be read) or error (no judgement at all)."""

    passing: bool
    score: float | None = None
    feedback: str | None = None
    invalid: bool = False
    error: str | None = None
    reason: str | None = None
    """Why a judgement is invalid."""
    votes: tuple[MetricResult, ...] = ()
    """With ``repeat`` > 1: every vote; this result is their majority."""

    @property
    def unstable(self) -> bool:
        """The votes disagree (some pass, some do not)."""
        return len({vote.passing for vote in self.votes}) > 1

    @property
    def result(self) -> Result:
        if self.error is not None:
            return "error"
        if self.invalid:
            return "invalid"
        return "passing" if self.passing else "failing"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricResult:
        return cls(
            passing=bool(data.get("passing")),
            score=data.get("score"),
            feedback=data.get("feedback"),
            invalid=bool(data.get("invalid")),
            error=data.get("error"),
            reason=data.get("reason"),
            votes=tuple(cls.from_json(vote) for vote in data.get("votes") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "passing": self.passing,
            "score": self.score,
            "feedback": self.feedback,
            "invalid": self.invalid,
            "reason": self.reason,
            "error": self.error,
            **(
                {"votes": [vote.to_json() for vote in self.votes], "unstable": self.unstable}
                if self.votes
                else {}
            ),
        }


def majority(votes: Sequence[MetricResult]) -> MetricResult:
    """The verdict of several votes: passing when more than half pass (a tie fails; an
    invalid vote does not pass), invalid when more than half are invalid, else failing.
    The score is the mean of the votes' scores."""
    passed = sum(vote.passing for vote in votes)
    passing = passed * 2 > len(votes)
    invalid = not passing and sum(vote.invalid for vote in votes) * 2 > len(votes)
    agreeing = [v for v in votes if v.passing == passing and v.invalid == invalid] or list(votes)
    scores = [vote.score for vote in votes if vote.score is not None]
    return MetricResult(
        passing=passing,
        score=sum(scores) / len(scores) if scores else None,
        feedback=agreeing[0].feedback,
        invalid=invalid,
        reason=agreeing[0].reason if invalid else None,
        votes=tuple(votes),
    )


def metric_results(result: QuestionResult) -> dict[str, MetricResult]:
    """Every applicable metric of a question; errors and invalid judgements do not pass."""
    metrics: dict[str, MetricResult] = {}
    query_error = result.errors.get("query")
    for name in result.applicable:
        error = query_error or result.errors.get(name)
        if error is not None:
            metrics[name] = MetricResult(passing=False, error=error)
            continue
        votes = result.votes.get(name)
        if votes and len(votes) > 1:
            metrics[name] = majority([judged(vote) for vote in votes])
        else:
            metrics[name] = judged(result.evaluations[name])
    return metrics


def judged(evaluation: Any) -> MetricResult:
    """One evaluator's ``EvaluationResult`` as a metric result, its feedback (and reason)
    clipped to ``TEXT_LIMIT`` characters: a judge can answer megabytes, and every report
    carries this text."""
    score = getattr(evaluation, "score", None)
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        score = None
    feedback = getattr(evaluation, "feedback", None)
    reason = getattr(evaluation, "invalid_reason", None)
    invalid = bool(getattr(evaluation, "invalid_result", False))
    if not invalid and evaluation.passing is None:
        invalid, reason = True, reason or "the evaluator gave no verdict"
    if score is not None and not math.isfinite(score):
        invalid, reason = True, reason or f"the evaluator's score is {score!r}"
    return MetricResult(
        passing=bool(evaluation.passing) and not invalid,
        score=float(score) if score is not None and math.isfinite(score) else None,
        feedback=clip(feedback) if isinstance(feedback, str) else None,
        invalid=invalid,
        reason=clip(reason) if invalid and isinstance(reason, str) else None,
    )


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
        return self._meets(self.passed + self.pending)

    def _meets(self, passed: int) -> bool:
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
        """The 95% Wilson interval of the pass rate (None without questions)."""
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
        floor = self.floor
        return (
            floor is not None
            and bool(self.n)
            and (self.passed + self.pending < floor * self.n - EPSILON)
        )

    @property
    def kept(self) -> bool:
        """Within ``max_drop`` of the baseline, even if every pending question fails."""
        floor = self.floor
        return floor is None or not self.n or self.passed >= floor * self.n - EPSILON

    @property
    def invalid_ok(self) -> bool:
        """Invalid judgements within ``max_invalid`` (with ``pending``: even if all are)."""
        if self.max_invalid is None:
            return True
        return self.invalid + self.pending <= self.max_invalid * self.n + EPSILON

    @property
    def invalid_exceeded(self) -> bool:
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
        }


def set_rates(
    questions: Iterable[Mapping[str, MetricResult]],
    thresholds: Mapping[str, float],
    max_invalid: float | None = None,
    **gate: Any,
) -> dict[str, MetricRate]:
    """Pass rate per metric over the questions it applies to, in first-seen metric order
    (``gate``: the other keywords of :class:`Tally`)."""
    tally = Tally({}, thresholds, max_invalid, **gate)
    for metrics in questions:
        tally.add(metrics, count=True)
    return tally.rates()


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
    ) -> None:
        self.expected = dict(expected)
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
    if not rate.ok:
        return "FAILED"
    if rate.invalid_exceeded:
        return "FAILED (invalid)"
    if rate.dropped:
        return "FAILED (drop)"
    if must_pass_failures:
        return "FAILED (must_pass)"
    return "ok"


def format_fraction(value: float | None) -> str:
    """Rates and thresholds as fractions, the way the table and messages show them."""
    return "n/a" if value is None else f"{value:.2f}"


def shorten(text: str | None, width: int = 300) -> str:
    """One line for the terminal: white space folded, control characters escaped."""
    if text is None:
        return "(none)"
    flat = printable(" ".join(text.split()))
    return textwrap.shorten(flat, width, placeholder=" [...]") if flat else "(empty)"


def describe_drop(set_name: str, name: str, rate: MetricRate) -> str:
    """``rag_set.yaml: faithfulness pass rate 0.70 is 0.20 below the baseline's 0.90,
    more than max_drop 0.05`` (with questions still running: the best it can still be)."""
    assert rate.baseline is not None and rate.n
    best = (rate.passed + rate.pending) / rate.n
    text = (
        f"{set_name}: {name} pass rate {'at most ' if rate.pending else ''}"
        f"{format_fraction(best)} is {format_fraction(rate.baseline - best)} below the "
        f"baseline's {format_fraction(rate.baseline)}, more than max_drop "
        f"{format_fraction(rate.max_drop)}"
    )
    if rate.pending:
        text += f" (decided with {rate.pending} of {rate.n} questions still running)"
    return text


def describe_rate(set_name: str, name: str, rate: MetricRate) -> str:
    """``rag_set.yaml: faithfulness pass rate 3/4 = 0.75 < threshold 0.76``: the rate
    against its threshold, true whatever is still running. With questions pending it
    states the bound that decided (``at most`` when the threshold can no longer be met,
    ``at least`` when it is met whatever they give), else the range the rate may end in."""
    head = f"{set_name}: {name} pass rate"
    threshold = f"threshold {format_fraction(rate.threshold)}"
    if not rate.pending:
        return f"{head} {_rate_against(rate, rate.passed, '>=' if rate.ok else '<')} {threshold}"
    running = f"{rate.pending} of {rate.n} questions still running"
    best = rate.passed + rate.pending
    if not rate.could_pass:
        return (
            f"{head} at most {_rate_against(rate, best, '<')} {threshold} (decided with {running})"
        )
    if rate.ok:
        return (
            f"{head} at least {_rate_against(rate, rate.passed, '>=')} {threshold} "
            f"(decided with {running})"
        )
    return (
        f"{head} between {rate.passed}/{rate.n} = {format_fraction(rate.passed / rate.n)} and "
        f"{best}/{rate.n} = {format_fraction(best / rate.n)}, {threshold} (not decided yet: "
        f"{running})"
    )


def _rate_against(rate: MetricRate, passed: int, relation: str) -> str:
    """``3/4 = 0.75 <`` (with ``confidence``: and the lower bound of its interval)."""
    text = f"{passed}/{rate.n} = {format_fraction(passed / rate.n)}"
    if rate.confidence is None:
        return f"{text} {relation}"
    return (
        f"{text}, lower bound of its {rate.confidence:.0%} Wilson interval "
        f"{format_fraction(rate.lower_bound(passed))} {relation}"
    )


def explain(
    record: Mapping[str, Any],
    rates: Mapping[str, MetricRate] | None,
    set_name: str,
    newly: Collection[str] = (),
) -> str:
    """The failure message a user reads for a failed or errored question."""
    lines = [f"query:    {shorten(record['query'])}"]
    if record["outcome"] == "error":
        lines.insert(0, f"rag question errored: {printable(record['error'])}")
        if record["response"] is not None:
            lines.append(f"response: {shorten(record['response'])}")
        return "\n".join(lines)
    failed = [name for name, m in record["metrics"].items() if not m["passing"]]
    lines.insert(0, f"rag question failed {', '.join(failed)}")
    lines.append(f"response: {shorten(record['response'])}")
    for name in failed:
        metric = record["metrics"][name]
        if metric["invalid"]:
            # the reason is ours and says what to do: never cut it short
            lines.append(f"{name}: invalid judgement: {shorten(metric.get('reason'), 2000)}")
            if metric["feedback"] is not None:
                lines.append(f"  judge said: {shorten(metric['feedback'], 400)}")
        else:
            lines.append(f"{name}: failed; judge said: {shorten(metric['feedback'], 400)}")
        if record["must_pass"]:
            lines.append("  must_pass: this question may not fail any metric")
        elif rates is not None and name in rates:
            # only the bounds this question was failed by: a threshold still within reach,
            # or met, decided nothing, and saying "<" of it would be false
            rate = rates[name]
            if not rate.could_pass:
                lines.append("  " + describe_rate(set_name, name, rate))
            if name in newly and rate.dropped:
                was = "is new" if record.get("baseline") is None else "passed it in the baseline"
                lines.append(f"  {describe_drop(set_name, name, rate)}; this question {was}")
            if metric["invalid"] and rate.max_invalid is not None:
                relation = ">" if rate.invalid_exceeded else "<="
                lines.append(
                    f"  {set_name}: {name} invalid judgements {rate.invalid}/{rate.n} "
                    f"{relation} max_invalid {format_fraction(rate.max_invalid)}"
                )
    return "\n".join(lines)


class _SetFields(TypedDict, total=False):
    """What its set adds to a question's record (``RagSet.tag``), so that reports group
    and gate it by set."""

    set: str
    thresholds: dict[str, float]
    max_invalid: float | None
    max_drop: float | None
    confidence: float | None
    baseline_rates: dict[str, float | None] | None
    baseline: dict[str, Any] | None
    """What the baseline report said of this question (None: not in it, or no baseline)."""


class QuestionRecord(_SetFields):
    """One question as reports show it (JSON-safe, keys redacted): what was asked, what
    came back, each metric's result and the question's outcome. Made once per question,
    on the process that judged it; under xdist it reaches the controller on the item's
    report or in the worker's output."""

    id: str
    query: str
    reference: str | None
    must_pass: bool
    tags: list[str]
    response: str | None
    contexts: list[str] | None
    outcome: Outcome
    evaluated: bool
    """False when the question was never asked or judged (stopped, deadline, setup)."""
    error: str | None
    metrics: dict[str, dict[str, Any]]
    """Metric name -> :meth:`MetricResult.to_json`."""


def question_record(
    result: QuestionResult, metrics: Mapping[str, MetricResult], outcome_: Outcome
) -> QuestionRecord:
    """The JSON-safe record of one question, as it appears in reports (keys redacted)."""
    question = result.question
    record = QuestionRecord(
        id=question.id,
        query=question.query,
        reference=question.reference,
        must_pass=question.must_pass,
        tags=list(question.tags),
        response=result.response,
        contexts=list(result.contexts) if result.contexts is not None else None,
        outcome=outcome_,
        evaluated=result.evaluated,
        error=result.error,
        metrics={name: metric.to_json() for name, metric in metrics.items()},
    )
    redacted: QuestionRecord = redact_all(record)
    return redacted


def printable(text: str | None) -> str:
    """Control characters (terminal escapes and the like), bidi overrides and zero-width
    characters as visible ``\\x1b`` escapes (``text.printable``)."""
    if text is None:
        return "(none)"
    return text_printable(text)
