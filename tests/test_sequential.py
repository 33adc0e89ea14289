"""The sequential gate's statistics (pytest_rageval/sequential.py), without pytest runs:
the capital processes and confidence sequence against confseq's own code (copied into
tests/reference/confseq_betting.py), hand-worked steps, exhaustive small populations, the
exact verdict at the end of the population, and the error rate at the boundary."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from functools import cache

import numpy as np
import pytest
from reference.confseq_betting import betting_mart, cs_from_martingale, lambda_aKelly
from scipy.stats import chisquare

from pytest_rageval.gate import EPSILON
from pytest_rageval.sequential import (
    SequentialState,
    SequentialTest,
    advance,
    confidence_sequence,
    default_seed,
    majority_decided,
    null_mean,
    order,
    split_alpha,
)
from pytest_rageval.verdicts import MetricResult, majority


def confseq_capitals(x: list[float], m: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """confseq's capital processes with one-sided aGRAPA bets, truncated at 1/2 (its
    default ``trunc_scale``): against "mean <= m" (theta=1) and "mean >= m" (theta=0)."""
    data = np.array(x, dtype=float)
    with np.errstate(all="ignore"):
        up = betting_mart(
            data,
            m,
            lambdas_fn_positive=lambda y, mm: np.maximum(lambda_aKelly(y, mm, N=n), 0),
            lambdas_fn_negative=lambda y, mm: np.maximum(-lambda_aKelly(y, mm, N=n), 0),
            N=n,
            theta=1,
            trunc_scale=1 / 2,
        )
        down = betting_mart(
            data,
            m,
            lambdas_fn_positive=lambda y, mm: np.maximum(lambda_aKelly(y, mm, N=n), 0),
            lambdas_fn_negative=lambda y, mm: np.maximum(-lambda_aKelly(y, mm, N=n), 0),
            N=n,
            theta=0,
            trunc_scale=1 / 2,
        )
    return up, down


def our_capitals(x: list[float], k: int, n: int) -> tuple[list[float], list[float]]:
    passed, squares, up, down = 0.0, 0.0, 1.0, 1.0
    ups, downs = [], []
    for visited, value in enumerate(x):
        passed, squares, up, down = advance(n, visited, passed, squares, up, down, value, k, k)
        ups.append(up)
        downs.append(down)
    return ups, downs


def population(rng: random.Random, n: int, rate: float) -> list[float]:
    passes = round(rate * n)
    values = [1.0] * passes + [0.0] * (n - passes)
    rng.shuffle(values)
    return values


def test_capital_processes_match_confseq() -> None:
    """On 300 random populations, orders and candidate rates, both capital processes equal
    confseq's betting_mart with N (same aGRAPA bets, same truncation) at every step where
    the candidate is still possible (confseq then turns the capital to inf; we decide by
    counting instead, tested below)."""
    rng = random.Random(2006_04347)
    compared = 0
    for _ in range(300):
        # powers of two: k/n is exact in floats, as in confseq's arithmetic
        n = rng.choice([8, 16, 32, 64, 128, 256])
        x = population(rng, n, rng.random())
        if rng.random() < 0.3:  # scores, not only verdicts
            x = [rng.random() for _ in range(n)]
        k = rng.randrange(n + 1)
        ours_up, ours_down = our_capitals(x, k, n)
        ref_up, ref_down = confseq_capitals(x, k / n, n)
        sums = np.cumsum([0.0, *x])
        for t in range(n):
            m_t = (k - sums[t]) / (n - t)
            if not 0 <= m_t <= 1:
                break
            assert ours_up[t] == pytest.approx(ref_up[t], rel=1e-9)
            assert ours_down[t] == pytest.approx(ref_down[t], rel=1e-9)
            compared += 1
    assert compared > 5000


def test_test_capitals_are_confseqs_at_the_lattice_points_around_tau() -> None:
    """SequentialTest bets against "at most k*-1 passes" (up) and "at least k*" (down),
    k* being the fewest passes that meet tau."""
    rng = random.Random(7)
    for _ in range(50):
        n = rng.choice([16, 32, 64, 128])
        tau = rng.choice([0.5, 0.75, 0.875])
        x = population(rng, n, tau + rng.uniform(-0.2, 0.2))
        test = SequentialTest(n, tau, 1e-12)  # never decides by betting at this size
        k = math.ceil(tau * n)
        ref_up, _ = confseq_capitals(x, (k - 1) / n, n)
        _, ref_down = confseq_capitals(x, k / n, n)
        for t, value in enumerate(x):
            if test.update(value) is not None:
                break
            assert test.up == pytest.approx(ref_up[t], rel=1e-9)
            assert test.down == pytest.approx(ref_down[t], rel=1e-9)


def running(theta: int, n: int) -> object:
    """confseq's capital against each candidate mean m, as its running maximum."""

    def mart(data: np.ndarray, m: float) -> np.ndarray:
        up, down = confseq_capitals(list(data), m, n)
        return np.maximum.accumulate(up if theta == 1 else down)

    return mart


