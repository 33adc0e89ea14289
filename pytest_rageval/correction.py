"""Correcting a judge's pass rate with human labels: Rogan-Gladen and PPI++.

Pure functions of counts and verdicts, no pytest and no third-party imports (like
:mod:`pytest_rageval.stats`), so that the gate can call them and a reviewer can check them
by hand. Two situations, two methods:

**A labels file on other answers** (the cases ``rageval calibrate`` reads). The judge's
sensitivity ``q1 = P(judge passes | a person passes)`` and specificity
``q0 = P(judge fails | a person fails)`` are measured on the labelled cases, and carried
over to the run, whose judge pass rate is ``p = k / n``. The corrected rate is the
Rogan-Gladen estimator ``theta = (p + q0 - 1) / (q0 + q1 - 1)``, clipped to [0, 1]
(:func:`correct`). Its interval is Lee et al.'s (2025, "How to Correctly Report
LLM-as-a-Judge Evaluations", arXiv 2511.21140, code UW-Madison-Lee-Lab/LLM-judge-reporting
``calibration.py``): with ``z`` the normal quantile, each rate is first smoothed,
``p~ = (n p + z^2/2) / (n + z^2)``, ``q0~ = (m0 q0 + 1) / (m0 + 2)``,
``q1~ = (m1 q1 + 1) / (m1 + 2)``, and ``n~ = n + z^2``, ``m0~ = m0 + 2``, ``m1~ = m1 + 2``;
then ``theta~ = (p~ + q0~ - 1) / (q0~ + q1~ - 1)``, a bias shift
``d = 2 z^2 (theta~ q1~ (1 - q1~) / m1~ - (1 - theta~) q0~ (1 - q0~) / m0~)``, and the
standard error adds the test set's variance and both halves of the labelled set's:
``se = sqrt(p~ (1 - p~) / n~ + (1 - theta~)^2 q0~ (1 - q0~) / m0~
+ theta~^2 q1~ (1 - q1~) / m1~) / (q0~ + q1~ - 1)``. The interval is
``theta~ + d -/+ z se``, each end clipped to [0, 1] (:func:`lee_interval`).

The correction divides by Youden's ``J = q0 + q1 - 1``. It is refused, never replaced by
the raw rate, when ``J < MIN_YOUDEN`` (0.2) or when fewer than ``MIN_LABELS`` (10) cases of
either kind are labelled (:func:`check_labels`, :class:`Uncorrectable`). Why 10: below it
one disagreement moves q0 or q1 by more than ten points, the smoothing (one pseudo-case
each way) is a sixth of the data or more, and the normal approximation the interval rests
on (at least ~5 expected outcomes of each kind, at q near 0.5) cannot hold; with 10 each
``J`` keeps at least 10/12 of its value after smoothing, so the interval's denominator
stays positive whenever ``J >= 0.2``. Lee et al.'s own coverage figures start at 10s of
labels; ``benchmarks/bench_calibration.py`` measures coverage from 50 each.

:func:`allocate_labels` is Lee et al.'s split of a label budget ``m`` between answers
people pass (``m1``) and fail (``m0``) that minimises the corrected interval:
``m1 = m / (1 + (1 / p - 1) sqrt(kappa))`` with ``kappa`` the ratio of the judge's error
rates, ``(1 - q0) / (1 - q1)``, each smoothed by one pseudo-error when labels already
exist (``allocation.py``).

**Labels on the set's own questions** (a subset of them): PPI++, in
:mod:`pytest_rageval.ppi`, which uses the same refusals (:class:`Uncorrectable`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import Literal

from pytest_rageval.stats import wilson

CONFIDENCE = 0.95
MIN_LABELS = 10
"""Fewest labelled answers of each kind (people pass, people fail) a correction uses."""
MIN_YOUDEN = 0.2
"""Smallest ``J = q0 + q1 - 1`` a correction divides by."""

Problem = Literal["too few labels", "judge near chance"]


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2)


def clip(x: float) -> float:
    """``x`` within [0, 1]."""
    return max(0.0, min(1.0, x))


@dataclass(frozen=True)
class Labels:
    """How a judge did on cases people labelled."""

    people_passed: int
    """``m1``: labelled cases people pass."""
    judge_passed: int
    """``x1``: of those, the ones the judge passes too."""
    people_failed: int
    """``m0``: labelled cases people fail."""
    judge_failed: int
    """``y0``: of those, the ones the judge fails too."""

    def __post_init__(self) -> None:
        if not 0 <= self.judge_passed <= self.people_passed:
            raise ValueError(
                f"judge_passed must lie in 0..{self.people_passed}, got {self.judge_passed}"
            )
        if not 0 <= self.judge_failed <= self.people_failed:
            raise ValueError(
                f"judge_failed must lie in 0..{self.people_failed}, got {self.judge_failed}"
            )

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[bool, bool]]) -> Labels:
        """Counts from ``(person passes, judge passes)`` pairs, one per labelled case."""
        m1 = x1 = m0 = y0 = 0
        for person, judge in pairs:
            if person:
                m1 += 1
                x1 += bool(judge)
            else:
                m0 += 1
                y0 += not judge
        return cls(m1, x1, m0, y0)

    @property
    def q1(self) -> float:
        """Sensitivity: the share of cases people pass that the judge passes (nan if none)."""
        return self.judge_passed / self.people_passed if self.people_passed else math.nan

    @property
    def q0(self) -> float:
        """Specificity: the share of cases people fail that the judge fails (nan if none)."""
        return self.judge_failed / self.people_failed if self.people_failed else math.nan

    @property
    def youden(self) -> float:
        """``J = q0 + q1 - 1``: 0 for a judge no better than chance, 1 for a perfect one."""
        return self.q0 + self.q1 - 1


@dataclass(frozen=True)
class Uncorrectable:
    """Why a judge's rate cannot be corrected with these labels, and what to label next."""

    problem: Problem
    message: str
    more_passed: int
    """Answers people pass to label next (at least)."""
    more_failed: int
    """Answers people fail to label next (at least)."""


