"""``rageval calibrate``: does the judge agree with people? (no pytest here)

A labels file holds hand-judged cases::

    cases:
      - query: How long do refunds take?
        response: Refunds take 5 days.
        contexts: [Refunds are processed within 5 business days.]
        reference: Within 5 business days.      # optional (correctness, token metrics)
        labels: {faithfulness: true, relevancy: true}

Each labelled metric is judged as the plugin judges it (the same strict reading of the
judge's answer; an *invalid* verdict counts as not passing, as it does in the gate), and
compared with the label: accuracy, Cohen's kappa and the confusion matrix per metric, and
every case where the judge and the label disagree.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_rageval import judges, retry
from pytest_rageval.questions import Question
from pytest_rageval.questions.labels import CASE_KEYS as CASE_KEYS
from pytest_rageval.questions.labels import CalibrationError as CalibrationError
from pytest_rageval.questions.labels import Case
from pytest_rageval.questions.labels import load_labels as load_labels


@dataclass
class Verdict:
    """What the judge said about one case for one metric."""

    case: Case
    metric: str
    passing: bool | None = None
    """True / False; None when the evaluation raised (an error, left out of agreement)."""
    invalid: str | None = None
    feedback: str | None = None
    error: str | None = None

    @property
    def label(self) -> bool:
        return self.case.labels[self.metric]


@dataclass
class Agreement:
    """How one metric's verdicts agree with its labels."""

    metric: str
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def judged(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.passing is not None]

    def count(self, label: bool, passing: bool) -> int:
        return sum(1 for v in self.judged if v.label is label and v.passing is passing)

    @property
    def accuracy(self) -> float | None:
        judged = self.judged
        if not judged:
            return None
        return sum(v.label is v.passing for v in judged) / len(judged)

    @property
    def kappa(self) -> float | None:
        """Cohen's kappa: (observed - chance agreement) / (1 - chance agreement). None when
        chance agreement is 1 (every label and verdict the same: nothing to tell apart)."""
        return cohen_kappa(
            self.count(True, True),
            self.count(True, False),
            self.count(False, True),
            self.count(False, False),
        )

    @property
    def disagreements(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.passing is None or v.passing is not v.label]


def cohen_kappa(tp: int, fn: int, fp: int, tn: int) -> float | None:
    """Cohen's kappa of a 2x2 table (label x verdict): ``tp`` labelled pass and judged
    pass, ``fn`` labelled pass and judged fail, ``fp`` labelled fail and judged pass,
    ``tn`` both fail. None when it is undefined (chance agreement of 1)."""
    n = tp + fn + fp + tn
    if n == 0:
        return None
    observed = (tp + tn) / n
    chance = ((tp + fn) / n) * ((tp + fp) / n) + ((fp + tn) / n) * ((fn + tn) / n)
    if math.isclose(chance, 1.0):
        return None
    return (observed - chance) / (1 - chance)


def calibrate(
    cases: Sequence[Case],
    evaluators: Mapping[str, Any],
    workers: int = 8,
    timeout: float = 120.0,
    cleanup: Callable[[], Awaitable[Any]] | None = None,
    retries: int = 3,
) -> tuple[list[Agreement], list[str]]:
    """Judge every labelled metric the evaluators provide, on one event loop; the
    agreements (in evaluator order) and the labelled metrics no evaluator provides.
    ``cleanup`` runs on that loop at the end (closing the judge's HTTP client). A
    transient failure (429, 5xx, time-out) is retried ``retries`` times; one that lasts
    is that case's error."""
    metrics = [name for name in evaluators if any(name in case.labels for case in cases)]
    unknown = sorted({m for case in cases for m in case.labels} - set(evaluators))
    if not metrics:
        raise CalibrationError(
            f"no evaluator provides a labelled metric: the labels name {', '.join(unknown)}; "
            f"the evaluators are {', '.join(evaluators) or 'none'}"
        )
    agreements = {metric: Agreement(metric) for metric in metrics}
    jobs = [Verdict(case, metric) for case in cases for metric in metrics if metric in case.labels]

    async def judge_all() -> None:
        slots = asyncio.Semaphore(workers)
        judging = (_judge(v, evaluators[v.metric], slots, timeout, retries) for v in jobs)
        try:
            await asyncio.gather(*judging)
        finally:
            if cleanup is not None:
                await cleanup()

    asyncio.run(judge_all())
    for verdict in jobs:
        agreements[verdict.metric].verdicts.append(verdict)
    return list(agreements.values()), unknown


async def _judge(
    verdict: Verdict, evaluator: Any, slots: asyncio.Semaphore, timeout: float, retries: int
) -> None:
    """Judge one labelled case with one evaluator, filling in ``verdict``; a failure is
    that case's error, not the run's."""
    case = verdict.case
    question = Question(query=case.query, reference=case.reference, contexts=None)
    try:
        call = judges.prepare(
            evaluator,
            query=case.query,
            response=case.response,
            contexts=list(case.contexts) if case.contexts is not None else None,
            **judges.reference_kwargs(question),
        )
        async with slots:
            result = await retry.with_retries(lambda: asyncio.wait_for(call(), timeout), retries)
    except Exception as exc:  # one case's failure is reported, not the run's
        verdict.error = f"{type(exc).__name__}: {exc}"
        return
    if getattr(result, "invalid_result", False):
        verdict.passing = False  # as the gate counts it
        verdict.invalid = str(getattr(result, "invalid_reason", None) or "invalid")
    else:
        verdict.passing = bool(result.passing)
    verdict.feedback = getattr(result, "feedback", None)


def render(agreements: Sequence[Agreement], unknown: Sequence[str], limit: int = 80) -> list[str]:
    """The table (accuracy, kappa, confusion matrix per metric) and the disagreements."""
    from tabulate import tabulate

    rows = []
    for agreement in agreements:
        kappa = agreement.kappa
        accuracy = agreement.accuracy
        rows.append(
            [
                agreement.metric,
                len(agreement.verdicts),
                "n/a" if accuracy is None else f"{accuracy:.2f}",
                "n/a" if kappa is None else f"{kappa:.2f}",
                agreement.count(True, True),
                agreement.count(True, False),
                agreement.count(False, True),
                agreement.count(False, False),
                sum(v.invalid is not None for v in agreement.verdicts),
                sum(v.error is not None for v in agreement.verdicts),
            ]
        )
    header = [
        "metric",
        "cases",
        "accuracy",
        "kappa",
        "pass/pass",
        "pass/fail",
        "fail/pass",
        "fail/fail",
        "invalid",
        "errors",
    ]
    lines = tabulate(rows, headers=header, disable_numparse=True).splitlines()
    lines.append("(label/judge: pass/fail = labelled passing, judged failing)")
    for metric in unknown:
        lines.append(f"not judged: no evaluator provides {metric!r}")
    for agreement in agreements:
        for verdict in agreement.disagreements:
            lines.append(_disagreement(verdict, limit))
    return lines


def _disagreement(verdict: Verdict, limit: int) -> str:
    label = "passing" if verdict.label else "failing"
    if verdict.error is not None:
        said = f"error: {verdict.error}"
    elif verdict.invalid is not None:
        said = f"invalid ({verdict.invalid})"
    else:
        said = "passing" if verdict.passing else "failing"
        if verdict.feedback:
            said += f": {_clip(' '.join(verdict.feedback.split()), limit)}"
    query = _clip(verdict.case.query, limit)
    return f"{verdict.case.where}: {verdict.metric}: labelled {label}, judged {said} ({query!r})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