def test_bounds_match_confseq_confidence_sequence() -> None:
    """bounds() against confseq's cs_from_martingale on the grid of the n+1 rates a set of
    n can have (breaks=n), with the running maximum of each capital (once rejected, a
    rate stays rejected). confseq widens its grid bounds by one grid step and intersects
    them with the logical bounds (S_t/n, 1 - (t - S_t)/n); we report the grid points."""
    rng = random.Random(11)
    checked = 0
    for _ in range(40):
        n = rng.choice([16, 32, 64])
        alpha = rng.choice([0.05, 0.1, 0.2])
        x = population(rng, n, rng.uniform(0.3, 1.0))
        visited = rng.randrange(1, n + 1)
        low, high = confidence_sequence(n, alpha, x[:visited])
        seen = np.array(x[:visited])
        with np.errstate(all="ignore"):
            ref_low, _ = cs_from_martingale(seen, running(1, n), breaks=n, alpha=alpha, N=n)
            _, ref_high = cs_from_martingale(seen, running(0, n), breaks=n, alpha=alpha, N=n)
        s_t = seen.sum()
        assert ref_low[-1] == pytest.approx(max(low - 1 / n, s_t / n, 0.0), abs=1e-12)
        assert ref_high[-1] == pytest.approx(
            min(high + 1 / n, 1 - (visited - s_t) / n, 1.0), abs=1e-12
        )
        checked += 1
    assert checked == 40


def test_bounds_agree_with_the_decision() -> None:
    """When the gate stops, the confidence sequence it reports is on the decided side of
    tau: a passed set's lower bound meets tau, a failed set's upper bound is below it."""
    rng = random.Random(13)
    for _ in range(20):
        n, tau = rng.choice([300, 600]), rng.choice([0.8, 0.9])
        x = population(rng, n, tau + rng.choice([-0.08, -0.04, 0.03, 0.06]))
        test = SequentialTest(n, tau, 0.05)
        for value in x:
            if test.update(value) is not None:
                break
        low, high = test.bounds()
        assert low >= tau - EPSILON if test.decision == "pass" else high < tau


def test_module_imports_no_numpy() -> None:
    code = "import sys, pytest_rageval.sequential; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hand_worked_steps() -> None:
    """n=4, tau=0.5 (k*=2). Draw 1 = 1: the running mean is the prior 1/2, so the mean of
    the 4 not drawn is 1/2, variance 1/4. Up (null: at most 1 pass, m_1 = 1/4): gap 1/4,
    bet 0.25 / (0.25 + 0.0625) = 0.8 (cap 0.5/0.25 = 2), capital 1 + 0.8 * 0.75 = 1.6.
    Down (null: at least 2, m_1 = 1/2): gap 0, no bet, capital 1.
    Draw 2 = 1: mean (0.5+1)/2 = 0.75, variance (0.25 + (1-0.75)^2)/2 = 0.15625, mean of
    the 3 not drawn (4*0.75 - 1)/3 = 2/3, m_2 = (1-1)/3 = 0: bet (2/3)/(0.15625 + 4/9),
    capital 1.6 * (1 + 1.1098265895953756) = 3.375722543352601; two passes meet
    tau: the set passes, by counting."""
    test = SequentialTest(4, 0.5, 0.05)
    assert test.update(1) is None
    assert (test.up, test.down) == (pytest.approx(1.6), pytest.approx(1.0))
    assert test.update(1) == "pass"
    assert test.up == pytest.approx(3.375722543352601)
    assert test.exact
    assert test.visited == 2


