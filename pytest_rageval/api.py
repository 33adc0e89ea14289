"""The Python API: ``load_questions`` for parametrize, ``BatchRunner`` for use outside pytest."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_rageval.questions import Question, load_file
from pytest_rageval.runner import QuestionResult, Runner


def load_questions(path: str | Path) -> list[Question]:
    """The questions of any supported file, ready for
    ``@pytest.mark.parametrize("rag_question", load_questions("rag_set.yaml"))``.

    A relative path is resolved against the folder of the file that calls this, so
    ``pytest`` works from any directory. The file's ``thresholds`` apply to the test's
    set where no marker names the metric. Test ids are the question ids.
    """
    __tracebackhide__ = True
    resolved = Path(path)
    frame = inspect.currentframe()
    caller = frame.f_back if frame is not None else None
    filename = caller.f_globals.get("__file__") if caller is not None else None
    if not resolved.is_absolute():
        base = Path(filename).parent if filename else Path.cwd()
        resolved = base / resolved
    questions = load_file(resolved, display=str(path)).questions
    if filename and caller is not None and "pytest" in sys.modules:
        from pytest_rageval.collect import loaded

        loaded(resolved, filename, caller.f_lineno)
    return questions


class BatchRunner:
    """A drop-in for llama-index's ``BatchEvalRunner``: same ``evaluate_queries`` /
    ``aevaluate_queries`` signature and result shape (``{name: [EvaluationResult, ...]}``
    in input order), but pipelined (each query's evaluations start as soon as it is
    answered), on one long-lived event loop, and failure-isolated: an exception becomes
    that query's ``EvaluationResult(invalid_result=True, invalid_reason=...)`` instead of
    losing the whole batch. ``retries`` applies to evaluations; the query engine is asked
    once unless ``query_retries`` says otherwise (its own retries are its own).
    """

    def __init__(
        self,
        evaluators: Mapping[str, Any],
        workers: int = 8,
        show_progress: bool = False,
        *,
        timeout: float = 120.0,
        retries: int = 3,
        query_retries: int = 0,
        runner: Runner | None = None,
    ) -> None:
        self.evaluators = dict(evaluators)
        self.workers = workers
        self._own_runner = runner is None
        self.runner = runner or Runner(
            workers, timeout=timeout, retries=retries, query_retries=query_retries
        )

    def close(self) -> None:
        """Stop the runner's loop thread if this BatchRunner started it."""
        if self._own_runner:
            self.runner.close()

    def __enter__(self) -> BatchRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def evaluate_queries(
        self, query_engine: Any, queries: Sequence[str] | None = None, **eval_kwargs_lists: Any
    ) -> dict[str, list[Any]]:
        """Query and evaluate every query; blocks until all are done."""
        futures = self._submit(query_engine, queries, eval_kwargs_lists)
        return self._collect([future.result() for future in futures])

    async def aevaluate_queries(
        self, query_engine: Any, queries: Sequence[str] | None = None, **eval_kwargs_lists: Any
    ) -> dict[str, list[Any]]:
        """Async twin of :meth:`evaluate_queries`; the work runs on the runner's own loop."""
        futures = self._submit(query_engine, queries, eval_kwargs_lists)
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        return self._collect(list(results))

    def _submit(
        self, query_engine: Any, queries: Sequence[str] | None, eval_kwargs_lists: Mapping[str, Any]
    ) -> list[Any]:
        if queries is None:
            raise ValueError("`queries` must be provided")
        per_question = _split_kwargs(eval_kwargs_lists, list(self.evaluators), len(queries))
        futures = [concurrent.futures.Future[QuestionResult]() for _ in queries]
        self.runner.submit_questions(
            query_engine,
            [(n, Question(query=query)) for n, query in enumerate(queries)],
            self.evaluators,
            functools.partial(_settle, futures),
            eval_kwargs=per_question,
        )
        return futures

    def _collect(self, results: list[QuestionResult]) -> dict[str, list[Any]]:
        from llama_index.core.evaluation import EvaluationResult

        collected: dict[str, list[Any]] = {name: [] for name in self.evaluators}
        for result in results:
            for name in self.evaluators:
                evaluation = result.evaluations.get(name)
                if evaluation is None:
                    evaluation = EvaluationResult(
                        query=result.question.query,
                        response=result.response,
                        contexts=result.contexts,
                        invalid_result=True,
                        invalid_reason=result.errors.get(name) or result.error,
                    )
                collected[name].append(evaluation)
        return collected


def _settle(
    futures: list[concurrent.futures.Future[QuestionResult]],
    index: int,
    outcome: QuestionResult | BaseException | None,
) -> None:
    future = futures[index]
    if outcome is None:
        future.cancel()
        future.set_running_or_notify_cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _split_kwargs(
    eval_kwargs_lists: Mapping[str, Any], names: list[str], count: int
) -> list[dict[str, dict[str, Any]]]:
    """BatchEvalRunner's two forms, per question: ``reference=[...]`` for every evaluator,
    or ``{evaluator: {kwarg: [...]}}`` for some."""
    per_question: list[dict[str, dict[str, Any]]] = [{n: {} for n in names} for _ in range(count)]
    for key, value in eval_kwargs_lists.items():
        if isinstance(value, Mapping):
            for kwarg, values in value.items():
                _check_length(f"{key}.{kwarg}", values, count)
                for index in range(count):
                    per_question[index].setdefault(key, {})[kwarg] = values[index]
        else:
            _check_length(key, value, count)
            for index in range(count):
                for name in names:
                    per_question[index][name][key] = value[index]
    return per_question


def _check_length(name: str, values: Any, count: int) -> None:
    if not isinstance(values, Sequence) or isinstance(values, str) or len(values) != count:
        raise ValueError(f"{name} must be a list with one value per query ({count})")
