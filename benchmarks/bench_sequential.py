"""The sequential gate on scripted verdicts: how often it is wrong, and how many questions
it visits, against a naive "stop once a 95% Wilson interval excludes tau" contender.

For each true full-set pass rate, a population of ``--n`` verdicts with exactly that many
passes is visited in ``--orders`` uniformly random orders. The gate runs
pytest_rageval.sequential's own formulas (``advance`` and ``decided``, the code
``SequentialTest.update`` runs), element-wise across the orders with numpy. A verdict is
wrong when it differs from the full set's (rate >= tau passes).

    python benchmarks/bench_sequential.py --orders 1000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from pytest_rageval.sequential import advance, decided, target

RATES = (0.70, 0.75, 0.80, 0.85, 0.87, 0.88, 0.89, 0.895, 0.90, 0.905, 0.91, 0.92, 0.93, 0.95, 0.98)
Z_95 = 1.959963984540054
WILSON_EVERY = 50


def sequential(orders: np.ndarray, tau: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(visited, passes) of the gate on each row of ``orders`` (one order per row)."""
    count, n = orders.shape
    k = target(n, tau)
    visited = np.full(count, n)
    passes = np.zeros(count, dtype=bool)
    active = np.arange(count)
    passed = np.zeros(count)
    squares = np.zeros(count)
    up = np.ones(count)
    down = np.ones(count)
    for t in range(n):
        x = orders[active, t].astype(float)
        passed, squares, up, down = advance(
            n, t, passed, squares, up, down, x, k - 1, k, np.minimum, np.maximum
        )
        yes, no = decided(n, t + 1, passed, up, down, k, 1 / alpha)
        done = yes | no
        if done.any():
            visited[active[done]] = t + 1
            passes[active[done]] = yes[done]
            keep = ~done
            active, passed, squares, up, down = (
                active[keep],
                passed[keep],
                squares[keep],
                up[keep],
                down[keep],
            )
        if not active.size:
            break
    return visited, passes


def wilson_peeking(orders: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """(visited, passes) of the naive contender: every WILSON_EVERY questions, stop once
    the 95% Wilson interval of the rate so far excludes tau; at the end, the exact verdict."""
    count, n = orders.shape
    looks = np.arange(WILSON_EVERY, n, WILSON_EVERY)
    sums = np.cumsum(orders, axis=1, dtype=np.int64)[:, looks - 1]
    p = sums / looks
    z2 = Z_95 * Z_95
    centre = (p + z2 / (2 * looks)) / (1 + z2 / looks)
    half = Z_95 / (1 + z2 / looks) * np.sqrt(p * (1 - p) / looks + z2 / (4 * looks * looks))
    above, below = centre - half > tau, centre + half < tau
    stop = above | below
    first = np.where(stop.any(axis=1), stop.argmax(axis=1), -1)
    rows = np.arange(count)
    visited = np.where(first >= 0, looks[first], n)
    exact = orders.sum(axis=1) >= target(n, tau)
    passes = np.where(first >= 0, above[rows, first], exact)
    return visited, passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--tau", type=float, default=0.90)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--chunk", type=int, default=1000, help="orders simulated at once")
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    n, tau, alpha = args.n, args.tau, args.alpha
    rng = np.random.default_rng(args.seed)
    print(f"N={n} tau={tau} alpha={alpha} orders={args.orders} per rate, seed {args.seed}")
    header = (
        f"{'rate':>6} {'truth':>5} | {'wrong':>15} {'median':>6} {'p90':>5} {'max':>5}"
        f" {'saving':>7} {'wrong@N':>7} | {'wilson wrong':>15} {'saving':>7}"
    )
    print(header)
    print("-" * len(header))
    misses = []
    start = time.perf_counter()
    for rate in RATES:
        passes_in_set = round(rate * n)
        truth = passes_in_set >= target(n, tau)
        population = np.zeros(n, dtype=np.int8)
        population[:passes_in_set] = 1
        seq_visited, seq_wrong, seq_wrong_at_n = [], 0, 0
        wil_visited, wil_wrong = [], 0
        for begin in range(0, args.orders, args.chunk):
            count = min(args.chunk, args.orders - begin)
            orders = rng.permuted(np.tile(population, (count, 1)), axis=1)
            visited, passes = sequential(orders, tau, alpha)
            seq_visited.append(visited)
            seq_wrong += int((passes != truth).sum())
            seq_wrong_at_n += int(((passes != truth) & (visited == n)).sum())
            visited, passes = wilson_peeking(orders, tau)
            wil_visited.append(visited)
            wil_wrong += int((passes != truth).sum())
        seq_all = np.concatenate(seq_visited)
        wil_all = np.concatenate(wil_visited)
        rate_seq, rate_wil = seq_wrong / args.orders, wil_wrong / args.orders
        se_seq = math.sqrt(max(rate_seq * (1 - rate_seq), 1e-300) / args.orders)
        se_wil = math.sqrt(max(rate_wil * (1 - rate_wil), 1e-300) / args.orders)
        saving = 1 - seq_all.mean() / n
        print(
            f"{rate:6.3f} {'pass' if truth else 'fail':>5} |"
            f" {rate_seq:6.4f} ± {se_seq:6.4f} {int(np.median(seq_all)):6d}"
            f" {int(np.percentile(seq_all, 90)):5d} {int(seq_all.max()):5d} {saving:7.1%}"
            f" {seq_wrong_at_n:7d} |"
            f" {rate_wil:6.4f} ± {se_wil:6.4f} {1 - wil_all.mean() / n:7.1%}",
            flush=True,
        )
        gap = abs(passes_in_set / n - tau)
        if rate_seq > alpha + 3 * se_seq:
            misses.append(f"{rate}: wrong {rate_seq:.4f} > alpha + 3 SE")
        if seq_all.max() > n or seq_wrong_at_n:
            misses.append(f"{rate}: more than N visited or wrong at N")
        if gap >= 0.10 - 1e-9 and saving < 0.97:
            misses.append(f"{rate}: saving {saving:.1%} < 97%")
        elif gap >= 0.03 - 1e-9 and saving < 0.85:
            misses.append(f"{rate}: saving {saving:.1%} < 85%")
    print(f"{time.perf_counter() - start:.0f} s")
    print("targets met" if not misses else "targets MISSED:\n  " + "\n  ".join(misses))


if __name__ == "__main__":
    main()