@pytest.mark.parametrize("n", [3, 4, 5])
def test_small_populations_exhaustively(n: int) -> None:
    """Every population of n <= 5 verdicts, every order, several thresholds: the capital
    cannot reach 1/alpha = 20 in 5 draws (each factor is at most 1.5), so every decision
    is made by counting, at the first draw after which the full-set verdict is certain,
    and it is the full-set verdict."""
    for values in itertools.product((0, 1), repeat=n):
        total = sum(values)
        for tau in (0.0, 0.2, 0.5, 0.6, 0.8, 1.0, 1.01):
            truth = "pass" if total >= tau * n - EPSILON else "fail"
            k = max(0, math.ceil(tau * n - EPSILON))
            for permutation in set(itertools.permutations(values)):
                test = SequentialTest(n, tau, 0.05)
                sums = list(itertools.accumulate(permutation, initial=0))
                certain = next(t for t in range(n + 1) if sums[t] >= k or sums[t] + n - t < k)
                for value in permutation:
                    if test.decision is not None:
                        break
                    test.update(value)
                assert (test.decision, test.visited) == (truth, certain), (permutation, tau)


def test_decision_at_the_end_is_the_full_set_verdict() -> None:
    """Random populations near the threshold (so most runs reach the end): every run
    decides by its last draw, and a run that reaches the end gives the exact verdict."""
    rng = random.Random(5)
    reached = 0
    for _ in range(200):
        n = rng.randrange(1, 120)
        tau = rng.choice([0.7, 0.8, 0.9, 0.95])
        x = population(rng, n, tau + rng.uniform(-0.03, 0.03))
        truth = "pass" if sum(x) >= tau * n - EPSILON else "fail"
        test = SequentialTest(n, tau, rng.choice([0.001, 0.05]))
        for value in x:
            if test.update(value) is not None:
                break
        assert test.decision is not None
        if test.visited == n:
            reached += 1
            assert test.decision == truth
    assert reached > 50


def test_null_mean_at_the_end_of_the_population() -> None:
    """With one question left, the null mean is what that question must be: k - S."""
    assert null_mean(10, 9, 8.0, 9) == 1.0
    assert null_mean(10, 9, 8.0, 8) == 0.0
    assert null_mean(10, 9, 8.0, 10) == 2.0  # 10 passes: impossible now
    assert null_mean(10, 9, 8.0, 7) == -1.0  # at most 7: impossible now
    assert null_mean(10, 0, 0.0, 9) == 0.9


def test_decides_at_once_when_a_hypothesis_is_impossible() -> None:
    assert SequentialTest(10, 0.0, 0.05).decision == "pass"
    assert SequentialTest(10, 1.05, 0.05).decision == "fail"
    assert SequentialTest(0, 0.9, 0.05).decision == "pass"  # as verdicts.py: 0 >= 0.9*0
    test = SequentialTest(10, 0.8, 0.05)
    assert [test.update(0) for _ in range(3)] == [None, None, "fail"]  # 7 can't reach 8
    assert test.exact


