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
from fractions import Fraction
from typing import Literal

EPSILON = 1e-9
"""Rates are compared with thresholds with this slack, so 7 of 10 passing meets 0.7."""
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


# ln k! - ln(sqrt(2 pi k) (k / e)^k) for k = 0..15, computed to 60 digits (k = 0: unused)
_STIRLING_ERRORS = (
    0.0,
    0.08106146679532726,
    0.0413406959554093,
    0.02767792568499834,
    0.020790672103765093,
    0.016644691189821193,
    0.013876128823070748,
    0.01189670994589177,
    0.010411265261972096,
    0.009255462182712733,
    0.00833056343336287,
    0.007573675487951841,
    0.00694284010720953,
    0.006408994188004207,
    0.0059513701127588475,
    0.005554733551962801,
)
_LN_2PI = math.log(2 * math.pi)
_NEGLIGIBLE = 2.0**-60
"""A tail term this small against the sum so far ends the sum (the rest is smaller)."""
_TIE = 1e-9
"""Relative: a probability this close to ``alpha`` counts as equal to it, so that an exact
tie (1 - 0.95 = 0.05 at n = 1) falls on the side the rule says, though 0.95 is not
exactly 19/20 in binary."""


def _stirling_error(n: int) -> float:
    """``ln n! - ln(sqrt(2 pi n) (n / e)^n)``: the tabled values, else Stirling's series
    (its next term is below 3e-17 where it is cut)."""
    if n <= 15:
        return _STIRLING_ERRORS[n]
    nn = float(n) * n
    if n > 500:
        return (1 / 12 - 1 / 360 / nn) / n
    if n > 80:
        return (1 / 12 - (1 / 360 - 1 / 1260 / nn) / nn) / n
    if n > 35:
        return (1 / 12 - (1 / 360 - (1 / 1260 - 1 / 1680 / nn) / nn) / nn) / n
    return (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - 1 / 1188 / nn) / nn) / nn) / nn) / n


def _deviance(x: int, mean: float, diff: float) -> float:
    """``x ln(x / mean) + mean - x``, with ``diff = x - mean`` given to full precision: a
    series where ``x`` is near ``mean`` (the terms would cancel), else directly."""
    if abs(diff) < 0.1 * (x + mean):
        v = diff / (x + mean)
        total = diff * v
        term = 2 * x * v
        v *= v
        j = 1
        while True:
            term *= v
            following = total + term / (2 * j + 1)
            if following == total:
                return total
            total = following
            j += 1
    return x * math.log1p(diff / mean) - diff


def _binomial_pmf(x: int, n: int, p: float) -> float:
    """``P(X = x)`` for ``X ~ Binomial(n, p)``, ``0 < p < 1``, to a few units in the last
    place: Loader's saddle-point form ("Fast and accurate computation of binomial
    probabilities", 2000), as R's ``dbinom`` computes it."""
    if x == 0:
        return math.exp(n * math.log1p(-p))
    if x == n:
        return math.exp(n * math.log(p))
    # the means n p, n (1 - p) and x - n p exactly, each rounded once: the deviances need
    # them to full precision where x is near a mean, and 1 - p in floating point is not
    mean = n * Fraction(p)
    diff = float(x - mean)
    log_pmf = (
        _stirling_error(n)
        - _stirling_error(x)
        - _stirling_error(n - x)
        - _deviance(x, float(mean), diff)
        - _deviance(n - x, float(n - mean), -diff)
    )
    log_scale = _LN_2PI + math.log(x * (n - x) / n)  # integers: one rounding
    return math.exp(log_pmf - 0.5 * log_scale)


def binomial_cdf(k: int, n: int, p: float) -> float:
    """``P(X <= k)`` for ``X ~ Binomial(n, p)``, within 1e-12 relative for any ``n``
    (``tests/test_stats.py`` compares it with scipy up to ``n = 100,000``).

    One probability is computed accurately (:func:`_binomial_pmf`), the rest of the tail
    from it by the ratio of neighbouring terms, until they no longer count. Below the mean
    that is the lower tail; above it, one minus the upper tail, so the sum always starts
    at its largest term."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    odds = p / (1.0 - p)
    lower = k < n * p
    i = k if lower else k + 1
    term = _binomial_pmf(i, n, p)
    terms = [term]
    total = term
    while term > total * _NEGLIGIBLE:
        if lower:
            if i == 0:
                break
            term *= i / ((n - i + 1) * odds)
            i -= 1
        else:
            if i == n:
                break
            term *= (n - i) * odds / (i + 1)
            i += 1
        terms.append(term)
        total += term
    tail = math.fsum(terms)
    return min(1.0, tail) if lower else max(0.0, 1.0 - tail)


def rejection_count(n: int, p0: float, alpha: float = ALPHA) -> int:
    """The largest number of passes ``k`` with ``P(X <= k | p0) <= alpha``: the one-sided
    exact test rejects "the rate is still p0" when at most ``k`` of ``n`` pass. -1 when
    not even 0 passes would be evidence enough. A probability within a relative 1e-9 of
    ``alpha`` counts as equal to it (``_TIE``)."""
    low, high = -1, n  # P(X <= -1) = 0 <= alpha; P(X <= n) = 1 > alpha
    while high - low > 1:
        middle = (low + high) // 2
        if binomial_cdf(middle, n, p0) <= alpha * (1 + _TIE):
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
