"""Does the corrected rate cover the true rate? A simulation of judge-corrected gates.

Part 1, a labels file on other answers (Rogan-Gladen with Lee et al.'s interval,
``pytest_rageval.correction.correct``). Per cell of a grid over the true rate people
would give, the judge's sensitivity q1 and specificity q0, the test-set size n and the
labels of each kind m (m answers people pass and m they fail), each repetition draws
the judge's passes on the run, k ~ Binomial(n, rate q1 + (1 - rate)(1 - q0)), and its
agreement on the labels, x1 ~ Binomial(m, q1), y0 ~ Binomial(m, q0), then computes

- raw: the judge's rate k / n with its Wilson interval (what the gate does today);
- corrected: ``correct(k, n, Labels(m, x1, m, y0))``; repetitions it refuses (the
  sampled J below 0.2) are counted apart, never replaced by the raw rate.

It prints each interval's coverage of the true rate, its mean width, and the
wrong-verdict rate: how often "rate >= threshold" (the point estimate against the
threshold) disagrees with the truth. The target: corrected coverage >= 94% at 95% in
every cell with J >= 0.3 and >= 50 labels of each kind.

Part 2, labels on the set's own questions (PPI++, ``ppi_rate``). A judge at 90%
accuracy (q0 = q1 = 0.9) on N unlabelled questions and n labelled ones. The effective
sample size gain is the mean squared error of the labels' mean over PPI++'s: how many
times more labels the labels alone would need. The target: >= 1.5x. "best possible" is
the gain with the ideal lambda known in advance: where it is below 1.5x (a 95% rate, whose
5% failures the judge's 10% errors swamp), no lambda reaches the target.

    python benchmarks/bench_calibration.py [--reps 2000] [--grid full|small] [--seed 19]

numpy draws the counts; every estimate is the module's own function, one call per
repetition.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import time

import numpy as np

from pytest_rageval.correction import Labels, UncorrectableError, correct, ppi_rate
from pytest_rageval.stats import wilson

GRIDS = {
    "full": {
        "rate": (0.6, 0.75, 0.85, 0.95),
        "q1": (0.6, 0.8, 0.98),
        "q0": (0.6, 0.8, 0.98),
        "n": (100, 1000, 5000),
        "m": (50, 200, 500),
        "ppi_N": (500, 2000),
        "ppi_n": (50, 100, 200),
        "ppi_rate": (0.6, 0.85, 0.95),
    },
    "small": {
        "rate": (0.6, 0.85, 0.95),
        "q1": (0.6, 0.8, 0.98),
        "q0": (0.6, 0.8, 0.98),
        "n": (100, 5000),
        "m": (50, 500),
        "ppi_N": (1000,),
        "ppi_n": (50, 200),
        "ppi_rate": (0.6, 0.85),
    },
}
THRESHOLD = 0.8
TARGET_COVERAGE = 0.94


def rogan_gladen_cells(grid: dict[str, tuple[float, ...]], reps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print(
        f"{'rate':>5} {'q1':>5} {'q0':>5} {'n':>5} {'m':>4} |"
        f" {'raw cov':>7} {'width':>6} {'wrong':>6} |"
        f" {'corr cov':>8} {'width':>6} {'wrong':>6} {'refused':>7}"
    )
    target_cells = short = 0
    sums = {"raw wrong": 0.0, "wrong": 0.0, "raw width": 0.0, "width": 0.0}
    worst_target = 1.0
    raw_low = 1.0
    for rate, q1, q0, n, m in itertools.product(
        grid["rate"], grid["q1"], grid["q0"], grid["n"], grid["m"]
    ):
        n, m = int(n), int(m)
        j = q0 + q1 - 1
        judged = rate * q1 + (1 - rate) * (1 - q0)
        ks = rng.binomial(n, judged, reps)
        x1s = rng.binomial(m, q1, reps)
        y0s = rng.binomial(m, q0, reps)
        truth = rate >= THRESHOLD
        raw_cover = raw_width = raw_wrong = 0.0
        cover = width = wrong = 0.0
        refused = 0
        for k, x1, y0 in zip(ks.tolist(), x1s.tolist(), y0s.tolist(), strict=True):
            interval = wilson(k, n)
            assert interval is not None
            raw_cover += interval[0] <= rate <= interval[1]
            raw_width += interval[1] - interval[0]
            raw_wrong += (k / n >= THRESHOLD) != truth
            try:
                got = correct(k, n, Labels(m, x1, m, y0))
            except UncorrectableError:
                refused += 1
                continue
            cover += got.lower <= rate <= got.upper
            width += got.upper - got.lower
            wrong += (got.estimate >= THRESHOLD) != truth
        used = reps - refused
        raw_low = min(raw_low, raw_cover / reps)
        corr = (
            f"{cover / used:8.1%} {width / used:6.3f} {wrong / used:6.1%}"
            if used
            else f"{'-':>8} {'-':>6} {'-':>6}"
        )
        mark = ""
        if j >= 0.3 - 1e-9 and m >= 50 and used:
            target_cells += 1
            worst_target = min(worst_target, cover / used)
            sums["raw wrong"] += raw_wrong / reps
            sums["wrong"] += wrong / used
            sums["raw width"] += raw_width / reps
            sums["width"] += width / used
            if cover / used < TARGET_COVERAGE:
                short += 1
                mark = "  < 94%"
        print(
            f"{rate:5.2f} {q1:5.2f} {q0:5.2f} {n:5d} {m:4d} |"
            f" {raw_cover / reps:7.1%} {raw_width / reps:6.3f} {raw_wrong / reps:6.1%} |"
            f" {corr} {refused / reps:7.1%}{mark}"
        )
    print(
        f"\ncells with J >= 0.3 and >= 50 labels of each kind: {target_cells}; corrected "
        f"coverage below {TARGET_COVERAGE:.0%} in {short}; lowest {worst_target:.1%}. "
        f"Raw coverage, lowest over all cells: {raw_low:.1%}"
    )
    if target_cells:
        mean = {key: total / target_cells for key, total in sums.items()}
        print(
            f"mean over those cells: wrong verdicts at {THRESHOLD}: raw {mean['raw wrong']:.1%},"
            f" corrected {mean['wrong']:.1%}; width: raw {mean['raw width']:.3f}, corrected"
            f" {mean['width']:.3f}"
        )


def best_gain(rate: float, accuracy: float, big_n: int, n: int) -> float:
    """The gain with the best lambda known in advance: ``1 / (1 - rho^2 N / (N + n))``,
    ``rho`` the correlation of a person's verdict and the judge's (a yardstick for the
    simulated gains, whose own noise at 2,000 repetitions is a few percent)."""
    judged = rate * accuracy + (1 - rate) * (1 - accuracy)
    cov = rate * (1 - rate) * (2 * accuracy - 1)
    rho2 = cov**2 / (rate * (1 - rate) * judged * (1 - judged))
    return 1 / (1 - rho2 * big_n / (big_n + n))


def ppi_cells(grid: dict[str, tuple[float, ...]], reps: int, seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    accuracy = 0.9
    print(
        f"\nPPI++, judge accuracy {accuracy:.0%} (q0 = q1):\n"
        f"{'rate':>5} {'N':>5} {'n':>4} | {'ESS gain x-fit':>14} {'cov':>6} |"
        f" {'ESS gain 1-fit':>14} {'cov':>6} | {'labels-only cov':>15} | {'best possible':>13}"
    )
    z = 1.959963984540054
    lowest_gain = float("inf")
    for rate, big_n, n in itertools.product(grid["ppi_rate"], grid["ppi_N"], grid["ppi_n"]):
        big_n, n = int(big_n), int(n)
        err = {"x": [], "1": [], "labels": []}
        cover = {"x": 0, "1": 0, "labels": 0}
        for _ in range(reps):
            truth = rng.random(big_n + n) < rate
            judge = np.where(rng.random(big_n + n) < accuracy, truth, ~truth).tolist()
            human: list[bool | None] = [bool(t) for t in truth[:n]] + [None] * big_n
            for key, folds in (("x", 2), ("1", 1)):
                got = ppi_rate(judge, human, folds=folds)
                err[key].append(got.estimate - rate)
                cover[key] += got.lower <= rate <= got.upper
            mean = float(truth[:n].mean())
            half = z * np.sqrt(mean * (1 - mean) / n)
            err["labels"].append(mean - rate)
            cover["labels"] += mean - half <= rate <= mean + half
        mse = {key: float(np.mean(np.square(e))) for key, e in err.items()}
        gain_x = mse["labels"] / mse["x"]
        gain_1 = mse["labels"] / mse["1"]
        lowest_gain = min(lowest_gain, gain_x)
        print(
            f"{rate:5.2f} {big_n:5d} {n:4d} | {gain_x:13.2f}x {cover['x'] / reps:6.1%} |"
            f" {gain_1:13.2f}x {cover['1'] / reps:6.1%} | {cover['labels'] / reps:15.1%} |"
            f" {best_gain(rate, accuracy, big_n, n):12.2f}x"
        )
    print(f"lowest cross-fitted ESS gain: {lowest_gain:.2f}x (target >= 1.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--skip-ppi", action="store_true")
    args = parser.parse_args()
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"grid {args.grid}, {args.reps} repetitions per cell, threshold {THRESHOLD}"
    )
    grid = GRIDS[args.grid]
    start = time.perf_counter()
    rogan_gladen_cells(grid, args.reps, args.seed)
    if not args.skip_ppi:
        ppi_cells(grid, args.reps, args.seed)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
