"""The judge correction against references: Lee et al.'s interval, their label
allocation, and ppi_py's PPI++.

Lee et al.'s code (UW-Madison-Lee-Lab/LLM-judge-reporting, ``calibration.py`` and
``allocation.py`` at commit 082884d) carries no license, so it is not copied here: the
references below are an independent transcription of the published formulas (the paper,
arXiv 2511.21140, and the repository's README), written over numpy arrays with scipy's
normal quantile, many inputs at once. ppi_py (MIT) is installed from PyPI
(``ppi-python``) and called as is.
"""

from __future__ import annotations

import math
import random

# numba, scipy and numpy load C extensions that cannot load twice in one process, and
# in-process pytester runs drop modules imported during them: import at collection time
import numpy as np
import pytest
from ppi_py import ppi_mean_ci, ppi_mean_pointestimate
from scipy.stats import norm

from pytest_rageval.correction import (
    MIN_LABELS,
    Labels,
    UncorrectableError,
    allocate_labels,
    check_labels,
    correct,
    lee_interval,
    rogan_gladen,
)
from pytest_rageval.ppi import ppi_rate

# --- Lee et al., transcribed ------------------------------------------------------------


def lee_reference(p, q0, q1, n, m0, m1, alpha=0.05):
    """Point estimate and interval for arrays of inputs (Lee et al. 2025, Sec. 3-4)."""
    p, q0, q1, n, m0, m1 = (np.asarray(a, dtype=float) for a in (p, q0, q1, n, m0, m1))
    theta_hat = np.clip((p + q0 - 1) / (q0 + q1 - 1), 0, 1)
    z = norm.ppf(1 - alpha / 2)
    # Agresti-Coull-style smoothing of the test rate, add-one of both calibration rates
    n_t, m0_t, m1_t = n + z**2, m0 + 2, m1 + 2
    p_t = (n * p + z**2 / 2) / n_t
    q0_t = (m0 * q0 + 1) / m0_t
    q1_t = (m1 * q1 + 1) / m1_t
    denom = q0_t + q1_t - 1
    th = (p_t + q0_t - 1) / denom
    var_p = p_t * (1 - p_t) / n_t
    var_q0 = q0_t * (1 - q0_t) / m0_t
    var_q1 = q1_t * (1 - q1_t) / m1_t
    bias = 2 * z**2 * (th * var_q1 - (1 - th) * var_q0)
    se = np.sqrt(var_p + (1 - th) ** 2 * var_q0 + th**2 * var_q1) / denom
    return theta_hat, np.clip(th + bias - z * se, 0, 1), np.clip(th + bias + z * se, 0, 1)


def lee_allocation_reference(m, p, q0, q1, m_pilot):
    """Lee et al.'s allocation (Sec. 5) for 0 < p, m_pilot labels of each kind so far."""
    if m_pilot == 0:
        kappa = (1 - q0) / (1 - min(q1, 1 - 1e-6))
    else:
        kappa = (m_pilot * (1 - q0) + 1) / (m_pilot * (1 - q1) + 1)
    m1 = m / (1 + (1 / p - 1) * math.sqrt(kappa))
    m1 = max(m_pilot, round(min(m - m_pilot, m1)))
    return m - m1, m1


def test_corrected_rate_and_interval_match_lee_on_random_inputs() -> None:
    rng = random.Random(19)
    cases = []
    for _ in range(2000):
        n = rng.randint(1, 5000)
        m1 = rng.randint(MIN_LABELS, 500)
        m0 = rng.randint(MIN_LABELS, 500)
        x1 = rng.randint(0, m1)
        y0 = rng.randint(0, m0)
        if y0 / m0 + x1 / m1 - 1 < 0.2 + 1e-9:
            continue
        cases.append((rng.randint(0, n), n, x1, m1, y0, m0))
    assert len(cases) > 500
    k, n, x1, m1, y0, m0 = (np.array(c) for c in zip(*cases, strict=True))
    est, low, high = lee_reference(k / n, y0 / m0, x1 / m1, n, m0, m1)
    worst = 0.0
    for i, (k_, n_, x1_, m1_, y0_, m0_) in enumerate(cases):
        got = correct(int(k_), int(n_), Labels(int(m1_), int(x1_), int(m0_), int(y0_)))
        worst = max(
            worst,
            abs(got.estimate - est[i]),
            abs(got.lower - low[i]),
            abs(got.upper - high[i]),
        )
    assert worst < 1e-12


