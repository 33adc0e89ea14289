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
import heapq
import inspect
import itertools
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pytest_rageval import judges
from pytest_rageval.questions import Question

T = TypeVar("T")

TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "RateLimitError",
        "InternalServerError",
        "ServiceUnavailableError",
        "ConnectError",
        "ReadTimeout",
        "ConnectTimeout",
        "RemoteProtocolError",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Errors worth another attempt: time-outs, dropped connections, 429s and 5xx."""
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    return any(cls.__name__ in TRANSIENT_NAMES for cls in type(exc).__mro__)


class TaskTimeout(TimeoutError):
    """A query or evaluation that did not finish within the runner's per-task timeout."""


@dataclass
class QuestionResult:
    """What the runner learned about one question. Plain data, safe to keep after the run.

    ``evaluations`` holds the llama-index ``EvaluationResult`` of every evaluator that
    returned one; ``errors`` maps ``"query"`` or an evaluator name to ``"Type: message"``.
    """

    question: Question
    response: str | None = None
    contexts: list[str] = field(default_factory=list)
    evaluations: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    applicable: tuple[str, ...] = ()
    """The metrics that apply to this question, in evaluator order."""
    skipped: tuple[str, ...] = ()
    """Metrics that do not apply to this question (e.g. correctness without a reference)."""

    @property
    def error(self) -> str | None:
        """The first error, with where it happened, or None."""
        for where, message in self.errors.items():
            label = "query engine" if where == "query" else f"evaluator {where!r}"
            return f"{label} raised {message}"
        return None


class PrioritySemaphore:
    """An asyncio semaphore that wakes the waiter with the lowest priority key first."""

    def __init__(self, value: int) -> None:
        self._value = value
        self._waiters: list[tuple[tuple[int, int, int], asyncio.Future[None]]] = []
        self._tie = itertools.count()
        self.in_use = 0
        self.peak = 0

    async def acquire(self, priority: tuple[int, int]) -> None:
        if self._value > 0 and not self._waiters:
            self._value -= 1
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, ((*priority, next(self._tie)), future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self.release()  # the slot was handed over just as we were cancelled
                else:
                    self._waiters = [w for w in self._waiters if w[1] is not future]
                    heapq.heapify(self._waiters)
                raise
        self.in_use += 1
        self.peak = max(self.peak, self.in_use)

    def release(self) -> None:
        self.in_use -= 1
        while self._waiters:
            _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes straight to this waiter
                return
        self._value += 1


class Runner:
    """One event loop thread and one bounded pool of LLM-bound tasks for the whole process.

    ``workers`` is the most queries and evaluations in flight at once; ``timeout`` bounds
    each attempt of one task; ``retries`` is how many more attempts a transient error gets.
    """

    def __init__(
        self,
        workers: int = 8,
        *,
        timeout: float = 120.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._semaphore: PrioritySemaphore | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._order = itertools.count()
        self._closed = False

    # -- the loop thread -----------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The runner's event loop, started on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this pytest-rageval Runner is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    self._semaphore = PrioritySemaphore(self.workers)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.workers, thread_name_prefix="rageval-sync"
                )
                self._thread = threading.Thread(target=serve, name="rageval-loop", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    @property
    def peak_concurrency(self) -> int:
        """The most LLM-bound tasks that were in flight at once so far."""
        return self._semaphore.peak if self._semaphore is not None else 0

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the runner's loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self.loop)

    def close(self) -> None:
        """Cancel what is still running and stop the loop thread. Safe to call twice."""
        with self._lock:
            loop, self._loop, self._closed = self._loop, None, True
        if loop is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # HTTP clients (openai's httpx pools) keep connections open on this loop; nobody
            # can close them once it is gone, and their ResourceWarnings fail `-W error` runs
            transports = getattr(asyncio.get_running_loop(), "_transports", {})
            for transport in list(transports.values()):
                if transport is not None and not transport.is_closing():
                    transport.close()
            for _ in range(3):  # connection_lost callbacks close the sockets
                await asyncio.sleep(0)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if not loop.is_running():
            loop.close()

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
        return self.submit(
            self._run_question(order, query_engine, question, evaluators, eval_kwargs)
        )

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

    async def _run_question(
        self,
        order: int,
        query_engine: Any,
        question: Question,
        evaluators: Mapping[str, Any],
        eval_kwargs: Mapping[str, Mapping[str, Any]] | None,
    ) -> QuestionResult:
        result = QuestionResult(question)
        # explicit eval_kwargs (BatchRunner) mean the caller decides what applies, as in
        # llama-index's BatchEvalRunner; otherwise the question's fields decide
        applicable = {
            name: evaluator
            for name, evaluator in evaluators.items()
            if eval_kwargs is not None or judges.applies(evaluator, question)
        }
        result.applicable = tuple(applicable)
        result.skipped = tuple(name for name in evaluators if name not in applicable)
        try:
            response = await self._attempts(
                (order - self.workers, 0),
                functools.partial(self._call_engine, query_engine, question.query),
            )
            result.response, result.contexts = judges.response_parts(response)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result.errors["query"] = describe(exc)
            return result

        async def run_one(name: str, evaluator: Any) -> None:
            kwargs = (
                dict(eval_kwargs.get(name, {}))
                if eval_kwargs is not None
                else judges.reference_kwargs(question)
            )
            try:
                # prepared before taking a slot: the slot is for waiting on the LLM
                call = judges.prepare(
                    evaluator,
                    query=question.query,
                    response=result.response,
                    contexts=result.contexts,
                    **kwargs,
                )
                result.evaluations[name] = await self._attempts((order, 1), call)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result.errors[name] = describe(exc)

        await asyncio.gather(*(run_one(name, ev) for name, ev in applicable.items()))
        return result

    async def _attempts(self, priority: tuple[int, int], make: Callable[[], Awaitable[T]]) -> T:
        """One task with a slot, a time-out per attempt, and retries of transient errors."""
        semaphore = self._semaphore
        assert semaphore is not None
        for attempt in itertools.count():
            await semaphore.acquire(priority)
            try:
                return await _within(self.timeout, make)
            except asyncio.TimeoutError:
                error: Exception = TaskTimeout(f"no answer within {self.timeout:g} s")
            except Exception as exc:
                if not is_transient(exc):
                    raise
                error = exc
            finally:
                semaphore.release()
            if attempt >= self.retries:
                raise error
            await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_engine(self, engine: Any, query: str) -> Any:
        """Ask a llama-index query engine or any callable, sync or async."""
        if hasattr(engine, "aquery"):
            return await engine.aquery(query)
        if hasattr(engine, "query"):
            target = engine.query
        elif callable(engine):
            target = engine
        else:
            raise TypeError(
                f"the query engine must be a llama-index query engine or a callable taking "
                f"the query string, got {type(engine).__name__}"
            )
        if inspect.iscoroutinefunction(target):
            return await target(query)
        answer = await asyncio.get_running_loop().run_in_executor(self._executor, target, query)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer


def describe(exc: BaseException) -> str:
    """``"Type: message"`` for reports."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _as_coroutine(awaitable: Awaitable[T]) -> T:
    return await awaitable


if sys.version_info >= (3, 11):

    async def _within(seconds: float, make: Callable[[], Awaitable[T]]) -> T:
        """``await make()`` with a time limit, in the calling task: ``wait_for`` would start
        a task per attempt, and each hop through the loop queues behind other work."""
        async with asyncio.timeout(seconds):
            return await make()

else:  # pragma: no cover

    async def _within(seconds: float, make: Callable[[], Awaitable[T]]) -> T:
        return await asyncio.wait_for(make(), seconds)