def wilson(passed: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = passed / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_wrong_verdicts_at_the_boundary_stay_below_alpha_and_wilson_peeking_does_not() -> None:
    """N=500, full-set rate exactly tau=0.9 (the set passes), 300 seeded orders: the gate
    fails the set in at most alpha + 3 SE of the runs; stopping once a 95% Wilson interval
    excludes tau, looked at every 10 questions, fails it far more often."""
    n, tau, alpha, runs = 500, 0.9, 0.05, 300
    rng = random.Random(17)
    x = [1] * 450 + [0] * 50
    wrong = wilson_wrong = 0
    for _ in range(runs):
        rng.shuffle(x)
        test = SequentialTest(n, tau, alpha)
        for value in x:
            if test.update(value) is not None:
                break
        wrong += test.decision == "fail"
        passed = 0
        for t, value in enumerate(x, 1):
            passed += value
            if t % 10 == 0 and t < n:
                low, high = wilson(passed, t)
                if low > tau or high < tau:
                    wilson_wrong += high < tau
                    break
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert wrong / runs <= bound
    assert wilson_wrong / runs > bound


def test_state_round_trips_through_json_and_replays() -> None:
    rng = random.Random(3)
    x = population(rng, 200, 0.8)
    test = SequentialTest(200, 0.9, 0.05)
    for value in x[:40]:
        if test.update(value) is not None:
            break
    data = json.loads(json.dumps(test.state.to_json()))
    replayed = SequentialTest.from_state(SequentialState.from_json(data))
    assert (replayed.visited, replayed.decision, replayed.up, replayed.down) == (
        test.visited,
        test.decision,
        test.up,
        test.down,
    )
    assert data == {"n": 200, "tau": 0.9, "alpha": 0.05, "verdicts": x[: test.visited]}


def test_bad_use_is_a_clear_error() -> None:
    test = SequentialTest(3, 0.5, 0.05)
    with pytest.raises(ValueError, match=r"a verdict must lie in \[0, 1\], got 2"):
        test.update(2)
    test.update(1)
    test.update(1)
    with pytest.raises(ValueError, match="already decided 'pass'; stop visiting"):
        test.update(1)
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1, got 0"):
        SequentialTest(3, 0.5, 0)


def test_order_is_a_seeded_shuffle() -> None:
    ids = [f"q{i}" for i in range(10)]
    expected = list(ids)
    random.Random(42).shuffle(expected)
    assert order(ids, 42) == expected
    assert order(ids, 42) == order(ids, 42)
    assert order(ids, 43) != order(ids, 42)
    assert sorted(order(ids, "abc")) == sorted(ids)


def test_order_is_uniform() -> None:
    """6,000 seeds over the 6 orders of 3 questions: chi-square does not reject uniform."""
    counts = Counter(tuple(order("abc", seed)) for seed in range(6000))
    assert len(counts) == 6
    assert chisquare(list(counts.values())).pvalue > 0.001


def test_default_seed_is_stable_across_processes() -> None:
    digest = hashlib.sha256(b"pytest-rageval:rag_support.yaml").digest()
    assert default_seed("rag_support.yaml") == int.from_bytes(digest[:8], "big")
    code = "from pytest_rageval.sequential import default_seed; print(default_seed('a/b.yaml'))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hashseed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hashseed in ("1", "2")
    }
    assert seen == {str(default_seed("a/b.yaml"))}
    assert default_seed("a.yaml") != default_seed("b.yaml")


def test_split_alpha_is_bonferroni() -> None:
    assert split_alpha(0.05, 1) == 0.05
    assert split_alpha(0.05, 3) == pytest.approx(0.016666666666666666)
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        split_alpha(0.05, 0)


@cache
def full_majority(votes: tuple[bool | None, ...]) -> str:
    return majority(
        [MetricResult(passing=vote is True, invalid=vote is None) for vote in votes]
    ).result


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_majority_decided_agrees_with_verdicts_majority(k: int) -> None:
    """Every sequence of k votes (passing, failing, invalid): the early verdict, whenever
    it is given, is verdicts.majority's verdict of all k votes, and the full k always
    give one. With k=5, three agreeing votes end it."""
    for votes in itertools.product((True, False, None), repeat=k):
        full = full_majority(votes)
        assert majority_decided(votes, k) == full
        for cast in range(k):
            early = majority_decided(votes[:cast], k)
            assert early in (None, full), (votes, cast)
            # undecided only while some completion gives another verdict
            completions = {
                full_majority(votes[:cast] + rest)
                for rest in itertools.product((True, False, None), repeat=k - cast)
            }
            assert (early is None) == (len(completions) > 1), (votes, cast)
    if k == 5:
        assert majority_decided((True, True, True), 5) == "passing"
        assert majority_decided((False, False, False), 5) == "failing"
        assert majority_decided((None, None, None), 5) == "invalid"
        assert majority_decided((True, True, False), 5) is None
