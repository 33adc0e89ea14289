"""One question's pipeline: the answer (from the app, the recording or the caller), then
each evaluator's votes (from the verdict cache or the judge), metered, asked once more
when an answer cannot be read, and marked "not evaluated" when the run stops."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from types import FrameType
from typing import Any, Protocol

from pytest_rageval import judges, usage
from pytest_rageval.cache import VerdictCache, describe_evaluator, recording_key, verdict_key
from pytest_rageval.cache import from_json as cached_evaluation
from pytest_rageval.cache import to_json as cacheable
from pytest_rageval.questions import Question
from pytest_rageval.redaction import redact_all
from pytest_rageval.results import QuestionResult, describe
from pytest_rageval.runner import engines
from pytest_rageval.runner.loop import BLOCKED_AFTER
from pytest_rageval.runner.policy import CallPolicy
from pytest_rageval.runner.threads import DaemonThreads
from pytest_rageval.sequential import votes_to_cast
from pytest_rageval.usage import Meter
from pytest_rageval.verdicts import ballot


class Host(Protocol):
    """The runner's settings and tallies a question reads and adds to."""

    workers: int
    retries: int
    query_retries: int
    reask: bool
    replay: bool
    cache: VerdictCache | None
    usage: dict[str, Meter]
    saved: dict[str, Meter]
    judge_models: dict[str, str | None]

    @property
    def stopped(self) -> str | None: ...


