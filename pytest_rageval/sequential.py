"""A sequential, anytime-valid gate on a set's full pass rate (no pytest here, stdlib only).

A set of ``n`` questions is a finite population, and the gate is on its full-set pass rate
(what a full run would measure). The questions are visited in a uniformly random order
fixed before any verdict is seen (:func:`order`), and after each verdict two capital
processes bet against the two hypotheses "the full set fails" and "the full set passes",
as in Waudby-Smith & Ramdas, "Confidence sequences for sampling without replacement"
(NeurIPS 2020, arXiv 2006.04347) and "Estimating means of bounded random variables by
betting" (JRSS-B 2024, arXiv 2010.09686). A process whose hypothesis holds is a
nonnegative supermartingale starting at 1, so by Ville's inequality it reaches
``1 / alpha`` with probability at most ``alpha``, however often it is looked at: the
verdict the gate declares is wrong with probability at most ``alpha``. When every
question is visited, the verdict is the exact full-set verdict.

The arithmetic (:func:`advance`, :func:`decided`) uses only ``+ - * /``, comparisons,
``&``, ``|`` and the ``minimum``/``maximum`` it is given, so the same code runs on floats
(one run, :class:`SequentialTest`) and element-wise on numpy arrays (many orders at once
in the benchmark, every candidate rate at once in :meth:`SequentialTest.bounds`).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pytest_rageval.stats import EPSILON

Decision = Literal["pass", "fail"]
Vote = Literal["passing", "failing", "invalid"]

PRIOR_MEAN = 0.5
PRIOR_VARIANCE = 0.25
"""The bets' running mean and variance start from one fake draw with these (as confseq's
``lambda_aKelly`` does with ``fake_obs=1``), so the first bets are defined."""
TRUNCATION = 0.5
"""A bet stakes at most this share of what a draw can lose (confseq's ``trunc_scale``):
each factor stays >= 1 - TRUNCATION > 0, so the capital never reaches 0."""
TINY = 1e-300
"""Keeps ``TRUNCATION / mean`` finite when the null mean is 0 (the bound is then void)."""

T = TypeVar("T")
Number = Any
"""A float, or a numpy array of them (element-wise)."""


def target(n: int, tau: float) -> int:
    """The fewest passes out of ``n`` that meet the threshold ``tau`` (as gate.py
    compares rates: ``passed >= tau * n - EPSILON``)."""
    return max(0, math.ceil(tau * n - EPSILON))


def null_mean(n: int, visited: int, passed: Number, k: Number) -> Number:
    """m_t: the mean of the next draw (the ``visited + 1``-th) if the whole set has ``k``
    passes and ``passed`` of the ``visited`` drawn so far passed. Outside [0, 1] the
    hypothesis "exactly ``k`` passes" is already impossible."""
    return (k - passed) / (n - visited)


def advance(
    n: int,
    visited: int,
    passed: Number,
    squares: Number,
    up: Number,
    down: Number,
    x: Number,
    k_up: Number,
    k_down: Number,
    minimum: Callable[[Any, Any], Any] = min,
    maximum: Callable[[Any, Any], Any] = max,
) -> tuple[Number, Number, Number, Number]:
    """One draw ``x`` (the ``visited + 1``-th) with aGRAPA bets, truncated.

    ``up`` bets against "at most ``k_up`` passes in the set" (it grows when draws pass
    more often than that allows), ``down`` against "at least ``k_down`` passes". Bets
    are predictable: they use only the draws before ``x``. aGRAPA (arXiv 2010.09686,
    section 5; confseq's ``lambda_aKelly`` with ``N``) stakes (mu_hat - m_t) /
    (var_hat + (mu_hat - m_t)^2), where mu_hat estimates the mean of the questions not
    drawn yet; each side keeps only bets on its own direction (a bet the other way
    would not be a supermartingale under the composite hypothesis) and stakes at most
    TRUNCATION / m_t (up) or TRUNCATION / (1 - m_t) (down).

    ``squares`` is the running sum of (x_i - mean_i)^2 that the variance estimate uses.
    Returns the new ``passed``, ``squares``, ``up``, ``down``.
    """
    mean = (PRIOR_MEAN + passed) / (visited + 1)
    variance = (PRIOR_VARIANCE + squares) / (visited + 1)
    rest = (n * mean - passed) / (n - visited)
    m_up = null_mean(n, visited, passed, k_up)
    gap = rest - m_up
    bet = minimum(maximum(gap / (variance + gap * gap), 0.0), TRUNCATION / maximum(m_up, TINY))
    up = up * (1 + bet * (x - m_up))
    m_down = null_mean(n, visited, passed, k_down)
    gap = m_down - rest
    bet = minimum(
        maximum(gap / (variance + gap * gap), 0.0), TRUNCATION / maximum(1 - m_down, TINY)
    )
    down = down * (1 - bet * (x - m_down))
    passed = passed + x
    deviation = x - (PRIOR_MEAN + passed) / (visited + 2)
    return passed, squares + deviation * deviation, up, down


def decided(
    n: int, visited: int, passed: Number, up: Number, down: Number, k: Number, threshold: float
) -> tuple[Number, Number]:
    """(passes, fails): the set is certain to meet "at least ``k`` passes", or certain
    not to. By counting (enough have passed, or too few can still pass), or because a
    capital reached ``threshold`` (``1 / alpha``); when both capitals reach it at the
    same draw, the larger wins."""
    sure_pass = passed >= k
    sure_fail = passed + (n - visited) < k
    passes = sure_pass | ((passed + (n - visited) >= k) & (up >= threshold) & (up >= down))
    fails = sure_fail | ((passed < k) & (down >= threshold) & (down > up))
    return passes, fails


@dataclass(frozen=True)
class SequentialState:
    """Everything a test is rebuilt from: the settings and the verdicts in visiting order.
    JSON-safe through :meth:`to_json`, so a later merge (CI shards) can replay it."""

    n: int
    tau: float
    alpha: float
    verdicts: tuple[float, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "tau": self.tau, "alpha": self.alpha, "verdicts": list(self.verdicts)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SequentialState:
        return cls(
            n=int(data["n"]),
            tau=float(data["tau"]),
            alpha=float(data["alpha"]),
            verdicts=tuple(float(x) for x in data.get("verdicts") or ()),
        )


class SequentialTest:
    """Test "the full-set pass rate is at least ``tau``" against "it is below", visiting
    ``n`` verdicts (1 passing, 0 not: invalid verdicts are passed as 0) in a uniformly
    random order. :meth:`update` returns the decision once it is made; it is wrong with
    probability at most ``alpha``, and exact once all ``n`` are visited.

    >>> test = SequentialTest(5, 0.6, 0.05)
    >>> [test.update(x) for x in (1, 1, 1)]
    [None, None, 'pass']
    """

    def __init__(self, n: int, tau: float, alpha: float) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
        if not math.isfinite(tau):
            raise ValueError(f"tau must be a finite number, got {tau}")
        self.n, self.tau, self.alpha = n, tau, alpha
        self.k = target(n, tau)
        self.threshold = 1 / alpha
        self.passed = 0.0
        self.up = 1.0
        self.down = 1.0
        self._squares = 0.0
        self._verdicts: list[float] = []
        self.decision: Decision | None = None
        self._check()

    @property
    def visited(self) -> int:
        return len(self._verdicts)

    @property
    def exact(self) -> bool:
        """The decision was made by counting (it is the full-set verdict), not by betting."""
        return self.decision is not None and (
            self.passed >= self.k or self.passed + self.n - self.visited < self.k
        )

    @property
    def state(self) -> SequentialState:
        return SequentialState(self.n, self.tau, self.alpha, tuple(self._verdicts))

    @classmethod
    def from_state(cls, state: SequentialState) -> SequentialTest:
        """The test after replaying ``state``'s verdicts."""
        test = cls(state.n, state.tau, state.alpha)
        for x in state.verdicts:
            test.update(x)
        return test

    def update(self, x: float) -> Decision | None:
        """Add the next verdict (1 passes, 0 does not; values between are allowed as
        scores in [0, 1]) and return the decision, if it is made now or was before."""
        if self.decision is not None:
            raise ValueError(f"the test already decided {self.decision!r}; stop visiting")
        if not 0 <= x <= 1:
            raise ValueError(f"a verdict must lie in [0, 1], got {x!r}")
        x = float(x)
        self.passed, self._squares, self.up, self.down = advance(
            self.n,
            self.visited,
            self.passed,
            self._squares,
            self.up,
            self.down,
            x,
            self.k - 1,
            self.k,
        )
        self._verdicts.append(x)
        return self._check()

    def _check(self) -> Decision | None:
        passes, fails = decided(
            self.n, self.visited, self.passed, self.up, self.down, self.k, self.threshold
        )
        self.decision = "pass" if passes else "fail" if fails else None
        return self.decision

    def bounds(self) -> tuple[float, float]:
        """The anytime-valid confidence sequence for the full-set pass rate after the
        verdicts so far (see :func:`confidence_sequence`). Needs numpy."""
        return confidence_sequence(self.n, self.alpha, self._verdicts)


def confidence_sequence(n: int, alpha: float, verdicts: Sequence[float]) -> tuple[float, float]:
    """The lowest and highest full-set pass rate k/n that no capital has rejected after
    ``verdicts`` (each side holds with probability >= 1 - alpha at all times at once).
    Computed as confseq's ``betting_cs`` with ``N`` does, on the grid of the rates a set of
    ``n`` can have, with the running maximum of each capital (a rate once rejected stays
    rejected), so it agrees with the test's decision at the lattice points around tau.
    Each bound alone holds at 1 - alpha, as the decision does; the interval as a whole
    at 1 - 2 alpha (pass ``alpha / 2`` for a two-sided 1 - alpha interval: the bets do
    not depend on alpha). Needs numpy (imported here, not with the module)."""
    import numpy as np

    threshold = 1 / alpha
    ks = np.arange(n + 1, dtype=float)
    rejected_low = np.zeros(n + 1, dtype=bool)
    rejected_high = np.zeros(n + 1, dtype=bool)
    passed, squares = 0.0, 0.0
    up, down = np.ones(n + 1), np.ones(n + 1)
    for visited, x in enumerate(verdicts):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            passed, squares, up, down = advance(
                n, visited, passed, squares, up, down, x, ks, ks, np.minimum, np.maximum
            )
        # "at most k passes" is impossible once more than k passed, and "at least k"
        # once too few can still pass
        rejected_low |= (up >= threshold) | (passed > ks)
        rejected_high |= (down >= threshold) | (passed + n - visited - 1 < ks)
    low = int(np.argmin(rejected_low)) if not rejected_low.all() else n
    kept = np.flatnonzero(~rejected_high)
    high = int(kept[-1]) if kept.size else 0
    scale = n or 1
    return low / scale, max(low, high) / scale


def order(ids: Sequence[T], seed: int | str) -> list[T]:
    """``ids`` in a uniformly random order that depends only on ``seed`` (and ``ids``'
    order): the same seed visits the same questions first, in every process."""
    shuffled = list(ids)
    random.Random(seed_int(seed)).shuffle(shuffled)
    return shuffled


def seed_int(seed: int | str) -> int:
    """An int seed; a string is hashed (random.Random would hash it the same way on
    every run too, but an explicit digest is plain to reproduce elsewhere)."""
    if isinstance(seed, int):
        return seed
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")


def default_seed(set_name: str) -> int:
    """The seed a set uses unless one is given: stable across processes and Python
    versions (sha256 of the name, not hash(), which is salted per process)."""
    return seed_int(f"pytest-rageval:{set_name}")


def split_alpha(alpha: float, k: int) -> float:
    """Bonferroni: each of ``k`` gated hypotheses of one set (its metrics, its
    ``must_pass`` questions, the drop gate) is tested at ``alpha / k``, so the chance that
    any verdict of the set is wrong stays at most ``alpha``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return alpha / k


def majority_decided(votes: Sequence[bool | None], k: int) -> Vote | None:
    """The majority of ``k`` votes as soon as the remaining votes cannot change it, else
    None. A vote is True (passing), False (failing) or None (invalid). Agrees with
    verdicts.majority over all ``k`` votes: passing when more than half pass (a tie
    fails), else invalid when more than half are invalid, else failing."""
    if len(votes) > k:
        raise ValueError(f"{len(votes)} votes of {k}")
    remaining = k - len(votes)
    passes = sum(vote is True for vote in votes)
    invalid = sum(vote is None for vote in votes)
    if passes * 2 > k:
        return "passing"
    if (passes + remaining) * 2 > k:
        return None
    if invalid * 2 > k:
        return "invalid"
    if (invalid + remaining) * 2 <= k:
        return "failing"
    return None


def votes_to_cast(votes: Sequence[bool | None], k: int) -> int:
    """How many of the ``k`` votes to cast next, at once, after ``votes`` (0 once the
    majority is decided): the fewest that could decide it. Each of them is needed whatever
    the others say (fewer could not decide), so casting them together makes exactly the
    calls of casting one at a time and stopping at :func:`majority_decided`."""
    if majority_decided(votes, k) is not None:
        return 0
    remaining = k - len(votes)
    for more in range(1, remaining):
        # a decision is nearest when every new vote says the same
        if any(
            majority_decided([*votes, *[vote] * more], k) is not None
            for vote in (True, False, None)
        ):
            return more
    return remaining
