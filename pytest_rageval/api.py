"""The Python API: ``load_questions`` for parametrize, ``BatchRunner`` for use outside pytest."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from pytest_rageval import judges
from pytest_rageval.questions import Question, load_file
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner import Answered, Runner


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
    """A drop-in for llama-index's ``BatchEvalRunner``: the same ``evaluate_queries``,
    ``evaluate_responses`` and ``evaluate_response_strs`` (and their ``aevaluate_*``
    twins), with the same signatures, keyword lists and result shape (``{name:
    [EvaluationResult, ...]}`` in input order). Pipelined (each query's evaluations start
    as soon as it is answered), on one long-lived event loop, and failure-isolated: an
    exception becomes that query's ``EvaluationResult(invalid_result=True,
    invalid_reason=...)`` instead of losing the whole batch. ``retries`` applies to
    evaluations; the query engine is asked once unless ``query_retries`` says otherwise
    (its own retries are its own). ``show_progress`` draws a bar of the queries judged.
    The README lists what still differs from ``BatchEvalRunner``.
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
        self.show_progress = show_progress
        self.semaphore = asyncio.Semaphore(workers)
        """``BatchEvalRunner``'s attribute, for code that reads it. It limits nothing: the
        runner's own ``workers`` slots schedule the queries and evaluations."""
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
        return self._wait(self._queries(query_engine, queries, eval_kwargs_lists))

    async def aevaluate_queries(
        self, query_engine: Any, queries: Sequence[str] | None = None, **eval_kwargs_lists: Any
    ) -> dict[str, list[Any]]:
        """Async twin of :meth:`evaluate_queries`; the work runs on the runner's own loop."""
        return await self._await(self._queries(query_engine, queries, eval_kwargs_lists))

    def evaluate_responses(
        self,
        queries: Sequence[str] | None = None,
        responses: Sequence[Any] | None = None,
        **eval_kwargs_lists: Any,
    ) -> dict[str, list[Any]]:
        """Evaluate llama-index ``Response`` objects (their text and source nodes) without
        asking a query engine; blocks until all are done."""
        return self._wait(self._responses(queries, responses, eval_kwargs_lists))

    async def aevaluate_responses(
        self,
        queries: Sequence[str] | None = None,
        responses: Sequence[Any] | None = None,
        **eval_kwargs_lists: Any,
    ) -> dict[str, list[Any]]:
        """Async twin of :meth:`evaluate_responses`."""
        return await self._await(self._responses(queries, responses, eval_kwargs_lists))

    def evaluate_response_strs(
        self,
        queries: Sequence[str] | None = None,
        response_strs: Sequence[str] | None = None,
        contexts_list: Sequence[Sequence[str]] | None = None,
        **eval_kwargs_lists: Any,
    ) -> dict[str, list[Any]]:
        """Evaluate answers and contexts given as strings; blocks until all are done."""
        return self._wait(self._strs(queries, response_strs, contexts_list, eval_kwargs_lists))

    async def aevaluate_response_strs(
        self,
        queries: Sequence[str] | None = None,
        response_strs: Sequence[str] | None = None,
        contexts_list: Sequence[Sequence[str]] | None = None,
        **eval_kwargs_lists: Any,
    ) -> dict[str, list[Any]]:
        """Async twin of :meth:`evaluate_response_strs`."""
        batch = self._strs(queries, response_strs, contexts_list, eval_kwargs_lists)
        return await self._await(batch)

    def _queries(
        self, query_engine: Any, queries: Sequence[str] | None, eval_kwargs_lists: Mapping[str, Any]
    ) -> _Batch:
        if queries is None:
            raise ValueError("`queries` must be provided")
        questions = [Question(query=query) for query in queries]
        return self._submit(query_engine, questions, None, eval_kwargs_lists, {})

    def _responses(
        self,
        queries: Sequence[str] | None,
        responses: Sequence[Any] | None,
        eval_kwargs_lists: Mapping[str, Any],
    ) -> _Batch:
        count = _same_length(queries=queries, responses=responses)
        answers, missing = [], {}
        for index, response in enumerate(responses or [None] * count):
            # what llama-index's BaseEvaluator.aevaluate_response takes from a Response
            if response is None:
                answers.append(Answered(None, None))
                missing[index] = f"responses[{index}]" if responses is not None else "responses"
            elif hasattr(response, "response") and hasattr(response, "source_nodes"):
                contexts = [node.get_content() for node in response.source_nodes]
                answers.append(Answered(response.response, contexts))
            else:
                raise TypeError(
                    f"responses[{index}] must be a llama-index Response or None, "
                    f"got {type(response).__name__}"
                )
        return self._submit(None, _given(queries, count), answers, eval_kwargs_lists, missing)

    def _strs(
        self,
        queries: Sequence[str] | None,
        response_strs: Sequence[str] | None,
        contexts_list: Sequence[Sequence[str]] | None,
        eval_kwargs_lists: Mapping[str, Any],
    ) -> _Batch:
        count = _same_length(
            queries=queries, response_strs=response_strs, contexts_list=contexts_list
        )
        answers, missing = [], {}
        texts: Sequence[str | None] = response_strs if response_strs is not None else [None] * count
        given: Sequence[Sequence[str] | None] = (
            contexts_list if contexts_list is not None else [None] * count
        )
        for index, (text, contexts) in enumerate(zip(texts, given, strict=True)):
            if contexts is None:
                missing[index] = (
                    f"contexts_list[{index}]" if contexts_list is not None else "contexts_list"
                )
            elif isinstance(contexts, str) or not isinstance(contexts, Sequence):
                raise TypeError(
                    f"contexts_list[{index}] must be a list of context strings, "
                    f"got {type(contexts).__name__}"
                )
            answers.append(Answered(text, list(contexts) if contexts is not None else None))
        return self._submit(None, _given(queries, count), answers, eval_kwargs_lists, missing)

    def _submit(
        self,
        query_engine: Any,
        questions: list[Question],
        answers: list[Answered] | None,
        eval_kwargs_lists: Mapping[str, Any],
        missing: dict[int, str],
    ) -> _Batch:
        per_question = _split_kwargs(eval_kwargs_lists, list(self.evaluators), len(questions))
        futures = [concurrent.futures.Future[QuestionResult]() for _ in questions]
        bar = _progress_bar(len(questions)) if self.show_progress else None
        self.runner.submit_questions(
            query_engine,
            list(enumerate(questions)),
            self.evaluators,
            functools.partial(_settle, futures, bar),
            eval_kwargs=per_question,
            answers=answers,
        )
        return _Batch(futures, bar, missing)

    def _wait(self, batch: _Batch) -> dict[str, list[Any]]:
        try:
            results = [future.result() for future in batch.futures]
        finally:
            if batch.bar is not None:
                batch.bar.close()
        return self._collect(results, batch.missing)

    async def _await(self, batch: _Batch) -> dict[str, list[Any]]:
        try:
            results = await asyncio.gather(*(asyncio.wrap_future(f) for f in batch.futures))
        finally:
            if batch.bar is not None:
                batch.bar.close()
        return self._collect(list(results), batch.missing)

    def _collect(
        self, results: list[QuestionResult], missing: Mapping[int, str]
    ) -> dict[str, list[Any]]:
        from llama_index.core.evaluation import EvaluationResult

        collected: dict[str, list[Any]] = {name: [] for name in self.evaluators}
        for index, result in enumerate(results):
            for name, evaluator in self.evaluators.items():
                evaluation = result.evaluations.get(name)
                if evaluation is None:
                    evaluation = EvaluationResult(
                        query=result.question.query,
                        response=result.response,
                        contexts=result.contexts,
                        invalid_result=True,
                        invalid_reason=result.errors.get(name) or result.error,
                    )
                elif index in missing:
                    evaluation = _no_contexts(evaluation, evaluator, missing[index])
                collected[name].append(evaluation)
        return collected


