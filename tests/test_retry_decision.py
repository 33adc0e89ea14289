"""``retry.next_wait``: the one decision of both retry loops, without a loop or a server."""

from __future__ import annotations

import random

import pytest

from pytest_rageval.retry import next_wait


class Draws(random.Random):
    """Records each ``uniform(a, b)`` asked for and answers ``a + share * (b - a)``."""

    def __init__(self, share: float = 0.5) -> None:
        super().__init__(0)
        self.share = share
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return a + self.share * (b - a)


@pytest.mark.parametrize(
    ("attempt", "backoff", "max_backoff", "ceiling"),
    [
        (0, 0.5, 60.0, 0.5),  # 0.5 * 2**0
        (1, 0.5, 60.0, 1.0),  # 0.5 * 2**1
        (3, 0.5, 60.0, 4.0),  # 0.5 * 2**3
        (7, 0.5, 60.0, 60.0),  # 0.5 * 2**7 = 64, capped at 60
        (2, 1.0, 3.0, 3.0),  # 1 * 2**2 = 4, capped at 3
        (200, 1.0, 5.0, 5.0),  # a huge attempt number does not overflow
    ],
)
def test_without_a_server_wait_it_draws_full_jitter_under_the_ceiling(
    attempt: int, backoff: float, max_backoff: float, ceiling: float
) -> None:
    rng = Draws(share=0.25)
    wait = next_wait(None, attempt, 1000, backoff=backoff, max_backoff=max_backoff, rng=rng)
    assert rng.asked == [(0, ceiling)]
    assert wait == pytest.approx(0.25 * ceiling)


def test_the_servers_wait_wins_and_draws_nothing() -> None:
    rng = Draws()
    assert next_wait(7.5, 0, 3, backoff=0.5, max_backoff=60.0, rng=rng) == 7.5
    assert next_wait(0.0, 2, 3, backoff=0.5, max_backoff=60.0, rng=rng) == 0.0
    assert next_wait(60.0, 1, 3, backoff=0.5, max_backoff=60.0, rng=rng) == 60.0  # at the cap
    assert rng.asked == []


def test_it_gives_up_when_the_retries_are_spent() -> None:
    rng = Draws()
    assert next_wait(None, 3, 3, backoff=0.5, max_backoff=60.0, rng=rng) is None
    assert next_wait(2.0, 3, 3, backoff=0.5, max_backoff=60.0, rng=rng) is None
    assert next_wait(None, 0, 0, backoff=0.5, max_backoff=60.0, rng=rng) is None
    assert next_wait(None, 2, 3, backoff=0.5, max_backoff=60.0, rng=rng) == pytest.approx(1.0)
    assert rng.asked == [(0, 2.0)]


def test_it_gives_up_when_the_server_asks_for_more_than_the_cap() -> None:
    rng = Draws()
    assert next_wait(60.5, 0, 3, backoff=0.5, max_backoff=60.0, rng=rng) is None
    assert next_wait(120.0, 0, 10, backoff=1.0, max_backoff=60.0, rng=rng) is None
    assert rng.asked == []


def test_a_zero_backoff_waits_nothing_and_draws_nothing() -> None:
    rng = Draws()
    assert next_wait(None, 4, 5, backoff=0.0, max_backoff=60.0, rng=rng) == 0.0
    assert rng.asked == []


def test_a_seeded_rng_gives_the_same_waits_as_the_draws_it_stands_for() -> None:
    # random.Random(5).uniform(0, c) is c * random.Random(5).random(): 0.6229016948897019
    waits = [
        next_wait(None, 1, 3, backoff=0.5, max_backoff=60.0, rng=random.Random(5)) for _ in range(2)
    ]
    assert waits == [pytest.approx(0.6229016948897019), pytest.approx(0.6229016948897019)]
