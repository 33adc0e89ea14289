"""The call policy without pytest's machinery: slots, time-outs, retries and give-ups."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_rageval.results import GaveUp
from pytest_rageval.runner.policy import CallPolicy


class StatusError(Exception):
    def __init__(self, status_code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.headers = headers or {}


def attempt(
    make: Callable[[], Awaitable[Any]], retries: int, *, timeout: float = 5.0, paced: bool = True
) -> tuple[Any, dict[str, int]]:
    counts = {"app_calls": 0, "judge_calls": 0, "retries": 0}
    limits = SimpleNamespace(timeout=timeout, backoff=0.0, max_backoff=60.0, counts=counts)
    policy = CallPolicy(limits, random.Random(0))

    async def run() -> Any:
        policy.start(workers=2, rpm=None)
        return await policy.attempts((0, 1), make, retries, paced=paced)

    return asyncio.run(run()), counts


def failing(*errors: BaseException) -> Callable[[], Awaitable[str]]:
    queue = list(errors)

    async def make() -> str:
        if queue:
            raise queue.pop(0)
        return "verdict"

    return make


def test_a_transient_failure_is_tried_again_and_counted() -> None:
    value, counts = attempt(failing(StatusError(429), StatusError(503)), retries=3)
    assert value == "verdict"
    assert counts == {"app_calls": 0, "judge_calls": 3, "retries": 2}


def test_the_app_is_counted_apart_from_the_judges() -> None:
    value, counts = attempt(failing(StatusError(500)), retries=1, paced=False)
    assert (value, counts) == ("verdict", {"app_calls": 2, "judge_calls": 0, "retries": 1})


def test_spent_retries_give_up_in_words() -> None:
    with pytest.raises(GaveUp) as caught:
        attempt(failing(*(StatusError(503) for _ in range(3))), retries=2)
    assert str(caught.value) == "server error from the server (503) after 3 attempts"
    assert isinstance(caught.value.__cause__, StatusError)


def test_a_server_asking_for_more_than_the_cap_ends_it_at_once() -> None:
    with pytest.raises(GaveUp) as caught:
        attempt(failing(StatusError(429, {"retry-after": "120"})), retries=3)
    assert str(caught.value) == (
        "rate limited by the server (429) after 1 attempt; the server asked to wait 120 s, "
        "more than --rag-max-backoff 60 s"
    )


def test_an_attempt_over_the_time_out_gives_up_when_no_retry_is_left() -> None:
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(GaveUp, match=r"^no answer within 0\.05 s \(1 attempt\)$"):
        attempt(slow, retries=0, timeout=0.05)


def test_the_users_own_error_is_not_retried() -> None:
    with pytest.raises(ValueError, match=r"^a bug$"):
        attempt(failing(ValueError("a bug")), retries=3)