@dataclass(frozen=True, slots=True)
class _Batch:
    """A submitted batch: one future per query, in input order."""

    futures: list[concurrent.futures.Future[QuestionResult]]
    bar: Any
    """The progress bar (tqdm), or None."""
    missing: dict[int, str]
    """The argument that left each query without contexts (``contexts_list[2]``)."""


def _progress_bar(total: int) -> Any:
    from tqdm import tqdm

    # asked for, so drawn also when stderr is not a terminal (as llama-index's)
    return tqdm(total=total, unit="query", disable=False)


def _settle(
    futures: list[concurrent.futures.Future[QuestionResult]],
    bar: Any,
    index: int,
    outcome: QuestionResult | BaseException | None,
) -> None:
    if bar is not None:
        bar.update()  # before the future: the caller closes the bar once all are done
    future = futures[index]
    if outcome is None:
        future.cancel()
        future.set_running_or_notify_cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _given(queries: Sequence[str] | None, count: int) -> list[Question]:
    """Questions for answers given in advance; a query not given is None, as llama-index
    passes it on to the evaluators (faithfulness needs none)."""
    texts: Sequence[str | None] = queries if queries is not None else [None] * count
    return [Question(query=cast(str, text), id=str(index)) for index, text in enumerate(texts)]


def _same_length(**inputs: Sequence[Any] | None) -> int:
    """How many queries the inputs given describe (``BatchEvalRunner``'s rule: at least
    one given, all of the same length)."""
    given = {name: value for name, value in inputs.items() if value is not None}
    if not given:
        raise ValueError(f"give at least one of {_words(list(inputs))}")
    for name, value in given.items():
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
    lengths = [len(value) for value in given.values()]
    if len(set(lengths)) > 1:
        raise ValueError(
            f"{_words(list(given))} must have the same length "
            f"(got {_words([str(n) for n in lengths])})"
        )
    return lengths[0]


def _words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _no_contexts(evaluation: Any, evaluator: Any, where: str) -> Any:
    """The judges' no-contexts verdict, in the words of the argument that had none (theirs
    is about a query engine that returned a plain string)."""
    metric = judges._metric_name(evaluator)
    if evaluation.invalid_reason != judges.NO_CONTEXTS.format(metric=metric):
        return evaluation
    reason = f"no contexts to judge {metric} against ({where} is None)"
    return evaluation.model_copy(update={"invalid_reason": reason})


def _split_kwargs(
    eval_kwargs_lists: Mapping[str, Any], names: list[str], count: int
) -> list[dict[str, dict[str, Any]]]:
    """BatchEvalRunner's two forms, per question: ``reference=[...]`` for every evaluator,
    or ``{evaluator: {kwarg: [...]}}`` for some; both in one call apply, the second where
    both name a keyword. Values past the last query are ignored, as llama-index ignores
    them."""
    per_question: list[dict[str, dict[str, Any]]] = [{n: {} for n in names} for _ in range(count)]
    by_form = sorted(eval_kwargs_lists.items(), key=lambda item: isinstance(item[1], Mapping))
    for key, value in by_form:
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
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ValueError(
            f"{name} must be a list with one value per query, got {type(values).__name__}"
        )
    if len(values) < count:
        raise ValueError(
            f"{name} has {len(values)} value{'s' * (len(values) != 1)} for {count} "
            f"quer{'y' if count == 1 else 'ies'}: give one value per query"
        )
