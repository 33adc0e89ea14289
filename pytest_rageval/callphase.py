"""The call phase of a question's item: after the test body, wait for the question's
result, decide its verdict (waiting on its set when the set's rates decide it), record it
on the item (report record, JUnit properties) and fail the item when the gate says so,
showing the app's own exception where there is one."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from pytest_rageval.gate import MetricRate, needs_set, outcome
from pytest_rageval.keys import DEFERRED_KEY, PROBLEM_KEY, QUESTION_KEY, RECORD_KEY
from pytest_rageval.redaction import redact
from pytest_rageval.results import GaveUp, QuestionResult
from pytest_rageval.sets import SET_KEY
from pytest_rageval.text import well_formed
from pytest_rageval.verdicts import Outcome, QuestionRecord, question_record
from pytest_rageval.wording import explain

if TYPE_CHECKING:
    from pytest_rageval.sets import RagSet

Wait = Callable[..., Any]
"""Waits on the runner (``InterruptGuard.wait``: a Ctrl-C meanwhile is raised after)."""


class RagQuestionError(Exception):
    """Before Python 3.11 (no exception notes): a question whose app or judge raised,
    chained to that exception so pytest shows the app's own traceback above it."""


def fail_setup(item: pytest.Item) -> None:
    """Fail an item whose question could not be asked (no engine, a bad parameter...),
    recording it as an error when it belongs to a set."""
    __tracebackhide__ = hide_for_app_errors
    problem = item.stash[PROBLEM_KEY]
    question = item.stash.get(QUESTION_KEY, None)
    if question is not None and SET_KEY in item.stash:
        record = question_record(QuestionResult(question), {}, "error")
        record["error"] = redact(problem)
        keep(item, record)
    pytest.fail(problem, pytrace=False)


def judge(item: pytest.Item, wait: Wait, *, fail: bool) -> None:
    """The item's question's verdict, once its result is in (and, for a question that
    failed a metric, once its set's rates decide it): recorded on the item, and the
    item failed with the app's own exception or the gate's message when it fails."""
    __tracebackhide__ = hide_for_app_errors
    rset = item.stash[SET_KEY]
    if not rset.submitted:
        return
    result, metrics = wait(rset.result, item.nodeid)
    if result is None:
        skip_unsampled(item, rset)
    question = result.question
    rates: dict[str, MetricRate] | None = None
    verdict: Outcome
    newly = rset.newly(question.id, metrics)
    if needs_set(metrics, result.error, question.must_pass):
        if item.config.stash.get(DEFERRED_KEY, False):
            verdict = "judged"  # a shard: the set's rate is all its shards', merged
        else:
            verdict, rates = wait(rset.decide, metrics, newly)
    else:
        verdict = outcome(metrics, result.error, question.must_pass, None)
    record = question_record(result, metrics, verdict)
    before = rset.base.results.get(question.id) if rset.base is not None else None
    for name, metric in metrics.items():
        # pytest's JUnit writer escapes values but not names: a user's metric name
        # with half an emoji would fail the whole file
        prop = f"rag.{well_formed(name)}"
        item.user_properties.append((f"{prop}.result", metric.result))
        item.user_properties.append((f"{prop}.passing", metric.passing))
        item.user_properties.append((f"{prop}.score", metric.score))
        if before is not None and name in before:
            item.user_properties.append((f"{prop}.baseline", before[name]))
            flipped = {before[name], metric.result} == {"passing", "failing"}
            item.user_properties.append((f"{prop}.flipped", flipped))
    keep(item, record)
    if not fail or verdict not in ("failed", "error"):
        return
    message = explain(record, rates, rset.name, newly)
    cause = _first_exception(result)
    if cause is None:
        pytest.fail(message, pytrace=False)
    cause = _trimmed(cause)
    if sys.version_info >= (3, 11):
        # the app's own exception and traceback, with what it means for the gate
        if message not in getattr(cause, "__notes__", ()):
            cause.add_note(message)
        raise cause
    raise RagQuestionError(message) from cause  # pragma: no cover


def skip_unsampled(item: pytest.Item, rset: RagSet) -> NoReturn:
    """Skip a question a sequential set decided without: it was never asked. Its record
    says which metrics apply to it, so the decision can be replayed from the records."""
    keep(item, unsampled_record(rset, item.nodeid))
    raise NotSampled(rset.skipped_reason())


class NotSampled(pytest.skip.Exception):  # type: ignore[misc,name-defined]
    """A question a sequential set decided without: pytest skips it."""


def unsampled_report(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport | None:
    """The skip report of a question a sequential set never asked, made here rather than
    by pytest, which formats the exception's traceback for every skip (2 ms each, most
    of a skipped question's cost in a set of thousands): one ``-rs`` line per set, at
    its file."""
    excinfo = call.excinfo
    if excinfo is None or not isinstance(excinfo.value, NotSampled):
        return None
    # no line number: pytest's -rs folds the set's skips into one line at its file
    where: Any = (item.location[0].split("::")[0], None, f"Skipped: {excinfo.value.msg}")
    when: Any = call.when
    return pytest.TestReport(
        item.nodeid,
        item.location,
        dict.fromkeys(item.keywords, 1),
        "skipped",
        where,
        when,
        duration=call.duration,
        start=call.start,
        stop=call.stop,
        user_properties=item.user_properties,
    )


def unsampled_record(rset: RagSet, nodeid: str) -> QuestionRecord:
    """The record of a question a sequential set never asked."""
    applicable = rset.applicable.get(nodeid, ())
    result = QuestionResult(rset.members[nodeid], applicable=applicable, evaluated=False)
    record = question_record(result, {}, "skipped")
    record["applicable"] = list(applicable)
    return record


def keep(item: pytest.Item, record: QuestionRecord) -> None:
    item.stash[SET_KEY].tag(record)
    item.user_properties.append(("rag.outcome", record["outcome"]))
    item.stash[RECORD_KEY] = record


def _first_exception(result: QuestionResult) -> BaseException | None:
    """The exception behind a question's first error when it came from the user's code
    (the app or an evaluator), not from the runner giving up on a transient failure."""
    for where in result.errors:
        exc = result.exceptions.get(where)
        return None if exc is None or isinstance(exc, GaveUp) else exc
    return None


def hide_for_app_errors(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    """Our frames are hidden above the app's own exception; a ``pytest.fail`` message
    shows no frames anyway, and hiding them all would add pytest's "all hidden" note."""
    return not isinstance(excinfo.value, pytest.fail.Exception)


def _trimmed(exc: BaseException) -> BaseException:
    """``exc`` with the runner's own frames cut from the front of its traceback (and of
    its causes'), so that what pytest shows starts in the app's or the judge's code."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None and _ours(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        current.__traceback__ = tb
        current = current.__cause__ or current.__context__
    return exc


def _ours(filename: str) -> bool:
    import asyncio
    import concurrent.futures as futures

    roots = (
        os.path.dirname(__file__),
        os.path.dirname(asyncio.__file__),
        os.path.dirname(futures.__file__),
    )
    return filename.startswith(roots) or filename.endswith(("functools.py", "threading.py"))
