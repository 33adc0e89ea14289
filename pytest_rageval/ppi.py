"""PPI++ for a set's pass rate, when people labelled some of its own questions.

Prediction-powered inference is exact for that population: PPI++ (Angelopoulos, Duchi and Zrnic,
arXiv 2311.01453; reference code aangelopoulos/ppi_py ``ppi_mean_ci``,
``ppi_mean_pointestimate``, ``_calc_lam_glm``). With ``Y`` the n human labels, ``f`` the
judge's verdicts on them and ``u`` its verdicts on the N unlabelled questions,
``theta = lambda mean(u) + mean(Y - lambda f)`` with the power-tuning
``lambda = cov(Y, f) / ((1 + n / N) var(f, u))`` clipped to [0, 1] (``cov`` over n,
``var`` with ``ddof = 1`` over all n + N verdicts, as ppi_py computes them), and
``se^2 = lambda^2 var(u) / N + var(Y - lambda f) / n``. Estimating ``lambda`` on the same
labels it weighs makes small-sample intervals optimistic (Mani et al. 2025, "No Free
Lunch: Non-Asymptotic Analysis of Prediction-Powered Inference"), so :func:`ppi_rate`
cross-fits it by default: the labels are dealt into ``folds`` folds (the i-th labelled
question to fold ``i mod folds``, so that a run is reproducible), each fold's ``lambda``
is estimated on the other folds, and the fold estimates are averaged, weighted by size.
``folds=1`` is ppi_py's single-sample estimator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_rageval.correction import (
    CONFIDENCE,
    Uncorrectable,
    UncorrectableError,
    clip,
    z_value,
)

MIN_PPI_LABELS = 30
"""Fewest labelled questions of a set's own that PPI++ uses: the rule of thumb for the
normal approximation of a mean, and at 2 folds 15 per fold to estimate lambda on."""


@dataclass(frozen=True)
class PPIRate:
    """A set's pass rate from human labels on some of its questions and the judge on all."""

    estimate: float
    """PPI++'s estimate of the rate people would give, clipped to [0, 1]."""
    lower: float
    upper: float
    lam: float
    """The power-tuning weight (the mean over folds when cross-fitted)."""
    labelled: int
    unlabelled: int
    folds: int
    confidence: float


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def _var(xs: Sequence[float], ddof: int = 0) -> float:
    m = _mean(xs)
    return math.fsum((x - m) ** 2 for x in xs) / (len(xs) - ddof)


def _lam(y: Sequence[float], f: Sequence[float], u: Sequence[float]) -> float:
    """ppi_py's ``_calc_lam_glm`` for a mean, clipped to [0, 1]: 0 when the judge's
    verdicts do not vary (then lambda does not matter)."""
    n, big_n = len(y), len(u)
    my, mf = _mean(y), _mean(f)
    cov = math.fsum((a - my) * (b - mf) for a, b in zip(y, f, strict=True)) / n
    var = _var([*f, *u], ddof=1)
    if var <= 0:
        return 0.0
    return clip(cov / ((1 + n / big_n) * var))


def ppi_rate(
    judge: Sequence[bool | float],
    human: Sequence[bool | float | None],
    folds: int = 2,
    confidence: float = CONFIDENCE,
) -> PPIRate:
    """PPI++ for a set: ``judge`` has the judge's verdict on every question, ``human`` the
    person's on the same questions (None where unlabelled). ``folds`` cross-fits lambda
    (``1``: estimated on all labels, as ppi_py does).

    Raises :class:`UncorrectableError` when fewer than ``MIN_PPI_LABELS`` questions are
    labelled, and ``ValueError`` when no question is left unlabelled."""
    y, f, u = _ppi_split(judge, human, folds)
    z = z_value(confidence)
    if folds == 1:
        estimate, var, lam = _ppi_fit(y, f, u)
    else:
        estimate, var, lam = _ppi_cross_fit(y, f, u, folds)
    half = z * math.sqrt(var)
    return PPIRate(
        estimate=clip(estimate),
        lower=clip(estimate - half),
        upper=clip(estimate + half),
        lam=lam,
        labelled=len(y),
        unlabelled=len(u),
        folds=folds,
        confidence=confidence,
    )


def _ppi_split(
    judge: Sequence[bool | float], human: Sequence[bool | float | None], folds: int
) -> tuple[list[float], list[float], list[float]]:
    """``(Y, f, u)``: the human labels, the judge's verdicts on the labelled questions and
    on the unlabelled ones, once they are enough for PPI++ with ``folds`` folds."""
    if len(judge) != len(human):
        raise ValueError(
            f"judge ({len(judge)}) and human ({len(human)}) must cover the same questions"
        )
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    y = [float(h) for h in human if h is not None]
    f = [float(j) for j, h in zip(judge, human, strict=True) if h is not None]
    u = [float(j) for j, h in zip(judge, human, strict=True) if h is None]
    n, big_n = len(y), len(u)
    if n < MIN_PPI_LABELS:
        more = MIN_PPI_LABELS - n
        raise UncorrectableError(
            Uncorrectable(
                "too few labels",
                f"too few labelled questions for prediction-powered inference: {n} of "
                f"{n + big_n} carry a person's label, and it needs at least "
                f"{MIN_PPI_LABELS}; label at least {more} more question"
                f"{'s' if more != 1 else ''}, chosen at random",
                more,
                0,
            )
        )
    if big_n == 0:
        raise ValueError("every question is labelled: the labels' mean needs no judge")
    if 2 * folds > n:
        raise ValueError(f"folds ({folds}) must leave at least 2 labels in each fold of {n}")
    return y, f, u


def _ppi_fit(
    y: Sequence[float], f: Sequence[float], u: Sequence[float]
) -> tuple[float, float, float]:
    """ppi_py's single-sample ``(estimate, variance, lambda)``: lambda from every label."""
    n, big_n = len(y), len(u)
    lam = _lam(y, f, u)
    estimate = lam * _mean(u) + _mean([a - lam * b for a, b in zip(y, f, strict=True)])
    var = lam**2 * _var(u) / big_n + _var([a - lam * b for a, b in zip(y, f, strict=True)]) / n
    return estimate, var, lam


def _ppi_cross_fit(
    y: Sequence[float], f: Sequence[float], u: Sequence[float], folds: int
) -> tuple[float, float, float]:
    """``(estimate, variance, lambda)`` with each fold's lambda estimated on the other
    folds (the i-th label in fold ``i mod folds``), weighted by the folds' sizes."""
    n, big_n = len(y), len(u)
    mu = _mean(u)
    estimate = var = lam = 0.0
    for fold in [list(range(k, n, folds)) for k in range(folds)]:
        rest = sorted(set(range(n)) - set(fold))
        lam_k = _lam([y[i] for i in rest], [f[i] for i in rest], u)
        r = [y[i] - lam_k * f[i] for i in fold]
        w = len(fold) / n
        estimate += w * (lam_k * mu + _mean(r))
        var += w * w * _var(r) / len(fold)
        lam += w * lam_k
    var += lam**2 * _var(u) / big_n
    return estimate, var, lam