@pytest.mark.parametrize(
    ("k", "n", "x1", "m1", "y0", "m0", "estimate", "lower", "upper"),
    [
        # by hand, 50 digits (Decimal), z = 1.959963984540054: theta = (0.8 + 0.8 - 1) / 0.7
        (80, 100, 45, 50, 40, 50, 0.857142857142857143, 0.704760666928782132, 1.0),
        (
            300,
            400,
            19,
            20,
            12,
            20,
            0.636363636363636364,
            0.442959897736080071,
            0.895721477437533742,
        ),
        (95, 100, 98, 100, 60, 100, 0.948275862068965517, 0.834638973539288010, 1.0),
    ],
)
def test_corrected_rate_hand_computed(k, n, x1, m1, y0, m0, estimate, lower, upper) -> None:
    got = correct(k, n, Labels(m1, x1, m0, y0))
    assert got.estimate == pytest.approx(estimate, abs=1e-12)
    assert got.lower == pytest.approx(lower, abs=1e-12)
    assert got.upper == pytest.approx(upper, abs=1e-12)
    assert (got.q1, got.q0, got.people_passed, got.people_failed) == (x1 / m1, y0 / m0, m1, m0)
    assert got.judge_rate == k / n


def test_q_intervals_are_wilson() -> None:
    got = correct(80, 100, Labels(50, 45, 50, 40))
    # Wilson 45/50 and 40/50 (statsmodels proportion_confint(method="wilson"))
    assert got.q1_interval == pytest.approx((0.7863976856252034, 0.9565242350681095), abs=1e-12)
    assert got.q0_interval == pytest.approx((0.6696289406777458, 0.8875624998422389), abs=1e-12)


def test_rogan_gladen_by_hand() -> None:
    assert rogan_gladen(0.8, 0.8, 0.9) == pytest.approx(0.6 / 0.7, abs=1e-15)
    assert rogan_gladen(0.1, 0.7, 0.9) == 0.0  # -0.2 / 0.6, clipped
    assert rogan_gladen(1.0, 0.9, 0.8) == 1.0  # 0.9 / 0.7, clipped
    with pytest.raises(ValueError, match="q0 \\+ q1 - 1 must be positive"):
        rogan_gladen(0.5, 0.5, 0.5)


def test_lee_interval_rejects_empty_counts() -> None:
    with pytest.raises(ValueError, match="n, m0 and m1 must be positive"):
        lee_interval(0.5, 0.9, 0.9, 100, 0, 10, 1.96)


# --- when the correction is refused ------------------------------------------------------


def test_judge_no_better_than_chance_is_refused_with_what_to_label() -> None:
    # a coin-flip judge: passes half of what people pass, fails half of what they fail
    labels = Labels.from_pairs(
        [(True, i % 2 == 0) for i in range(40)] + [(False, i % 2 == 0) for i in range(40)]
    )
    assert (labels.q1, labels.q0, labels.youden) == (0.5, 0.5, 0.0)
    with pytest.raises(UncorrectableError) as caught:
        correct(70, 100, labels)
    reason = caught.value.reason
    assert reason.problem == "judge near chance"
    # kappa = (40 * 0.5 + 1) / 42 / ((40 * 0.5 + 1) / 42) = 1; m1 = 160 / (1 + 3/7) = 112
    assert (reason.more_passed, reason.more_failed) == (72, 8)
    assert str(caught.value) == (
        "the judge barely agrees with people: it passes 50% of the 40 labelled answers "
        "people pass (q1) and fails 50% of the 40 they fail (q0), so J = q0 + q1 - 1 = "
        "0.00, below 0.2, and the corrected rate would be noise; fix the judge (its prompt "
        "or model), or, if the labels are too few to tell, label 72 more answers that "
        "people pass and 8 more answers that people fail"
    )


def test_judge_worse_than_chance_asks_whether_labels_are_inverted() -> None:
    # passes 20% of what people pass, fails 30% of what they fail; the run passes none,
    # so every next label goes to answers people fail (allocation's p = 0 limit)
    reason = check_labels(Labels(20, 4, 20, 6), judge_rate=0.0)
    assert reason is not None
    assert (reason.more_passed, reason.more_failed) == (0, 40)
    assert reason.message == (
        "the judge barely agrees with people: it passes 20% of the 20 labelled answers "
        "people pass (q1) and fails 30% of the 20 they fail (q0), so J = q0 + q1 - 1 = "
        "-0.50 (below 0: are the labels, or the judge's verdicts, the wrong way round?), "
        "below 0.2, and the corrected rate would be noise; fix the judge (its prompt or "
        "model), or, if the labels are too few to tell, label 40 more answers that people "
        "fail"
    )


