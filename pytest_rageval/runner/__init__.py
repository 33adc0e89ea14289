"""The shared asynchronous runner: one event loop thread, a bounded pool, pipelined work.

Nothing here imports pytest. A :class:`Runner` owns one event loop in its own thread for
the life of the process, so llama-index's async clients are only ever used on that loop.
Every LLM-bound task (a query or one evaluation) takes a slot of a priority semaphore of
``workers`` slots; older questions go first, so a question's evaluations start as soon as
its own query has finished and results come back roughly in submission order. Queries run
one pool's worth of questions ahead of that order, so near the end the last evaluations
are not all left waiting on the last queries with the rest of the pool idle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import random
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from pytest_rageval import judges, usage
from pytest_rageval.cache import VerdictCache
from pytest_rageval.questions import Question
from pytest_rageval.results import GaveUp as GaveUp
from pytest_rageval.results import QuestionResult as QuestionResult
from pytest_rageval.results import TaskTimeout as TaskTimeout
from pytest_rageval.results import describe as describe
from pytest_rageval.results import error_source as error_source
from pytest_rageval.runner import engines
from pytest_rageval.runner.engines import Answered as Answered
from pytest_rageval.runner.loop import BLOCKED_AFTER as BLOCKED_AFTER
from pytest_rageval.runner.loop import LoopThread
from pytest_rageval.runner.pipeline import Pipeline, blocking_judge
from pytest_rageval.runner.policy import CallPolicy
from pytest_rageval.runner.starter import Queued, Starter
from pytest_rageval.runner.threads import DaemonThreads as DaemonThreads

T = TypeVar("T")
K = TypeVar("K")


class Runner:
    """One event loop thread and one bounded pool of LLM-bound tasks for the whole process.

    ``workers`` is the most queries and evaluations in flight at once; ``timeout`` bounds
    each attempt of one task; ``retries`` is how many more attempts a transient error of
    an evaluation gets, ``query_retries`` the same for the app (0: the app's own retry
    policy is part of the app under test). ``deadline`` (seconds after the first
    question) stops the run: what is unfinished then is "not evaluated". ``reask``
    asks a judge once more when its answer could not be read. ``notices`` collects
    warnings for the user (a blocked event loop, judges that retry on their own).
    """

    def __init__(
        self,
        workers: int = 8,
        *,
        timeout: float = 120.0,
        retries: int = 3,
        query_retries: int = 0,
        backoff: float = 0.5,
        max_backoff: float = 60.0,
        rpm: float | None = None,
        deadline: float | None = None,
        reask: bool = False,
        seed: int | None = None,
        cache: VerdictCache | None = None,
        replay: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.timeout = timeout
        self.retries = retries
        self.query_retries = query_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.rpm = rpm
        self.deadline = deadline
        self.reask = reask
        self.cache = cache
        self.replay = replay
        self.usage: dict[str, usage.Meter] = {}
        """LLM tokens per metric, and the app's under ``"query"``."""
        self.saved: dict[str, usage.Meter] = {}
        """Tokens the verdict cache saved per metric (what its hits cost when judged)."""
        self.judge_models: dict[str, str | None] = {}
        """The model each metric's judge is configured with (for prices)."""
        self.notices: list[str] = []
        self.counts = {"app_calls": 0, "judge_calls": 0, "retries": 0}
        """Attempts so far: calls of the app, of the judges, and how many were retries."""
        self._policy = CallPolicy(self, random.Random(seed))
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = LoopThread(self.notices, cache.flush_due if cache is not None else None)
        self._thread.watch(engines.call_engine.__code__, engines.blocking_engine)
        self._thread.watch(Pipeline.run_one.__code__, blocking_judge)
        self._executor = DaemonThreads()
        self._order = itertools.count()
        self._closed = False
        self._stopped: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pipeline = Pipeline(self, self._policy, self._executor, self._tasks)
        self._starter = Starter(self._pipeline, workers, lambda: self._stopped is not None)
        self._warned: set[object] = set()

    # -- the loop thread -----------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runner's event loop, started on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this pytest-rageval Runner is closed")
            if self._loop is None:
                self._loop = self._thread.start(self._on_loop)
            return self._loop

    def _on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Set up on the loop thread, before the first question."""
        self._policy.start(self.workers, self.rpm)
        if self.deadline is not None:
            loop.call_later(self.deadline, self._stop_now, "deadline")

    @property
    def peak_concurrency(self) -> int:
        """The most LLM-bound tasks that were in flight at once so far."""
        throttle = self._policy.throttle
        return throttle.peak if throttle is not None else 0

    @property
    def closed(self) -> bool:
        """True once closed, or before its loop has started."""
        return self._closed or self._loop is None

    @property
    def stopped(self) -> str | None:
        """Why the run was stopped ("deadline", "interrupted"...), or None."""
        return self._stopped

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the runner's loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self.loop)

    def stop(self, reason: str, *, wait: bool = True) -> None:
        """Stop every question now: what has finished is kept, the rest is recorded as
        "not evaluated: <reason>" and its future completes at once. Thread-safe; with
        ``wait=False`` also safe in a signal handler (it only schedules the stop)."""
        with self._lock:
            loop = self._loop
        if loop is None or self._stopped is not None:
            self._stopped = self._stopped or reason
            return
        if not wait:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stop_now, reason)
            return
        done = concurrent.futures.Future[None]()

        def stop_here() -> None:
            self._stop_now(reason)
            done.set_result(None)

        try:
            loop.call_soon_threadsafe(stop_here)
            done.result(timeout=5)
        except (RuntimeError, concurrent.futures.TimeoutError):
            self._stopped = self._stopped or reason

    def _stop_now(self, reason: str) -> None:
        if self._stopped is None:
            self._stopped = reason
        for task in list(self._tasks):
            task.cancel()
        self._starter.start(self._loop)  # each finishes at once, "not evaluated: <reason>"

    def close(self) -> None:
        """Cancel what is still running and stop the loop thread. Safe to call twice."""
        with self._lock:
            loop, self._loop, self._closed = self._loop, None, True
        if loop is None:
            return
        self._thread.close(self._starter.drain, lambda: self._executor.shutdown(wait=False))

    # -- questions -----------------------------------------------------------------------

    def submit_question(
        self,
        query_engine: Any,
        question: Question,
        evaluators: Mapping[str, Any],
        eval_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> concurrent.futures.Future[QuestionResult]:
        """Start one question now: query, then its evaluations, on the shared pool.

        ``eval_kwargs`` maps an evaluator name to extra keyword arguments for it; by
        default each evaluator gets the question's ``reference`` and reference contexts.
        """
        order = next(self._order)
        self._prepare_judges(evaluators)
        return self.submit(
            self._pipeline.run_question(order, query_engine, question, evaluators, eval_kwargs)
        )

    def submit_questions(
        self,
        query_engine: Any,
        questions: Sequence[tuple[K, Question]],
        evaluators: Mapping[str, Any],
        on_done: Callable[[K, QuestionResult | BaseException | None], None],
        eval_kwargs: Sequence[Mapping[str, Mapping[str, Any]]] | None = None,
        repeat: int = 1,
        answers: Sequence[Answered] | None = None,
        wanted: Callable[[K], bool] | None = None,
    ) -> None:
        """Queue many questions with one hop to the loop (a set of 10,000 would otherwise
        cost the caller 10,000 cross-thread calls and futures). ``on_done(key, result)``
        runs on the loop thread for each: its :class:`QuestionResult`, or the exception
        that escaped it, or None when it was cancelled.

        Questions start in submission order, a few more than the pool holds at a time
        (tasks waiting by the thousand for a slot cost the loop more than their work).
        ``eval_kwargs``, one per question, as for :meth:`submit_question`; ``repeat``:
        how many times each evaluator judges each answer (votes); ``answers``, one per
        question, are judged instead of asking ``query_engine``. ``wanted(key)`` is asked
        as each question's turn comes: when False, it is not asked at all, and
        ``on_done(key, None)`` says so (a sequential set already decided)."""
        self._prepare_judges(evaluators)
        extra = eval_kwargs if eval_kwargs is not None else [None] * len(questions)
        engines = answers if answers is not None else [query_engine] * len(questions)
        queued = [
            Queued(
                next(self._order),
                engine,
                question,
                evaluators,
                kwargs,
                repeat,
                _delivery(on_done, key),
                functools.partial(wanted, key) if wanted is not None else None,
            )
            for (key, question), kwargs, engine in zip(questions, extra, engines, strict=True)
        ]
        loop = self.loop
        loop.call_soon_threadsafe(self._starter.push, loop, queued)

    def evaluate(
        self,
        query_engine: Any,
        questions: Sequence[Question | str],
        evaluators: Mapping[str, Any],
    ) -> list[QuestionResult]:
        """Evaluate many questions and wait for all of them (input order)."""
        from pytest_rageval.questions import as_question

        futures = [
            self.submit_question(query_engine, as_question(q), evaluators) for q in questions
        ]
        return [future.result() for future in futures]

    def _prepare_judges(self, evaluators: Mapping[str, Any]) -> None:
        """Before questions go to the loop: pay one-time costs here, not on the loop, and
        warn once per judge LLM that retries on its own (its attempts multiply ours)."""
        judges.warm_up(evaluators)
        self.notices.extend(_retrying_on_their_own(evaluators, self._warned))


def _retrying_on_their_own(evaluators: Mapping[str, Any], warned: set[object]) -> list[str]:
    """A notice for each judge LLM that retries on its own and is not in ``warned`` (the
    ids of those warned of already, which this adds to)."""
    notices = []
    for name, evaluator in evaluators.items():
        llm = getattr(evaluator, "_llm", None)
        own = getattr(llm, "max_retries", 0)
        if not isinstance(own, int) or own <= 0 or id(llm) in warned:
            continue
        warned.add(id(llm))
        notices.append(
            f"the judge LLM of evaluator {name!r} ({type(llm).__name__}) retries on its "
            f"own (max_retries={own}), so each of the runner's attempts may be {own + 1} "
            f"requests; build it with max_retries=0 and let --rag-retries decide"
        )
    return notices


def _delivery(
    on_done: Callable[[K, QuestionResult | BaseException | None], None], key: K
) -> Callable[[QuestionResult | BaseException | None], None]:
    return functools.partial(on_done, key)


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable
