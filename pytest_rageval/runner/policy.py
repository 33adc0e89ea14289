"""The call policy: one call to the app or a judge, with a slot of the shared
:class:`~pytest_rageval.retry.Throttle`, pacing, a time-out per attempt, and retries of
transient failures after the wait :func:`~pytest_rageval.retry.next_wait` decides."""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from pytest_rageval import retry
from pytest_rageval.results import GaveUp, TaskTimeout

T = TypeVar("T")


class Limits(Protocol):
    """The runner's settings the policy reads at each attempt, and its counters."""

    timeout: float
    backoff: float
    max_backoff: float
    counts: dict[str, int]


class CallPolicy:
    """Attempts of one call each, for every task of one runner. Its :class:`Throttle`
    is made on the loop thread (:meth:`start`), and used there only."""

    def __init__(self, limits: Limits, rng: random.Random) -> None:
        self.limits = limits
        self.rng = rng
        self.throttle: retry.Throttle | None = None

    def start(self, workers: int, rpm: float | None) -> None:
        """On the loop thread, before the first attempt."""
        self.throttle = retry.Throttle(workers, rpm)

    async def attempts(
        self,
        priority: tuple[int, int],
        make: Callable[[], Awaitable[T]],
        retries: int,
        *,
        paced: bool,
    ) -> T:
        """One task with a slot, a time-out per attempt, and retries of transient errors."""
        throttle, limits = self.throttle, self.limits
        assert throttle is not None
        first = time.monotonic()
        for attempt in itertools.count():
            await throttle.acquire(priority)
            try:
                started = await throttle.gate(paced)
                limits.counts["judge_calls" if paced else "app_calls"] += 1
                limits.counts["retries"] += attempt > 0
                try:
                    value = await _within(limits.timeout, make)
                except asyncio.TimeoutError:
                    last: Exception = TaskTimeout(f"no answer within {limits.timeout:g} s")
                    failure: retry.Transient | None = None
                except Exception as exc:
                    failure = retry.classify(exc)
                    if failure is None:
                        raise
                    last = exc
                else:
                    throttle.succeeded()
                    return value
            finally:
                throttle.release()
            if failure is not None and failure.kind == "rate_limit":
                throttle.rate_limited(started, failure.retry_after)
            asked = failure.retry_after if failure is not None else None
            waited = retry.next_wait(
                asked,
                attempt,
                retries,
                backoff=limits.backoff,
                max_backoff=limits.max_backoff,
                rng=self.rng,
            )
            if waited is None:
                raise GaveUp(self._gave_up(failure, asked, attempt, retries, first)) from last
            await asyncio.sleep(waited)
        raise AssertionError("unreachable")  # pragma: no cover

    async def local(self, make: Callable[[], Awaitable[T]]) -> T:
        """A judgement that waits on nothing (an evaluator with ``rageval_local``):
        counted, with no slot, pacing, time-out or retry, which are for waiting on an LLM."""
        self.limits.counts["judge_calls"] += 1
        return await make()

    def _gave_up(
        self,
        failure: retry.Transient | None,
        asked: float | None,
        attempt: int,
        retries: int,
        first: float,
    ) -> str:
        limits = self.limits
        message = retry.gave_up(failure, attempt + 1, time.monotonic() - first, limits.timeout)
        if asked is not None and asked > limits.max_backoff and attempt < retries:
            message += (
                f"; the server asked to wait {asked:g} s, more than --rag-max-backoff "
                f"{limits.max_backoff:g} s"
            )
        return message


if sys.version_info >= (3, 11):

    async def _within(seconds: float, make: Callable[[], Awaitable[T]]) -> T:
        """``await make()`` with a time limit, in the calling task: ``wait_for`` would start
        a task per attempt, and each hop through the loop queues behind other work."""
        async with asyncio.timeout(seconds):
            return await make()

else:  # pragma: no cover

    async def _within(seconds: float, make: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.wait_for(make(), seconds)