def test_just_below_youden_threshold_is_refused_and_at_it_accepted() -> None:
    # q1 = 0.6, q0 = 0.59: J = 0.19; q0 = 0.6: J = 0.2
    assert check_labels(Labels(100, 60, 100, 59)).problem == "judge near chance"
    assert check_labels(Labels(100, 60, 100, 60)) is None


def test_too_few_labels_says_which_kind_to_label() -> None:
    reason = check_labels(Labels(25, 24, 7, 6))
    assert reason is not None
    assert (reason.problem, reason.more_passed, reason.more_failed) == ("too few labels", 0, 3)
    assert reason.message == (
        "too few labels to correct the judge: 25 answers people pass and 7 they fail are "
        "labelled, and the correction needs at least 10 of each; label at least 3 more "
        "answers that people fail"
    )
    reason = check_labels(Labels(9, 9, 0, 0))
    assert reason is not None
    assert reason.message.endswith(
        "label at least 1 more answer that people pass and 10 more answers that people fail"
    )
    with pytest.raises(UncorrectableError, match="too few labels"):
        correct(50, 100, Labels(9, 9, 10, 10))


def test_labels_from_pairs_count_each_kind() -> None:
    pairs = [(True, True)] * 7 + [(True, False)] * 3 + [(False, False)] * 4 + [(False, True)]
    assert Labels.from_pairs(pairs) == Labels(10, 7, 5, 4)
    with pytest.raises(ValueError, match=r"judge_passed must lie in 0\.\.3, got 4"):
        Labels(3, 4, 0, 0)


# --- allocation --------------------------------------------------------------------------


def test_allocation_matches_lee_on_random_inputs() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        m_pilot = rng.choice([0, rng.randint(1, 100)])
        m = rng.randint(2 * m_pilot + 1, 2 * m_pilot + 1000)
        p = rng.uniform(0.01, 1.0)
        q0, q1 = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)
        assert allocate_labels(m, p, q0, q1, m_pilot, m_pilot) == lee_allocation_reference(
            m, p, q0, q1, m_pilot
        )


def test_allocation_by_hand() -> None:
    # kappa = (1 - 0.7) / (1 - 0.9) = 3; m1 = 200 / (1 + 1.5 sqrt 3) = 55.53 -> 56
    assert allocate_labels(200, 0.4, 0.7, 0.9) == (144, 56)
    # a lenient judge errs on failures: they get more labels the rarer passes are
    assert allocate_labels(100, 0.0, 0.7, 0.9, 5, 5) == (95, 5)
    assert allocate_labels(100, 1.0, 0.7, 0.9, 5, 5) == (5, 95)


# --- PPI++ ----------------------------------------------------------------------------


def random_set(rng: np.random.Generator):
    big_n = int(rng.integers(40, 2000))
    n = int(rng.integers(30, min(big_n - 5, 400)))
    rate = rng.uniform(0.3, 0.98)
    accuracy = rng.uniform(0.5, 1.0)
    truth = rng.random(big_n) < rate
    judge = np.where(rng.random(big_n) < accuracy, truth, ~truth)
    labelled = np.zeros(big_n, dtype=bool)
    labelled[rng.choice(big_n, n, replace=False)] = True
    human = [bool(t) if lab else None for t, lab in zip(truth, labelled, strict=True)]
    return [bool(j) for j in judge], human, truth, judge, labelled


def test_ppi_matches_ppi_py_on_random_inputs() -> None:
    rng = np.random.default_rng(2311)
    worst = 0.0
    for _ in range(300):
        judge, human, truth, judge_arr, labelled = random_set(rng)
        y = truth[labelled].astype(float)
        f = judge_arr[labelled].astype(float)
        u = judge_arr[~labelled].astype(float)
        ref_est = float(np.clip(ppi_mean_pointestimate(y, f, u)[0], 0, 1))
        ref_low, ref_high = (float(np.clip(b[0], 0, 1)) for b in ppi_mean_ci(y, f, u, alpha=0.05))
        got = ppi_rate(judge, human, folds=1)
        worst = max(
            worst, abs(got.estimate - ref_est), abs(got.lower - ref_low), abs(got.upper - ref_high)
        )
    assert worst < 1e-9


