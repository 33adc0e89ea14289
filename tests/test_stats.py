"""The gate's statistics against values computed by hand and published tables."""

from __future__ import annotations

import math

import pytest

from pytest_rageval.stats import (
    binomial_cdf,
    detectable_drop,
    mcnemar,
    rejection_count,
    wilson,
)


@pytest.mark.parametrize(
    ("passed", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        # Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # by hand: 0/n has upper bound z^2 / (n + z^2) = 3.8415 / 13.8415
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_wilson_interval(passed: int, n: int, low: float, high: float) -> None:
    interval = wilson(passed, n)
    assert interval is not None
    assert interval == pytest.approx((low, high), abs=5e-5)


def test_wilson_without_questions_and_with_bad_counts() -> None:
    assert wilson(0, 0) is None
    with pytest.raises(ValueError, match=r"0\.\.5"):
        wilson(6, 5)


@pytest.mark.parametrize(
    ("worse", "better", "p", "change"),
    [
        # by hand: 2 * (C(9,0) + C(9,1)) / 2^9 = 20 / 512
        (8, 1, 20 / 512, "regression"),
        (1, 8, 20 / 512, "improvement"),
        # 5 discordant pairs all one way: 2 / 2^5 = 0.0625, not significant at 5%
        (5, 0, 0.0625, "within noise"),
        # 6 all one way: 2 / 2^6 = 0.03125, significant
        (6, 0, 0.03125, "regression"),
        (3, 3, 1.0, "within noise"),
        (0, 0, 1.0, "within noise"),
    ],
)
def test_exact_mcnemar(worse: int, better: int, p: float, change: str) -> None:
    result = mcnemar(worse, better)
    assert result.p_value == pytest.approx(p, rel=1e-12)
    assert result.change == change


def test_binomial_cdf_matches_tables_and_survives_big_n() -> None:
    # binomial tables, n = 20, p = 0.9: P(X <= 15) = 0.0432, P(X <= 16) = 0.1330
    assert binomial_cdf(15, 20, 0.9) == pytest.approx(0.0432, abs=5e-5)
    assert binomial_cdf(16, 20, 0.9) == pytest.approx(0.1330, abs=5e-5)
    # by hand: P(X <= 1 | 5, 1/2) = 6/32
    assert binomial_cdf(1, 5, 0.5) == pytest.approx(6 / 32)
    # 10,000 questions: no underflow, and the mean splits the mass near one half
    assert 0.45 < binomial_cdf(9000, 10000, 0.9) < 0.56


def test_binomial_cdf_matches_scipy_to_1e_12_up_to_100_000_questions() -> None:
    from scipy.stats import binom

    sizes = [1, 2, 3, 5, 10, 16, 20, 36, 50, 81, 100, 200, 501, 1000, 3000, 10**4, 30_000, 10**5]
    rates = [1e-6, 0.001, 0.01, 0.05, 0.1, 1 / 3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999, 1 - 1e-6]
    worst = []
    for n in sizes:
        for p in rates:
            sd = math.sqrt(n * p * (1 - p))
            ks = {*range(min(n, 12)), *(int(n * p + z * sd) for z in range(-25, 26))}
            ks = sorted(k for k in ks if 0 <= k < n)
            for k, expected in zip(ks, binom.cdf(ks, n, p), strict=True):
                # scipy itself drifts in the far tails, up to 6e-13 at 1e-20 and 1e-12
                # below 1e-80 (against 40-digit sums); we stay within 2e-14 there
                if expected > 1e-20:
                    worst.append((abs(binomial_cdf(k, n, p) - expected) / expected, k, n, p))
    assert len(worst) > 3800
    assert max(worst) < (1e-12,)
    # deep tails, against 40-digit sums (Python's decimal): here scipy is off by 1e-12
    assert binomial_cdf(28861, 100_000, 1 / 3) == pytest.approx(7.514157255839728e-203, rel=1e-13)
    assert binomial_cdf(2932, 100_000, 0.05) == pytest.approx(1.1834181739026626e-230, rel=1e-13)
    # the example: the true value, to the last digit
    assert binomial_cdf(2850, 3000, 0.95) == pytest.approx(0.5116967786351716, rel=1e-15)


def test_an_exact_tie_at_5_percent_rejects() -> None:
    # n = 1, p0 = 0.95: P(X <= 0) = 1/20 exactly, which is <= 0.05, so 0 passes rejects;
    # the power 1 - p >= 0.8 needs p <= 0.2: d = 0.95 - 0.2
    assert rejection_count(1, 0.95) == 0
    assert detectable_drop(1, 0.95) == pytest.approx(0.75, abs=1e-9)
    # n = 2, p0 = 1 (the README's JSON example): 1 - 0.2^(1/2)
    assert detectable_drop(2, 1.0) == pytest.approx(0.5527864045, abs=1e-9)


def test_detectable_drop_at_the_edges_and_for_many_questions() -> None:
    from scipy.stats import binom

    assert detectable_drop(0, 1.0) is None
    assert rejection_count(0, 0.9) == -1
    assert rejection_count(5, 1.0) == 4
    assert detectable_drop(100_000, 1.0) == pytest.approx(1 - 0.2 ** (1 / 100_000), rel=1e-12)
    for n, p0 in [(3000, 0.95), (100_000, 0.9), (100_000, 0.5)]:
        k = rejection_count(n, p0)
        assert binom.cdf(k, n, p0) <= 0.05 < binom.cdf(k + 1, n, p0)
        drop = detectable_drop(n, p0)
        assert drop is not None
        assert binom.cdf(k, n, p0 - drop) == pytest.approx(0.8, abs=1e-9)


def test_detectable_drop_by_hand() -> None:
    # p0 = 1: any failure rejects, so d = 1 - 0.2^(1/n)
    assert detectable_drop(20, 1.0) == pytest.approx(1 - 0.2 ** (1 / 20))
    assert detectable_drop(20, 1.0) == pytest.approx(0.0773, abs=5e-5)
    # n = 5, p0 = 0.5: only 0 passes rejects (1/32 <= 5% < 6/32); the power
    # (1 - p)^5 >= 0.8 needs p <= 1 - 0.8^(1/5), so d = 0.5 - (1 - 0.8^(1/5))
    assert rejection_count(5, 0.5) == 0
    assert detectable_drop(5, 0.5) == pytest.approx(0.5 - (1 - 0.8 ** (1 / 5)), abs=1e-9)
    # n = 20, p0 = 0.9: rejects at <= 15 passes (tables above); at p0 - d the power is 80%
    assert rejection_count(20, 0.9) == 15
    drop = detectable_drop(20, 0.9)
    assert drop is not None
    assert binomial_cdf(15, 20, 0.9 - drop) == pytest.approx(0.8, abs=1e-6)
    # more questions detect smaller drops
    assert detectable_drop(200, 0.9) < detectable_drop(50, 0.9) < drop  # type: ignore[operator]


def test_no_drop_is_detectable_with_too_few_questions() -> None:
    # 2 questions at 0.5: even 0 passes happens 25% of the time
    assert detectable_drop(2, 0.5) is None
    assert detectable_drop(0, 0.9) is None
    assert math.isclose(detectable_drop(1, 1.0) or 0, 0.8)
