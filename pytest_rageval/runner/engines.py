"""Calling the app (a llama-index query engine or any callable, sync or async) and reading
what it returned; reading what a judge returned."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

from pytest_rageval import judges
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner.loop import BLOCKED_AFTER
from pytest_rageval.runner.threads import DaemonThreads
from pytest_rageval.text import well_formed


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer given in advance, in place of the query engine: the question is only
    judged (``BatchRunner.evaluate_responses`` / ``evaluate_response_strs``). None where
    the caller gave nothing, as llama-index's ``BatchEvalRunner`` passes it on."""

    response: str | None
    contexts: list[str] | None


async def call_engine(threads: DaemonThreads, engine: Any, query: str) -> Any:
    """Ask a llama-index query engine or any callable, sync or async (sync ones in
    ``threads``)."""
    if hasattr(engine, "aquery") and not _async_only_in_name(engine):
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
    answer = await threads.call(asyncio.get_running_loop(), target, query)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def blocking_engine(frame: FrameType) -> tuple[object, str]:
    """The watchdog's words for an app blocking the loop (``frame`` runs :func:`call_engine`)."""
    name = type(frame.f_locals.get("engine")).__name__
    return (
        "engine",
        f"the query engine ({name}) blocked the event loop for over "
        f"{BLOCKED_AFTER:g} s: its async aquery does blocking work, so every "
        "question waits behind it and --rag-timeout cannot stop it. Make aquery "
        "truly async, or return a sync callable from rag_query_engine "
        "(e.g. engine.query): sync calls run in threads",
    )


def read_answer(result: QuestionResult, response: Any) -> None:
    """The app's answer, contexts and sources into ``result``, as valid Unicode: the app's
    text enters here, and half an emoji in it becomes U+FFFD, once."""
    answer, contexts = judges.response_parts(response)
    result.response = well_formed(answer)
    result.contexts = None if contexts is None else list(map(well_formed, contexts))
    sources = judges.response_sources(response)
    result.sources = None if sources is None else [list(map(well_formed, ids)) for ids in sources]


def unreadable(evaluation: Any) -> bool:
    """A judge answered, but its answer could not be read (worth asking once more)."""
    return bool(getattr(evaluation, "invalid_result", False)) and bool(
        getattr(evaluation, "feedback", None)
    )


def well_formed_evaluation(evaluation: Any) -> Any:
    """The judge's answer with its text as valid Unicode (``text.well_formed``): the
    judge's feedback enters here, before the cache and the reports read it."""
    fixed = {}
    for name in ("feedback", "invalid_reason"):
        value = getattr(evaluation, name, None)
        if isinstance(value, str) and (text := well_formed(value)) is not value:
            fixed[name] = text
    if not fixed:
        return evaluation
    if hasattr(evaluation, "model_copy"):  # llama-index's EvaluationResult (pydantic)
        return evaluation.model_copy(update=fixed)
    with contextlib.suppress(AttributeError):  # a read-only result keeps its text
        for name, value in fixed.items():
            setattr(evaluation, name, value)
    return evaluation


def _async_only_in_name(engine: Any) -> bool:
    """llama-index's ``CustomQueryEngine`` that implements only ``custom_query``: its
    ``aquery`` calls the sync method on the event loop and would block every question."""
    module = sys.modules.get("llama_index.core.query_engine.custom")
    base = getattr(module, "CustomQueryEngine", None)
    return (
        base is not None
        and isinstance(engine, base)
        and getattr(type(engine), "acustom_query", None) is base.acustom_query
    )
