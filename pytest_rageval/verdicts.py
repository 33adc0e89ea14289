"""Per-metric results and each question's record (no pytest here; its set's gate is in
``gate.py``).

Everything a report needs is turned into plain JSON-safe data here, so it can travel on
pytest reports (and later between xdist workers) and be written to the JSON report as is.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypedDict

from pytest_rageval.redaction import redact_all
from pytest_rageval.results import QuestionResult
from pytest_rageval.text import clip

Outcome = Literal["passed", "tolerated", "failed", "error", "skipped", "judged"]
"""``judged``: on a shard, a question its whole set's rates decide (``rageval merge`` does)."""
Result = Literal["passing", "failing", "invalid", "error"]


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
    """With ``repeat`` > 1: the votes cast, in order; this result is their majority."""
    repeat: int = 1
    """The votes asked for; ``votes`` holds fewer when the majority was decided before
    the last (the rest could not change it)."""
    human: bool | None = None
    """A person's label of this answer, from the question's ``labels`` (None: none, or
    the answer changed since the labelling)."""
    stale: bool = False
    """The question labels this metric, but the app's answer changed since the labelling
    (the label does not count)."""

    @property
    def unstable(self) -> bool:
        """The votes cast disagree (some pass, some do not)."""
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
        votes = tuple(cls.from_json(vote) for vote in data.get("votes") or ())
        return cls(
            passing=bool(data.get("passing")),
            score=data.get("score"),
            feedback=data.get("feedback"),
            invalid=bool(data.get("invalid")),
            error=data.get("error"),
            reason=data.get("reason"),
            votes=votes,
            repeat=int(data.get("repeat") or len(votes) or 1),
            human=data.get("human"),
            stale=bool(data.get("stale")),
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
                {
                    "votes": [vote.to_json() for vote in self.votes],
                    "repeat": self.repeat,
                    "unstable": self.unstable,
                }
                if self.votes
                else {}
            ),
            **({"human": self.human} if self.human is not None else {}),
            **({"stale": True} if self.stale else {}),
        }


def majority(votes: Sequence[MetricResult], repeat: int | None = None) -> MetricResult:
    """The verdict of several votes: passing when more than half pass (a tie fails; an
    invalid vote does not pass), invalid when more than half are invalid, else failing.
    The score is the mean of the votes' scores. ``repeat``: the votes asked for (default
    all of ``votes``); when the votes cast decided the majority of ``repeat``
    (sequential.majority_decided), their majority is that verdict."""
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
        repeat=repeat or len(votes),
    )


def ballot(evaluation: Any) -> bool | None:
    """One vote as :func:`majority` counts it: True passing, False failing, None invalid."""
    vote = judged(evaluation)
    return None if vote.invalid else vote.passing


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
        if votes:  # repeat > 1, even when one vote decided it
            metrics[name] = majority([judged(vote) for vote in votes], result.repeat)
        else:
            metrics[name] = judged(result.evaluations[name])
    return _labelled(result, metrics)


def _labelled(result: QuestionResult, metrics: dict[str, MetricResult]) -> dict[str, MetricResult]:
    """``metrics`` with the question's labels of them, where the app's answer today is
    the one labelled (hashed as the verdict cache hashes text: SHA-256 of its UTF-8)."""
    question = result.question
    if not question.labels or result.response is None:
        return metrics
    digest = hashlib.sha256(result.response.encode("utf-8", "surrogatepass")).hexdigest()
    same = digest == question.labelled_response_sha256
    for name, label in question.labels:
        metric = metrics.get(name)
        if metric is not None and metric.error is None:
            metrics[name] = replace(metric, human=label) if same else replace(metric, stale=True)
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


class _SetFields(TypedDict, total=False):
    """What its set adds to a question's record (``RagSet.tag``): reports group it by
    set, and gate it with the set's :class:`~pytest_rageval.gate.Gate`."""

    set: str
    applicable: list[str]
    """Of a question a sequential set never asked: the metrics that apply to it."""
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
    sources: list[list[str]] | None
    """Each retrieved node's ids (its ``ref_doc_id`` and ``file_name``), in the order of
    ``contexts``; None when the app returned no nodes."""
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
        sources=[list(ids) for ids in result.sources] if result.sources is not None else None,
        outcome=outcome_,
        evaluated=result.evaluated,
        error=result.error,
        metrics={name: metric.to_json() for name, metric in metrics.items()},
    )
    redacted: QuestionRecord = redact_all(record)
    return redacted