class UncorrectableError(ValueError):
    """Raised by :func:`correct` with the :class:`Uncorrectable` reason as ``.reason``."""

    def __init__(self, reason: Uncorrectable) -> None:
        super().__init__(reason.message)
        self.reason = reason


def _wanted(more_passed: int, more_failed: int) -> str:
    """ "3 more answers that people pass and 1 more answer that people fail", zeros left out."""
    return " and ".join(
        f"{count} more answer{'s' if count != 1 else ''} that people {kind}"
        for count, kind in ((more_passed, "pass"), (more_failed, "fail"))
        if count
    )


def check_labels(labels: Labels, judge_rate: float | None = None) -> Uncorrectable | None:
    """None when ``labels`` can correct a judge's rate, else the reason they cannot.

    ``judge_rate`` (the run's judge pass rate) only steers the advice on what to label
    next (:func:`allocate_labels`); without it the advice splits evenly."""
    m1, m0 = labels.people_passed, labels.people_failed
    if m1 < MIN_LABELS or m0 < MIN_LABELS:
        more_passed = max(0, MIN_LABELS - m1)
        more_failed = max(0, MIN_LABELS - m0)
        return Uncorrectable(
            "too few labels",
            f"too few labels to correct the judge: {m1} answers people pass and {m0} they "
            f"fail are labelled, and the correction needs at least {MIN_LABELS} of each; "
            f"label at least {_wanted(more_passed, more_failed)}",
            more_passed,
            more_failed,
        )
    j = labels.youden
    # exactly, so that J = 0.6 + 0.6 - 1 is not 0.19999999999999996
    exact_j = Fraction(labels.judge_failed, m0) + Fraction(labels.judge_passed, m1) - 1
    if exact_j < Fraction(repr(MIN_YOUDEN)):
        # more labels help when J is low by chance; a judge truly near chance needs fixing
        budget = m0 + m1
        m0_next, m1_next = allocate_labels(
            2 * budget,
            0.5 if judge_rate is None else judge_rate,
            labels.q0,
            labels.q1,
            labelled_failed=m0,
            labelled_passed=m1,
        )
        more_failed, more_passed = m0_next - m0, m1_next - m1
        # below 0 the judge disagrees more often than chance: a swapped label is likelier
        inverted = (
            " (below 0: are the labels, or the judge's verdicts, the wrong way round?)"
            if j < 0
            else ""
        )
        return Uncorrectable(
            "judge near chance",
            f"the judge barely agrees with people: it passes {labels.q1:.0%} of the "
            f"{m1} labelled answers people pass (q1) and fails {labels.q0:.0%} of the "
            f"{m0} they fail (q0), so J = q0 + q1 - 1 = {j:.2f}{inverted}, below {MIN_YOUDEN}, and "
            "the corrected rate would be noise; fix the judge (its prompt or model), or, "
            f"if the labels are too few to tell, label {_wanted(more_passed, more_failed)}",
            more_passed,
            more_failed,
        )
    return None


def rogan_gladen(p: float, q0: float, q1: float) -> float:
    """``(p + q0 - 1) / (q0 + q1 - 1)`` clipped to [0, 1]; needs ``q0 + q1 > 1``."""
    j = q0 + q1 - 1
    if j <= 0:
        raise ValueError(f"q0 + q1 - 1 must be positive, got {j}")
    return clip((p + q0 - 1) / j)


