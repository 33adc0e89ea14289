"""Statistics for the gate: Wilson intervals, the exact McNemar test, detectable drops.

Pure functions of counts, no pytest and no third-party imports, so that a reviewer can
check them by hand. The significance level is 5% throughout (``ALPHA``).

- :func:`wilson`: the 95% Wilson score interval of a pass rate ``k / n``.
- :func:`mcnemar`: the exact (binomial) two-sided McNemar test on the discordant pairs
  of two runs' paired verdicts: ``b`` questions went pass -> fail, ``c`` fail -> pass;
  ``p = min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``.
- :func:`detectable_drop`: the smallest drop ``d`` below a rate ``p0`` that ``n``
  questions detect with 80% power, by a one-sided exact binomial test at 5%: the test
  rejects when the passes ``X <= k``, ``k`` the largest count with
  ``P(X <= k | p0) <= 5%``; ``d`` is the smallest drop with ``P(X <= k | p0 - d) >= 80%``.
  With ``p0 = 1`` any failure rejects, so ``d = 1 - 0.2 ** (1 / n)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

ALPHA = 0.05
POWER = 0.8
Z_95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal distribution."""

Change = Literal["regression", "improvement", "within noise"]


def wilson(passed: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of ``passed / n`` (None when ``n`` is 0)."""
    if n <= 0:
        return None
    if not 0 <= passed <= n:
        raise ValueError(f"passed must lie in 0..{n}, got {passed}")
    p = passed / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # exact at the ends (rounding would otherwise leave 1e-17 below 0 or above 1)
    low = 0.0 if passed == 0 else max(0.0, centre - half)
    high = 1.0 if passed == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class McNemar:
    """The paired comparison of one metric of one set between two runs."""

    worse: int
    """Questions that passed in the baseline and fail now (``b``)."""
    better: int
    """Questions that failed in the baseline and pass now (``c``)."""
    p_value: float
    change: Change


def mcnemar(worse: int, better: int, alpha: float = ALPHA) -> McNemar:
    """The exact two-sided McNemar test on ``worse`` (pass -> fail) and ``better``
    (fail -> pass) questions, labelled at level ``alpha``."""
    if worse < 0 or better < 0:
        raise ValueError("counts of flipped questions cannot be negative")
    n = worse + better
    if n == 0:
        return McNemar(worse, better, 1.0, "within noise")
    tail = sum(math.comb(n, i) for i in range(min(worse, better) + 1)) / 2**n
    p = min(1.0, 2 * tail)
    change: Change = "within noise"
    if p < alpha:
        change = "regression" if worse > better else "improvement"
    return McNemar(worse, better, p, change)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, summed in log space (no underflow for
    large ``n``)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    # log P(X = i), from i = 0 up by the ratio of neighbouring terms (no lgamma per term)
    step = log_p - log_q
    logs = [n * log_q]
    for i in range(k):
        logs.append(logs[-1] + math.log((n - i) / (i + 1)) + step)
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(x - top) for x in logs))


def rejection_count(n: int, p0: float, alpha: float = ALPHA) -> int:
    """The largest number of passes ``k`` with ``P(X <= k | p0) <= alpha``: the one-sided
    exact test rejects "the rate is still p0" when at most ``k`` of ``n`` pass. -1 when
    not even 0 passes would be evidence enough."""
    low, high = -1, n  # P(X <= -1) = 0 <= alpha; P(X <= n) = 1 > alpha
    while high - low > 1:
        middle = (low + high) // 2
        if binomial_cdf(middle, n, p0) <= alpha:
            low = middle
        else:
            high = middle
    return low


def detectable_drop(n: int, p0: float, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest drop below ``p0`` that ``n`` questions detect with ``power`` at level
    ``alpha`` (one-sided exact binomial test); None when no drop can be detected (too
    few questions for ``p0``)."""
    if n <= 0 or not 0.0 <= p0 <= 1.0:
        return None
    k = rejection_count(n, p0, alpha)
    if k < 0:
        return None
    if p0 >= 1.0:
        return 1.0 - math.pow(1.0 - power, 1.0 / n)
    # the power P(X <= k | p) falls as p rises: find the largest p that still has it
    low, high = 0.0, p0
    for _ in range(40):  # to 1e-12
        middle = (low + high) / 2
        if binomial_cdf(k, n, middle) >= power:
            low = middle
        else:
            high = middle
    return p0 - low