class Pipeline:
    """Runs questions on the runner's loop: ``host`` holds the settings and tallies,
    ``policy`` makes each call, ``threads`` runs sync apps, ``tasks`` holds the running
    questions (the runner cancels them when it stops)."""

    def __init__(
        self,
        host: Host,
        policy: CallPolicy,
        threads: DaemonThreads,
        tasks: set[asyncio.Task[Any]],
    ) -> None:
        self.host = host
        self.policy = policy
        self.threads = threads
        self.tasks = tasks

    async def run_question(
        self,
        order: int,
        query_engine: Any,
        question: Question,
        evaluators: Mapping[str, Any],
        eval_kwargs: Mapping[str, Mapping[str, Any]] | None,
        repeat: int = 1,
    ) -> QuestionResult:
        """Ask and judge one question; what the run's stop left undone is "not evaluated"."""
        host = self.host
        result = QuestionResult(question, repeat=repeat)
        # explicit eval_kwargs (BatchRunner) mean the caller decides what applies, as in
        # llama-index's BatchEvalRunner; otherwise the question's fields decide
        applicable = {
            name: evaluator
            for name, evaluator in evaluators.items()
            if eval_kwargs is not None or judges.applies(evaluator, question)
        }
        result.applicable = tuple(applicable)
        result.skipped = tuple(name for name in evaluators if name not in applicable)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            if host.stopped is not None:
                raise asyncio.CancelledError
            await self._ask_and_judge(
                order, query_engine, question, applicable, eval_kwargs, result, repeat
            )
        except asyncio.CancelledError:
            if host.stopped is None:
                raise
            if getattr(task, "cancelling", lambda: 0)():
                task.uncancel()  # type: ignore[attr-defined,unused-ignore]
            reason = f"not evaluated: {host.stopped}"
            if result.response is None and "query" not in result.errors:
                result.errors["query"] = reason
                result.evaluated = False
            else:
                for name in applicable:
                    if name not in result.evaluations and name not in result.errors:
                        result.errors[name] = reason
                        result.evaluated = False
        finally:
            self.tasks.discard(task)
        return result

    async def _ask_and_judge(
        self,
        order: int,
        query_engine: Any,
        question: Question,
        applicable: Mapping[str, Any],
        eval_kwargs: Mapping[str, Mapping[str, Any]] | None,
        result: QuestionResult,
        repeat: int = 1,
    ) -> None:
        """The answer, then (when there is one) every applicable evaluator's votes."""
        if await self._ask(order, query_engine, question, result):
            if len(applicable) == 1:  # no task of its own for a lone evaluator
                name, evaluator = next(iter(applicable.items()))
                await self.run_one(order, question, result, eval_kwargs, repeat, name, evaluator)
            else:
                await asyncio.gather(
                    *(
                        self.run_one(order, question, result, eval_kwargs, repeat, name, evaluator)
                        for name, evaluator in applicable.items()
                    )
                )

    async def _ask(
        self, order: int, query_engine: Any, question: Question, result: QuestionResult
    ) -> bool:
        """The answer into ``result``; False (the error recorded) when there is none."""
        host = self.host
        cache = host.cache
        recording = None
        if cache is not None:
            recording = recording_key(question.source, question.id, question.query)
        try:
            recalled: tuple[str | None, list[str] | None, list[list[str]] | None] | None
            if isinstance(query_engine, engines.Answered):
                recalled = query_engine.response, query_engine.contexts, None
            elif cache and recording and host.replay:
                recalled = cache.recall(recording)
            else:
                recalled = None
            if recalled is not None:  # --rag-replay or given answers: the app is not called
                result.response, result.contexts, result.sources = recalled
            else:
                metered = usage.metering(host.usage.setdefault("query", usage.Meter()))
                try:
                    response = await self.policy.attempts(
                        (order - host.workers, 0),
                        functools.partial(
                            engines.call_engine, self.threads, query_engine, question.query
                        ),
                        host.query_retries,
                        paced=False,
                    )
                finally:
                    usage.reset(metered)
                engines.read_answer(result, response)
                if cache is not None and recording is not None:
                    cache.record(recording, result.response, result.contexts, result.sources)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result.errors["query"] = describe(exc)
            result.exceptions["query"] = exc
            return False
        return True

    async def vote(
        self,
        order: int,
        question: Question,
        result: QuestionResult,
        name: str,
        evaluator: Any,
        kwargs: dict[str, Any],
        index: int,
    ) -> Any:
        """One judgement (vote ``index``): from the cache, else from the judge."""
        cache, key = self.host.cache, None
        if cache is not None and cache.mode != "off" and getattr(evaluator, "rageval_cache", True):
            key = verdict_key(
                # asking again when an answer cannot be read can change the verdict
                cache.fingerprint(evaluator, reask=self.host.reask),
                query=question.query,
                response=result.response,
                contexts=result.contexts,
                arguments=kwargs,
                repeat=index,
            )
            hit = cache.get(name, key)
            if hit is not None:  # a hit never takes a slot
                self.host.saved.setdefault(name, usage.Meter()).add(hit.get("tokens") or {})
                return cached_evaluation(hit, question.query, result.response, result.contexts)
        # prepared before taking a slot: the slot is for waiting on the LLM
        call = judges.prepare(
            evaluator,
            query=question.query,
            response=result.response,
            contexts=result.contexts,
            **kwargs,
        )
        meter = usage.Meter()
        metered = usage.metering(meter)
        try:
            if getattr(evaluator, "rageval_local", False):
                # no slot (with a fast sync app, waiting behind its calls for one cost a
                # trip round the loop per question), and never asked again: it would
                # answer the same
                evaluation = await self.policy.local(call)
            else:
                evaluation = await self.policy.attempts(
                    (order, 1), call, self.host.retries, paced=True
                )
                if self.host.reask and engines.unreadable(evaluation):
                    evaluation = await self.policy.attempts(
                        (order, 1), call, self.host.retries, paced=True
                    )
            evaluation = engines.well_formed_evaluation(evaluation)
        finally:
            usage.reset(metered)
            self.host.usage.setdefault(name, usage.Meter()).add(meter)
        verdict = cacheable(evaluation)
        if cache is not None and key is not None and verdict is not None:
            # the judge's feedback may echo a key: the cache outlives the run
            cache.put(name, key, {**redact_all(verdict), "tokens": meter.to_json()})
        return evaluation

    async def run_one(
        self,
        order: int,
        question: Question,
        result: QuestionResult,
        eval_kwargs: Mapping[str, Mapping[str, Any]] | None,
        repeat: int,
        name: str,
        evaluator: Any,
    ) -> None:
        """Judge the answer with one evaluator (``repeat`` votes); the watchdog's judge."""
        if name not in self.host.judge_models:
            judge = describe_evaluator(evaluator)["judge"]
            self.host.judge_models[name] = judge["model"] if judge else None
        kwargs = (
            dict(eval_kwargs.get(name, {}))
            if eval_kwargs is not None
            else judges.reference_kwargs(question)
        )
        if judges.wants_sources(evaluator):
            kwargs["retrieved_sources"] = result.sources
        try:
            if repeat == 1:
                result.evaluations[name] = await self.vote(
                    order, question, result, name, evaluator, kwargs, 1
                )
                return
            # votes are cast in index order, in waves of the fewest that could decide the
            # majority, and stop once the rest cannot change it: the calls of one vote at a
            # time, concurrent. A cached vote costs nothing. An error is retried by the call
            # policy and never counts as a vote: it fails the metric
            votes: list[Any] = []
            while wave := votes_to_cast([ballot(vote) for vote in votes], repeat):
                first = len(votes) + 1
                votes += await asyncio.gather(
                    *(
                        self.vote(order, question, result, name, evaluator, kwargs, index)
                        for index in range(first, first + wave)
                    )
                )
            result.evaluations[name] = votes[0]
            result.votes[name] = votes
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result.errors[name] = describe(exc)
            result.exceptions[name] = exc


def blocking_judge(frame: FrameType) -> tuple[object, str]:
    """The watchdog's words for a judge blocking the loop (``frame`` runs
    :meth:`Pipeline.run_one`)."""
    return (
        "judge",
        f"an evaluator blocked the event loop for over {BLOCKED_AFTER:g} s: its "
        "aevaluate (or its LLM's async methods) does blocking work, so every "
        "question waits behind it; make it truly async",
    )