def crossfit_reference(y, f, u, folds, z):
    """Cross-fitted PPI++ (Mani et al. 2025): lambda for fold k from the other folds, per
    ppi_py's formula; fold estimates averaged by size; variance of a sum of independent
    fold means given their lambdas, plus the unlabelled mean's."""
    n, big_n = len(y), len(u)
    est = var_r = lam_bar = 0.0
    for k in range(folds):
        inside = np.arange(n) % folds == k
        yo, fo = y[~inside], f[~inside]
        cov = np.mean((yo - yo.mean()) * (fo - fo.mean()))
        v = np.var(np.concatenate([fo, u]), ddof=1)
        lam = 0.0 if v == 0 else float(np.clip(cov / ((1 + len(yo) / big_n) * v), 0, 1))
        r = y[inside] - lam * f[inside]
        w = inside.sum() / n
        est += w * (lam * u.mean() + r.mean())
        var_r += w**2 * r.var() / inside.sum()
        lam_bar += w * lam
    se = math.sqrt(var_r + lam_bar**2 * u.var() / big_n)
    return [float(np.clip(x, 0, 1)) for x in (est, est - z * se, est + z * se)]


@pytest.mark.parametrize("folds", [2, 5])
def test_crossfit_ppi_matches_reference(folds) -> None:
    rng = np.random.default_rng(1453 + folds)
    z = norm.ppf(0.975)
    worst = 0.0
    for _ in range(300):
        judge, human, truth, judge_arr, labelled = random_set(rng)
        ref = crossfit_reference(
            truth[labelled].astype(float),
            judge_arr[labelled].astype(float),
            judge_arr[~labelled].astype(float),
            folds,
            z,
        )
        got = ppi_rate(judge, human, folds=folds)
        worst = max(
            worst,
            *(abs(a - b) for a, b in zip((got.estimate, got.lower, got.upper), ref, strict=True)),
        )
    assert worst < 1e-9


def test_ppi_by_hand() -> None:
    # 30 labelled: judge right on all; 10 unlabelled, judge passes 5
    # Y = f = 20 ones, 10 zeros; u = 5 ones, 5 zeros; folds=1:
    # cov(Y, f) = 2/9; var(f, u) (ddof 1) = (25 * 15 / 40) / 39 * 40 / 40... by hand:
    # 25 ones of 40: mean 5/8, sum of squares 40 * 5/8 * 3/8 = 9.375, / 39
    # lambda = (2/9) / ((1 + 3) * 9.375 / 39) = 0.231111...
    judge = [True] * 20 + [False] * 10 + [True] * 5 + [False] * 5
    human = [True] * 20 + [False] * 10 + [None] * 10
    got = ppi_rate(judge, human, folds=1)
    lam = (2 / 9) / (4 * 9.375 / 39)
    assert got.lam == pytest.approx(lam, abs=1e-15)
    # theta = lam * 0.5 + (2/3) (1 - lam)
    assert got.estimate == pytest.approx(lam * 0.5 + (2 / 3) * (1 - lam), abs=1e-15)


def test_ppi_refuses_too_few_labels() -> None:
    with pytest.raises(UncorrectableError) as caught:
        ppi_rate([True] * 100, [True] * 29 + [None] * 71)
    assert str(caught.value) == (
        "too few labelled questions for prediction-powered inference: 29 of 100 carry a "
        "person's label, and it needs at least 30; label at least 1 more question, chosen "
        "at random"
    )


def test_ppi_rejects_mismatched_or_fully_labelled_input() -> None:
    with pytest.raises(
        ValueError, match=r"judge \(3\) and human \(2\) must cover the same questions"
    ):
        ppi_rate([True] * 3, [True, None])
    with pytest.raises(ValueError, match="every question is labelled"):
        ppi_rate([True] * 40, [True] * 40)
    with pytest.raises(
        ValueError, match=r"folds \(20\) must leave at least 2 labels in each fold of 30"
    ):
        ppi_rate([True] * 40, [True] * 30 + [None] * 10, folds=20)


def test_ppi_with_a_constant_judge_is_the_labels_mean() -> None:
    # the judge passes everything: lambda is irrelevant, the estimate is the labels' mean
    got = ppi_rate([True] * 100, [True] * 24 + [False] * 16 + [None] * 60, folds=1)
    assert (got.estimate, got.lam) == (0.6, 0.0)
    half = norm.ppf(0.975) * math.sqrt(0.6 * 0.4 / 40)
    assert (got.lower, got.upper) == pytest.approx((0.6 - half, 0.6 + half), abs=1e-12)