def lee_interval(
    p: float, q0: float, q1: float, n: int, m0: int, m1: int, z: float
) -> tuple[float, float]:
    """Lee et al.'s interval for the corrected rate (the module docstring has the formula)."""
    if n <= 0 or m0 <= 0 or m1 <= 0:
        raise ValueError("n, m0 and m1 must be positive")
    z2 = z * z
    p = (n * p + z2 / 2) / (n + z2)
    q0 = (m0 * q0 + 1) / (m0 + 2)
    q1 = (m1 * q1 + 1) / (m1 + 2)
    n_, m0_, m1_ = n + z2, m0 + 2, m1 + 2
    j = q0 + q1 - 1
    if j <= 0:
        raise ValueError(f"the smoothed q0 + q1 - 1 must be positive, got {j}")
    theta = (p + q0 - 1) / j
    v0 = q0 * (1 - q0) / m0_
    v1 = q1 * (1 - q1) / m1_
    shift = 2 * z2 * (theta * v1 - (1 - theta) * v0)
    se = math.sqrt(p * (1 - p) / n_ + (1 - theta) ** 2 * v0 + theta**2 * v1) / j
    centre = theta + shift
    return clip(centre - z * se), clip(centre + z * se)


@dataclass(frozen=True)
class Corrected:
    """A judge's pass rate corrected for its errors on labelled cases."""

    estimate: float
    """The Rogan-Gladen estimate of the rate people would give."""
    lower: float
    upper: float
    judge_rate: float
    """``p = k / n``: the judge's pass rate on the run."""
    n: int
    q1: float
    q1_interval: tuple[float, float]
    """Wilson interval of ``q1`` (at the same confidence)."""
    q0: float
    q0_interval: tuple[float, float]
    people_passed: int
    """``m1``: labelled answers people pass."""
    people_failed: int
    """``m0``: labelled answers people fail."""
    confidence: float


def correct(judge_passed: int, n: int, labels: Labels, confidence: float = CONFIDENCE) -> Corrected:
    """The corrected rate of a run whose judge passed ``judge_passed`` of ``n`` answers.

    Raises :class:`UncorrectableError` (with the reason and what to label next) when the
    labels cannot correct the judge (:func:`check_labels`): it never falls back to the
    judge's raw rate."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0 <= judge_passed <= n:
        raise ValueError(f"judge_passed must lie in 0..{n}, got {judge_passed}")
    p = judge_passed / n
    reason = check_labels(labels, p)
    if reason is not None:
        raise UncorrectableError(reason)
    z = z_value(confidence)
    q0, q1 = labels.q0, labels.q1
    m0, m1 = labels.people_failed, labels.people_passed
    lower, upper = lee_interval(p, q0, q1, n, m0, m1, z)
    q1_interval = wilson(labels.judge_passed, m1, z)
    q0_interval = wilson(labels.judge_failed, m0, z)
    assert q1_interval is not None and q0_interval is not None  # m0, m1 >= MIN_LABELS
    return Corrected(
        estimate=rogan_gladen(p, q0, q1),
        lower=lower,
        upper=upper,
        judge_rate=p,
        n=n,
        q1=q1,
        q1_interval=q1_interval,
        q0=q0,
        q0_interval=q0_interval,
        people_passed=m1,
        people_failed=m0,
        confidence=confidence,
    )


_EPS = 1e-6


def allocate_labels(
    total: int,
    p: float,
    q0: float,
    q1: float,
    labelled_failed: int = 0,
    labelled_passed: int = 0,
) -> tuple[int, int]:
    """Lee et al.'s split ``(m0, m1)`` of ``total`` labels between answers people fail and
    pass that minimises the corrected interval: ``m1 = total / (1 + (1/p - 1) sqrt(kappa))``,
    rounded (half to even, as their code), and kept at or above what is already labelled.

    ``kappa = (1 - q0) / (1 - q1)`` from beliefs when nothing is labelled yet, else
    ``((m0 (1 - q0) + 1) / (m0 + 2)) / ((m1 (1 - q1) + 1) / (m1 + 2))``: the error rates
    smoothed by one pseudo-error each; with ``m0 = m1`` this is their
    ``(m (1 - q0) + 1) / (m (1 - q1) + 1)``. ``p`` is the judge's pass rate on the run.
    At ``p = 0`` the formula's limit, ``m1`` as small as allowed (their code gives the
    whole budget to ``m1`` there)."""
    if not 0.0 <= p <= 1.0 or not 0.0 <= q0 <= 1.0 or not 0.0 <= q1 <= 1.0:
        raise ValueError("p, q0 and q1 must lie in [0, 1]")
    if labelled_failed < 0 or labelled_passed < 0:
        raise ValueError("label counts cannot be negative")
    if total < labelled_failed + labelled_passed:
        raise ValueError(
            f"total ({total}) must be at least the labels already there "
            f"({labelled_failed + labelled_passed})"
        )
    if labelled_failed == 0 and labelled_passed == 0:
        kappa = (1 - q0) / (1 - min(q1, 1 - _EPS))
    else:
        m0, m1 = labelled_failed, labelled_passed
        kappa = ((m0 * (1 - q0) + 1) / (m0 + 2)) / ((m1 * (1 - q1) + 1) / (m1 + 2))
    m1_best = 0.0 if p < _EPS else total / (1 + (1 / p - 1) * math.sqrt(kappa))
    m1_total = max(labelled_passed, round(min(total - labelled_failed, m1_best)))
    return total - m1_total, m1_total
