"""The per-run state: sets of questions, their submission, verdicts and reports."""

from __future__ import annotations

import _thread
import contextlib
import functools
import inspect
import itertools
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pytest_rageval import judges, usage
from pytest_rageval.baseline import BaselineSet
from pytest_rageval.cache import VerdictCache
from pytest_rageval.keys import (
    PROBLEM_KEY,
    QUESTION_FILE_KEY,
    QUESTION_KEY,
    RECORD_KEY,
    SET_KEY,
)
from pytest_rageval.options import Settings
from pytest_rageval.questions import DEFAULT_QUERY_ENGINE, Question, as_question
from pytest_rageval.redaction import redact, redact_in_place
from pytest_rageval.reports import html, markdown, terminal
from pytest_rageval.reports import json as json_report
from pytest_rageval.reports.summary import SetSummary, summarize
from pytest_rageval.results import GaveUp, QuestionResult, describe
from pytest_rageval.runner import Runner
from pytest_rageval.text import well_formed
from pytest_rageval.thresholds import (
    Layer,
    ThresholdError,
    check_layer,
    closest,
    merge_layers,
)
from pytest_rageval.verdicts import (
    MetricRate,
    MetricResult,
    Outcome,
    Tally,
    explain,
    metric_results,
    needs_set,
    newly_failing,
    outcome,
    question_record,
    set_rates,
)

T = TypeVar("T")

REPEAT_SECONDS = 2.0
"""A second Ctrl-C or SIGTERM this soon after the first is the same cancel."""


class RagSetupError(Exception):
    """Something the user must define or fix before questions can be evaluated."""


class RagQuestionError(Exception):
    """Before Python 3.11 (no exception notes): a question whose app or judge raised,
    chained to that exception so pytest shows the app's own traceback above it."""


@dataclass(eq=False)
class RagSet:
    """Questions gated together: one data file, or one parametrized test function."""

    name: str
    thresholds: dict[str, float]
    named: dict[str, str] = field(default_factory=dict)
    """Metric -> where a marker or the data file set its threshold (to catch typos)."""
    max_invalid: float | None = None
    max_drop: float | None = None
    confidence: float | None = None
    repeat: int = 1
    base: BaselineSet | None = None
    """What the baseline report says of this set (None: no baseline, or not in it)."""
    engine_fixture: str = DEFAULT_QUERY_ENGINE
    evaluator_names: tuple[str, ...] | None = None
    evaluator_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    members: dict[str, Question] = field(default_factory=dict)
    items: list[pytest.Item] = field(default_factory=list)
    """Its items, in run order (to tell whether it can be submitted before they run)."""
    index: int = -1
    """Its position among the run's sets, in the order their first items run."""
    submitted: bool = False
    """Whether its questions went to the runner (when its first item ran)."""
    results: dict[str, QuestionResult] = field(default_factory=dict)
    problem: str | None = None
    setup_error: str | None = None
    """Why its questions were never asked when a fixture they need raised (the items fail
    with the fixture's own traceback; this is what the summary and the report say)."""
    """Why none of the set's questions can be evaluated (e.g. no metric applies)."""
    metrics: tuple[str, ...] = ()
    applicable: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tally: Tally | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)

    def finished(self, nodeid: str, result: QuestionResult) -> None:
        """A question's result is in (called on the runner's loop thread)."""
        metrics = metric_results(result)
        with self.changed:
            self.results[nodeid] = result
            assert self.tally is not None
            self.tally.add(metrics)
            self.changed.notify_all()

    def tag(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with what reports group and gate it by: its set and the set's gate,
        and what the baseline said of it."""
        record["set"] = self.name
        record["thresholds"] = self.thresholds  # shared: one per set, not per question
        record["max_invalid"] = self.max_invalid
        record["max_drop"] = self.max_drop
        record["confidence"] = self.confidence
        record["baseline_rates"] = self.base.rates if self.base is not None else None
        record["baseline"] = self.base.results.get(record["id"]) if self.base else None
        return record

    def gate(self) -> dict[str, Any]:
        """The keywords of :class:`Tally` beside thresholds and ``max_invalid``."""
        drop_gate = self.base is not None and self.max_drop is not None
        return {
            "confidence": self.confidence,
            "baselines": self.base.rates if drop_gate and self.base is not None else None,
            "max_drop": self.max_drop if drop_gate else None,
        }

    def newly(self, question_id: str, metrics: Mapping[str, MetricResult]) -> frozenset[str]:
        """The metrics this question fails and did not fail in the baseline (for the drop
        gate; empty without one)."""
        if self.base is None or self.max_drop is None:
            return frozenset()
        return newly_failing(metrics, self.base.results.get(question_id))

    def result(self, nodeid: str) -> QuestionResult:
        """The question's result, waiting for it."""
        with self.changed:
            while nodeid not in self.results:
                self.changed.wait()
            return self.results[nodeid]

    def decide(
        self, metrics: Mapping[str, MetricResult], newly: frozenset[str] = frozenset()
    ) -> tuple[Outcome, dict[str, MetricRate]]:
        """The outcome of a question that failed a metric, as soon as the set's rates make
        it certain, with the rates it was decided on."""
        with self.changed:
            assert self.tally is not None
            while True:
                decided = self.tally.decide(metrics, newly)
                if decided is not None:
                    return decided, self.tally.rates()
                if len(self.results) >= len(self.members):
                    # every result is in (a stopped run's too): the rates are final, and
                    # so is the outcome, even where the early decision found none
                    rates = self.tally.rates()
                    return outcome(metrics, None, False, rates, newly), rates
                self.changed.wait()


class RagSession:
    """Registered as a plugin for every run; owns the runner and everything gated."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._runner: Runner | None = None
        self._started = time.monotonic()
        self._sets: list[RagSet] = []
        self._reported: set[str] = set()
        self._metrics_seen: set[str] = set()
        self.records: list[dict[str, Any]] = []
        self.complete = True
        self.stopped: str | None = None
        self.written: list[tuple[str, Path, str | None]] = []
        """Each report file: what it is, where, and why it could not be written (or None)."""
        self._session: Any = None
        self._failed_writing = False
        self._restore_signals: Callable[[], None] | None = None
        self._signalled: float | None = None
        self._raise_when_safe = False
        self.dispatches = False
        """True on the xdist controller, which runs no test but hands them out."""
        self.signal_listeners: list[Callable[[int], None]] = []
        """Called with the signal on the first Ctrl-C or SIGTERM (xdist: the workers)."""
        self._waiting = False
        self._interrupt_pending = False
        self._looping = False
        self._records_on_reports = 0
        self._worker_notices: list[str] = []
        self._clear_notices: list[str] = []
        self._shared: dict[tuple[object, object], tuple[Any, Any]] = {}
        self.cache = (
            VerdictCache(settings.cache_dir, settings.cache)  # type: ignore[arg-type]
            if settings.cache != "off"
            else None
        )
        self._worker_counts: Counter[str] = Counter()
        self._summaries: list[SetSummary] | None = None
        self._summarized = -1
        self._worker_usage: dict[str, dict[str, Any]] = {"usage": {}, "saved": {}, "models": {}}
        self._worker_cache: dict[str, Counter[str]] = {
            "hits": Counter(),
            "misses": Counter(),
            "counters": Counter(),
        }

    @property
    def runner(self) -> Runner:
        """The process's one runner, started on first use."""
        if self._runner is None:
            settings = self.settings
            deadline = None
            if settings.deadline is not None:
                deadline = max(0.0, settings.deadline - (time.monotonic() - self._started))
            self._runner = Runner(
                settings.workers,
                timeout=settings.timeout,
                retries=settings.retries,
                query_retries=settings.query_retries,
                max_backoff=settings.max_backoff,
                rpm=settings.rpm,
                deadline=deadline,
                reask=settings.reask,
                cache=self.cache,
                replay=settings.replay,
            )
        return self._runner

    def close_on_runner(self, closing: Awaitable[Any]) -> None:
        """Await ``closing`` (a client's ``aclose()``) on the runner's loop, where its
        connections live; closes the coroutine unawaited when the runner never started."""
        runner = self._runner
        if runner is None or runner.closed:
            if inspect.iscoroutine(closing):
                closing.close()
            return
        with contextlib.suppress(Exception):
            runner.submit(closing).result(timeout=10)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._started = time.monotonic()
        if self.config.getoption("rag_cache_clear", False) and not hasattr(
            self.config, "workerinput"
        ):
            clearing = VerdictCache(self.settings.cache_dir, "on")
            clearing.clear()
            clearing.close()
            self._clear_notices = clearing.notices
        self._session = session
        self._watch_signals()
        if hasattr(self.config, "workerinput"):
            from pytest_rageval.xdist import announce_pid

            announce_pid(self.config)

    def _watch_signals(self) -> None:
        """Stop the runner the moment Ctrl-C or SIGTERM arrives, wherever pytest is then.

        Python raises KeyboardInterrupt wherever the main thread happens to be; inside a
        finalizer it is lost as an "unraisable" exception, and elsewhere it can take a
        while to reach a hook. Until then every slot would keep sending paid requests.
        The previous handler still runs, so pytest sees its KeyboardInterrupt as usual.

        SIGTERM is how CI cancels a job (GitHub Actions after SIGINT, others and
        ``timeout`` alone), so unless someone else handles it, it is Ctrl-C too: what
        finished is kept and every report is written, where by default Python would die
        at once with nothing. A repeat within ``REPEAT_SECONDS`` is the same cancel (a
        terminal's Ctrl-C reaches every process of the group, which the xdist controller
        then passes on to its workers); a later one goes to pytest as a second Ctrl-C.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        restore: list[tuple[int, Any]] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            installed = signal.getsignal(signum)
            previous = installed
            if signum == signal.SIGTERM and installed == signal.SIG_DFL:
                previous = signal.default_int_handler
            if not callable(previous):
                continue  # SIG_IGN, or SIGINT's SIG_DFL: not ours to interpret
            signal.signal(signum, self._on_signal(previous))
            restore.append((signum, installed))

        def restore_all() -> None:
            for signum, handler in restore:
                signal.signal(signum, handler)

        self._restore_signals = restore_all

    def _on_signal(self, previous: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
        def on_signal(signum: int, frame: Any) -> Any:
            now = time.monotonic()
            if self._raise_when_safe:  # the xdist controller, cancelled in pytest's code
                if _in_pytest_machinery(frame):
                    return None
                self._raise_when_safe = False
                return previous(signum, frame)
            if self._signalled is not None and now - self._signalled < REPEAT_SECONDS:
                return None  # the same cancel, reaching us twice
            first = self._signalled is None
            self._signalled = now
            reason = "interrupted" if signum == signal.SIGINT else "interrupted (SIGTERM)"
            self.stopped = self.stopped or reason
            if self._runner is not None:
                self._runner.stop(reason, wait=False)
            if first:
                for listener in self.signal_listeners:
                    with contextlib.suppress(Exception):
                        listener(signum)
            self._session.shouldstop = reason
            if self.dispatches:
                # the xdist controller runs no test and none of our waits: its loop
                # ends now, or as soon as the main thread is out of pytest's own code
                if not _in_pytest_machinery(frame):
                    return previous(signum, frame)
                self._raise_when_safe = True
                threading.Thread(target=self._interrupt_soon, args=(signum,), daemon=True).start()
                return None
            if (
                self._looping
                and not self._interrupt_pending
                and (self._waiting or _in_pytest_machinery(frame))
            ):
                # A KeyboardInterrupt raised mid-instruction in pytest's own code can
                # carry a traceback entry without a line, on which pytest's report of it
                # fails (INTERNALERROR, exit 1) on Python 3.11. So here it is raised in
                # our own frame once a wait on the runner is over (milliseconds, as the
                # runner has stopped), or shouldstop ends the run at the next item.
                # Interrupting the user's own code, and a second Ctrl-C, go to pytest.
                self._interrupt_pending = True
                return None
            return previous(signum, frame)

        return on_signal

    def _interrupt_soon(self, signum: int) -> None:
        """Run the signal's handler in the main thread again until it has raised."""
        for _ in range(500):
            time.sleep(0.01)
            if not self._raise_when_safe:
                return
            _thread.interrupt_main(signal.Signals(signum))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        self._looping = True
        try:
            return (yield)
        finally:
            self._looping = False

    # -- collection: group the selected questions into sets -----------------------------

    @pytest.hookimpl(tryfirst=True)  # under xdist, before the worker reports its collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        sets: dict[object, RagSet] = {}
        for item in session.items:
            if QUESTION_FILE_KEY in item.stash:
                question_file = item.stash[QUESTION_FILE_KEY]
                key: object = item.parent.nodeid if item.parent else item.nodeid
                rset = sets.get(key)
                if rset is None:
                    rset = sets[key] = self._new_set(str(key), item, question_file.gate)
                    rset.engine_fixture = question_file.query_engine
                    rset.evaluator_names = question_file.evaluators
                    rset.evaluator_options = question_file.evaluator_options
                rset.members[item.nodeid] = item.stash[QUESTION_KEY]
                rset.items.append(item)
                item.stash[SET_KEY] = rset
                continue
            callspec = getattr(item, "callspec", None)
            if "rag_result" not in getattr(item, "fixturenames", ()) or callspec is None:
                continue
            if "rag_question" not in callspec.params:
                continue
            try:
                question = as_question(callspec.params["rag_question"])
            except TypeError as exc:
                item.stash[PROBLEM_KEY] = str(exc)
                continue
            others = {k: v for k, v in callspec.params.items() if k != "rag_question"}
            assert isinstance(item, pytest.Function)
            key = (
                item.parent.nodeid if item.parent else "",
                item.originalname,
                *((name, _identity(value)) for name, value in others.items()),
            )
            rset = sets.get(key)
            if rset is None:
                name = base = _python_set_name(item, others)
                taken = {other.name for other in sets.values()}
                # non-primitive parameters show only their name: keep set names apart,
                # since reports group questions by set name
                for n in itertools.count(2):
                    if name not in taken:
                        break
                    name = f"{base}#{n}"
                rset = sets[key] = self._new_set(name, item, question.file_gate)
            rset.members[item.nodeid] = question
            rset.items.append(item)
            item.stash[QUESTION_KEY] = question
            item.stash[SET_KEY] = rset
        self._sets = list(sets.values())
        for index, rset in enumerate(self._sets):
            rset.index = index
        if hasattr(self.config, "workerinput"):
            from pytest_rageval.xdist import write_sets

            write_sets(
                self.config,
                {nodeid: rset.name for rset in self._sets for nodeid in rset.members},
            )

    def _new_set(self, name: str, item: pytest.Item, file_layer: Layer) -> RagSet:
        """A set with its gate: markers (closest first) > data file > ini > defaults."""
        layers: list[Layer] = []
        for marker in item.iter_markers("rag_threshold"):
            where = f"@pytest.mark.rag_threshold on {item.nodeid}"
            if marker.args:
                raise pytest.UsageError(
                    f"{where}: give metrics as keywords, e.g. rag_threshold(faithfulness=0.9), "
                    f"got positional {marker.args!r}"
                )
            try:
                layers.append(check_layer(marker.kwargs, where))
            except ThresholdError as exc:
                raise pytest.UsageError(str(exc)) from None
        layers.append(file_layer)
        named: dict[str, str] = {}
        for layer in layers:
            for metric in layer.thresholds:
                named.setdefault(metric, layer.where)
        options = merge_layers(layer.options for layer in layers)
        settings = self.settings
        thresholds = merge_layers([*(layer.thresholds for layer in layers), settings.thresholds])
        return RagSet(
            name,
            thresholds,
            named=named,
            max_invalid=options.get("max_invalid", settings.max_invalid),
            max_drop=options.get("max_drop", settings.max_drop),
            confidence=options.get("confidence", settings.confidence),
            repeat=int(options.get("repeat", settings.repeat)),
            base=settings.baseline.sets.get(name) if settings.baseline is not None else None,
        )

    # -- running: submit a whole set when its first question runs ------------------------

    def ask(self, item: pytest.Item, request: pytest.FixtureRequest) -> QuestionResult | None:
        """This item's result; submits its whole set first. None when setup failed."""
        if PROBLEM_KEY in item.stash:
            return None
        rset = item.stash.get(SET_KEY, None)
        if rset is None:  # a rag_result test whose rag_question is not parametrized
            try:
                question = as_question(request.getfixturevalue("rag_question"))
            except TypeError as exc:
                item.stash[PROBLEM_KEY] = str(exc)
                return None
            rset = self._new_set(item.nodeid, item, question.file_gate)
            rset.members[item.nodeid] = question
            self._sets.append(rset)
            item.stash[QUESTION_KEY] = question
            item.stash[SET_KEY] = rset
        if not rset.submitted and rset.problem is None:
            try:
                engine = self._fixture(request, rset.engine_fixture, item, rset)
                every = (
                    self._fixture(request, "rag_evaluators", item, rset)
                    if _wants_rag_evaluators(rset, item)
                    else None
                )
                evaluators = _pick(
                    rset,
                    every,
                    lambda: self._fixture(request, "rag_embed_model", item, rset),
                )
            except RagSetupError as exc:
                item.stash[PROBLEM_KEY] = str(exc)
                return None
            self._submit(rset, engine, evaluators)
            if every is not None:
                self._remember(rset, item, engine, every)
        if rset.index >= 0:
            self._keep_pool_full(rset)
        if rset.problem is not None:
            item.stash[PROBLEM_KEY] = rset.problem
            return None
        return self._wait(rset.result, item.nodeid)

    def _wait(self, wait: Callable[..., T], *args: Any) -> T:
        """Wait on the runner; a Ctrl-C meanwhile is raised here, once the wait is over."""
        self._waiting = True
        try:
            value = wait(*args)
        finally:
            self._waiting = False
        if self._interrupt_pending:
            self._interrupt_pending = False
            raise KeyboardInterrupt
        return value

    def _submit(self, rset: RagSet, engine: Any, evaluators: Mapping[str, Any]) -> None:
        rset.metrics = tuple(evaluators)
        self._metrics_seen.update(evaluators)
        problem = _unknown_metrics(rset, evaluators) or _nothing_applies(rset, evaluators)
        if problem is not None:
            rset.problem = problem
            return
        expected: Counter[str] = Counter()
        for nodeid, question in rset.members.items():
            names = tuple(n for n, ev in evaluators.items() if judges.applies(ev, question))
            rset.applicable[nodeid] = names
            expected.update(names)
        rset.tally = Tally(expected, rset.thresholds, rset.max_invalid, **rset.gate())
        rset.submitted = True
        self.runner.submit_questions(
            engine, list(rset.members.items()), evaluators, _on_done(rset), repeat=rset.repeat
        )

    def _fixture(
        self, request: pytest.FixtureRequest, name: str, item: pytest.Item, rset: RagSet
    ) -> Any:
        try:
            return request.getfixturevalue(name)
        except RagSetupError:
            raise
        except Exception as exc:
            if not isinstance(exc, pytest.FixtureLookupError):
                rset.setup_error = f"not evaluated: the {name} fixture raised {describe(exc)}"
                raise
            where = item.nodeid.split("::", 1)[0]
            raise RagSetupError(
                f"no fixture named {name!r}, which {where} uses as its query engine; define it "
                "in a conftest.py next to that file, returning your llama-index query engine "
                "(or a callable that takes the query string)"
            ) from None

    # -- keeping the pool full across small sets ------------------------------------------

    def _remember(self, rset: RagSet, item: pytest.Item, engine: Any, every: Any) -> None:
        """Note the session-scoped fixtures ``rset`` was submitted with, so that later sets
        resolving to the very same fixtures can be submitted before their items run."""
        fixtures = _shared_fixtures(item, rset.engine_fixture)
        if fixtures is not None:
            self._shared[fixtures] = (engine, every)

    def _keep_pool_full(self, rset: RagSet) -> None:
        """Submit the sets that follow ``rset`` early, while fewer than two questions per
        worker are waiting, so that a run of small sets does not drain the pool between
        sets. Only sets whose engine and evaluators are the same session-scoped fixture
        values (no other setup to wait for), and not on an xdist worker, which learns its
        sets one at a time."""
        if not self._shared or hasattr(self.config, "workerinput"):
            return
        window = 2 * self.settings.workers
        waiting = 0
        for other in self._sets[rset.index : rset.index + _LOOKAHEAD]:
            if waiting >= window:
                return
            if not other.submitted and (other.problem is not None or not self._submit_early(other)):
                continue
            waiting += len(other.members) - len(other.results)

    def _submit_early(self, rset: RagSet) -> bool:
        first = rset.items[0] if rset.items else None
        if first is None or any(PROBLEM_KEY in item.stash for item in rset.items):
            return False
        if any(_may_skip(item) for item in rset.items):
            return False
        fixtures = _shared_fixtures(first, rset.engine_fixture)
        if fixtures is None or fixtures not in self._shared:
            return False
        engine, every = self._shared[fixtures]
        try:
            evaluators = _pick(rset, every)
        except RagSetupError:
            return False  # said when its first item runs
        self._submit(rset, engine, evaluators)
        return True

    # -- verdicts, applied in the call phase ---------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        __tracebackhide__ = _hide_for_app_errors
        if SET_KEY not in item.stash and PROBLEM_KEY not in item.stash:
            return (yield)
        if PROBLEM_KEY in item.stash:  # e.g. rag_result could not get a query engine
            self._fail_setup(item)
        try:
            result = yield
        except KeyboardInterrupt:
            self._stop("interrupted")  # now, not once pytest has unwound to its own hook
            raise
        except SystemExit:
            raise
        except BaseException:
            if SET_KEY in item.stash and PROBLEM_KEY not in item.stash:
                self._judge(item, fail=False)
            raise
        if PROBLEM_KEY in item.stash:
            self._fail_setup(item)
        self._judge(item, fail=True)
        return result

    def _fail_setup(self, item: pytest.Item) -> None:
        __tracebackhide__ = _hide_for_app_errors
        problem = item.stash[PROBLEM_KEY]
        question = item.stash.get(QUESTION_KEY, None)
        if question is not None and SET_KEY in item.stash:
            record = question_record(QuestionResult(question), {}, "error")
            record["error"] = redact(problem)
            self._keep(item, record)
        pytest.fail(problem, pytrace=False)

    def _judge(self, item: pytest.Item, *, fail: bool) -> None:
        __tracebackhide__ = _hide_for_app_errors
        rset = item.stash[SET_KEY]
        if not rset.submitted:
            return
        result = self._wait(rset.result, item.nodeid)
        metrics = metric_results(result)
        question = result.question
        rates: dict[str, MetricRate] | None = None
        newly = rset.newly(question.id, metrics)
        if needs_set(metrics, result.error, question.must_pass):
            verdict, rates = self._wait(rset.decide, metrics, newly)
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
        self._keep(item, record)
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

    def _keep(self, item: pytest.Item, record: dict[str, Any]) -> None:
        item.stash[SET_KEY].tag(record)
        item.user_properties.append(("rag.outcome", record["outcome"]))
        item.stash[RECORD_KEY] = record

    # -- reporting ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.when == "call" and RECORD_KEY in item.stash:
            report.rag = item.stash[RECORD_KEY]  # type: ignore[attr-defined]
        if SET_KEY in item.stash or PROBLEM_KEY in item.stash or QUESTION_KEY in item.stash:
            # a question's report shows the judge's exception, which may echo the key
            # (message, locals with -l, captured output): the terminal and JUnit read it
            report.longrepr = redact_in_place(report.longrepr)
            redact_in_place(report.sections)
        return report

    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, Mapping[str, bool]]] | None:
        record = getattr(report, "rag", None)
        if report.when == "call" and report.passed and record and record["outcome"] == "tolerated":
            return "tolerated", "T", ("TOLERATED", {"yellow": True})
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "rag", None)
        if report.when == "call" and record is not None:
            self.records.append(record)
            self._records_on_reports = len(self.records)
            self._reported.add(report.nodeid)
        elif report.when == "setup" and not report.passed:
            # skipped or failed in setup: pytest shows that, and the question is not ours
            self._reported.add(report.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self._stop("interrupted")
        if not self.config.option.fulltrace and len(excinfo.traceback) > 1:
            # pytest shows where it stopped, one line, but works out the source of every
            # frame first: seconds on a busy CI runner, where SIGKILL follows in 7.5 s
            excinfo.traceback = excinfo.traceback[-1:]

    def _stop(self, reason: str) -> None:
        self.stopped = self.stopped or reason
        if self._runner is not None:
            self._runner.stop(reason)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            return  # nothing ran: no summary, and no report replaces the last real one
        if self.cache is not None:  # now, so that a verdict that cannot be stored is said
            self.cache.flush()
        runner_stop = self._runner.stopped if self._runner is not None else None
        if runner_stop is not None:
            self.stopped = self.stopped or _reason(runner_stop, self.settings)
        elif exitstatus == pytest.ExitCode.INTERRUPTED:
            self._stop("interrupted")
        elif session.shouldfail or session.shouldstop:
            self._stop(f"the run stopped early ({session.shouldfail or session.shouldstop})")
        self._keep_unreported()
        workeroutput = getattr(self.config, "workeroutput", None)
        # a set can fail with no failed item to carry it (a confidence bound, a drop from
        # removed questions): the run fails, and the summary says why
        if (
            workeroutput is None
            and session.exitstatus == pytest.ExitCode.OK
            and any(summary.unheld() for summary in self.summaries())
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if workeroutput is not None:  # an xdist worker: the controller reports
            # stopped, the controller may not have read every report we sent: all of them
            kept = 0 if self.stopped is not None else self._records_on_reports
            workeroutput["rageval"] = {
                "records": self.records[kept:],  # the rest came with the reports
                "notices": self.notices(),
                "metrics": sorted(self._metrics_seen),
                "stopped": self.stopped,
                "complete": self.complete,
                "counts": self._runner.counts if self._runner is not None else {},
                "usage": self._own_usage(),
                "cache": self.cache.stats() if self.cache is not None else None,
            }
            return
        self._write_reports(int(session.exitstatus))
        if session.exitstatus == pytest.ExitCode.OK and any(error for *_, error in self.written):
            # CI reads the file it asked for (a baseline, a comment): without it, a green
            # run would hide that the next step has nothing, or last run's file, to read
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self._failed_writing = True

    def _write_reports(self, exitstatus: int) -> None:
        """The JSON report, the Markdown summary (also onto a GitHub step summary) and the
        HTML report, as asked for; a file that cannot be written is said in the summary."""
        settings = self.settings
        step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
        outputs: list[tuple[str, Path | None, Callable[[dict[str, Any]], str]]] = [
            ("rag report", settings.report, json_report.dumps),
            ("rag markdown summary", settings.markdown, self._markdown),
            ("rag html report", settings.html, html.render_html),
        ]
        if not step_summary and all(path is None for _, path, _ in outputs):
            return
        document = self.json_report(exitstatus)
        self.config.hook.pytest_rageval_update_report(config=self.config, report=document)
        for label, path, render in outputs:
            if path is None:
                continue
            try:
                json_report.write_atomic(path, render(document))
            except (OSError, ValueError, TypeError) as exc:
                self.written.append((label, path, f"{type(exc).__name__}: {exc}"))
            else:
                self.written.append((label, path, None))
        if step_summary:
            try:
                with open(step_summary, "a", encoding="utf-8") as summary:
                    summary.write(self._markdown(document))
            except OSError as exc:
                self.written.append(("GitHub step summary", Path(step_summary), str(exc)))

    def _markdown(self, document: dict[str, Any]) -> str:
        html_path = self.settings.html
        # as the user would type it: relative to where pytest ran
        shown = (
            None
            if html_path is None
            else os.path.relpath(html_path, self.config.invocation_params.dir)
        )
        return markdown.render_markdown(document, html=shown)

    def merge_worker(self, output: Mapping[str, Any]) -> None:
        """On the xdist controller: what a worker alone knew (results of items that never
        ran, its warnings, why it stopped)."""
        # once per question: a cancelled worker sends every result it holds (some also
        # came with its reports) and a stand-in for each question of the sets it did
        # not start, which another worker may have run
        where = {(r.get("set"), r.get("id")): i for i, r in enumerate(self.records)}
        for record in output.get("records", []):
            key = (record.get("set"), record.get("id"))
            if key not in where:
                where[key] = len(self.records)
                self.records.append(record)
            elif record.get("evaluated") and not self.records[where[key]].get("evaluated"):
                self.records[where[key]] = record
        self._worker_notices.extend(
            n for n in output.get("notices", []) if n not in self._worker_notices
        )
        self._metrics_seen.update(output.get("metrics", []))
        self._worker_counts.update(output.get("counts") or {})
        for kind in ("usage", "saved", "models"):
            for name, value in ((output.get("usage") or {}).get(kind) or {}).items():
                if kind == "models":
                    self._worker_usage["models"].setdefault(name, value)
                else:
                    self._worker_usage[kind].setdefault(name, usage.Meter()).add(value)
        worker_cache = output.get("cache") or {}
        for counter in ("replayed", "recorded"):
            self._worker_cache["counters"][counter] += worker_cache.get(counter, 0)
        for metric, seen in (worker_cache.get("metrics") or {}).items():
            self._worker_cache["hits"][metric] += seen.get("hits", 0)
            self._worker_cache["misses"][metric] += seen.get("misses", 0)
        if not output.get("complete", True):
            self.complete = False
        self.stopped = self.stopped or output.get("stopped")

    def _keep_unreported(self) -> None:
        """Results that finished but whose items never ran (Ctrl-C, -x, --maxfail), and
        questions never finished, so the summary and the report lose nothing."""
        worker = hasattr(self.config, "workerinput")
        for rset in self._sets:
            if worker and not rset.submitted and rset.problem is None and not self.stopped:
                # an xdist worker collects every set but runs only its own; stopped, it
                # stands in for the sets it did not start (the controller keeps the
                # worker's that ran them), since none may have
                continue
            missing = [nodeid for nodeid in rset.members if nodeid not in self._reported]
            if not missing:
                continue
            self.complete = False
            reason = f"not evaluated: {self.stopped or 'the run ended first'}"
            # a set never started: the metrics its data file names, where it names them
            unstarted = () if rset.submitted else rset.evaluator_names or ()
            results = {}
            for nodeid, question in rset.members.items():
                if nodeid in rset.results:
                    results[nodeid] = rset.results[nodeid]
                elif nodeid in missing:
                    results[nodeid] = QuestionResult(
                        question,
                        errors={"query": rset.problem or rset.setup_error or reason},
                        applicable=rset.applicable.get(nodeid, unstarted),
                        evaluated=False,
                    )
            judged = {nodeid: metric_results(r) for nodeid, r in results.items()}
            rates = set_rates(judged.values(), rset.thresholds, rset.max_invalid, **rset.gate())
            for nodeid in missing:
                result, metrics = results[nodeid], judged[nodeid]
                newly = rset.newly(result.question.id, metrics)
                verdict = outcome(metrics, result.error, result.question.must_pass, rates, newly)
                self.records.append(rset.tag(question_record(result, metrics, verdict)))
        if self.stopped is not None:
            self.complete = False

    def summaries(self) -> list[SetSummary]:
        """The sets as reported, worked out once the run's records are all in (the gate,
        the reports and the terminal read the same ones)."""
        if self._summaries is None or self._summarized != len(self.records):
            self._summaries = summarize(self.records)
            self._summarized = len(self.records)
        return self._summaries

    def json_report(self, exitstatus: int) -> dict[str, Any]:
        """The ``--rag-report`` document of this run, which ended with ``exitstatus``."""
        summaries = self.summaries()
        document = json_report.json_report(
            summaries, text=self.settings.report_text, baseline=self.settings.baseline
        )
        document["complete"] = self.complete
        document["stopped"] = self.stopped
        document["gate"] = json_report.gate(document, exitstatus)
        document["notices"] = self.notices()
        document["settings"] = self.settings.to_json()
        document["versions"] = versions(self.settings.judge.model)
        counts = Counter(self._worker_counts)
        counts.update(self._runner.counts if self._runner is not None else {})
        document["timing"] = {
            "wall_seconds": round(time.monotonic() - self._started, 3),
            **{key: counts[key] for key in ("app_calls", "judge_calls", "retries")},
        }
        document["cache"] = self.cache_stats()
        document["usage"] = self.usage_report()
        return document

    def _own_usage(self) -> dict[str, Any]:
        runner = self._runner
        if runner is None:
            return {}
        return {
            "usage": {name: meter.to_json() for name, meter in runner.usage.items()},
            "saved": {name: meter.to_json() for name, meter in runner.saved.items()},
            "models": dict(runner.judge_models),
        }

    def usage_report(self) -> dict[str, Any]:
        """Tokens per metric and for the app (``query``), what the cache saved, and the
        cost when ``rag_prices`` knows the models; this process's and its workers'."""
        totals: dict[str, dict[str, usage.Meter]] = {"usage": {}, "saved": {}}
        models = dict(self._worker_usage["models"])
        own = self._own_usage()
        models.update(own.get("models", {}))
        for kind in ("usage", "saved"):
            for source in (self._worker_usage[kind], own.get(kind, {})):
                for name, value in source.items():
                    totals[kind].setdefault(name, usage.Meter()).add(value)
        prices = self.settings.prices
        report: dict[str, Any] = {}
        for name in sorted(set(totals["usage"]) | set(totals["saved"])):
            spent = totals["usage"].get(name, usage.Meter()).to_json()
            saved = totals["saved"].get(name, usage.Meter()).to_json()
            answered = list(spent["models"]) + list(saved["models"])
            price = usage.price_of(prices, models.get(name), answered)
            report[name] = {
                **spent,
                "cost": usage.cost(spent, price),
                "saved": {**saved, "cost": usage.cost(saved, price)},
            }
        return report

    def cache_stats(self) -> dict[str, Any] | None:
        """Verdict cache hits and misses per metric, this process's and its workers'."""
        if self.cache is None:
            return None
        stats = self.cache.stats()
        for counter in ("replayed", "recorded"):
            stats[counter] += self._worker_cache["counters"][counter]
        hits = self._worker_cache["hits"] + self.cache.hits
        misses = self._worker_cache["misses"] + self.cache.misses
        stats["metrics"] = {
            m: {"hits": hits[m], "misses": misses[m]} for m in sorted(set(hits) | set(misses))
        }
        return stats

    def notices(self) -> list[str]:
        """Warnings for the user: from the runner, and ini thresholds no set used."""
        notices = list(self._runner.notices) if self._runner is not None else []
        if self.cache is not None:
            notices.extend(self.cache.notices)
        notices.extend(n for n in self._clear_notices + self._worker_notices if n not in notices)
        if self._metrics_seen:
            for metric in self.settings.thresholds:
                if metric not in self._metrics_seen:
                    notices.append(
                        f"{self.settings.thresholds_where} sets a threshold for {metric!r}, "
                        "which no evaluator of this run provides"
                        f"{closest(metric, self._metrics_seen)}"
                    )
        return [redact(notice) for notice in notices]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        terminalreporter.write_sep("=", "rag evaluation")
        summaries = self.summaries()
        lines = terminal.render_summary(summaries, self.notices(), self.settings.baseline)
        cache = self.cache_stats()
        if cache is not None and (cache["metrics"] or cache["replayed"]):
            lines.append(terminal.render_cache(cache))
        lines.extend(terminal.render_usage(self.usage_report()))
        for line in lines:
            terminalreporter.write_line(line)
        if not self.complete:
            unfinished = sum(1 for record in self.records if not record.get("evaluated", True))
            terminalreporter.write_line(
                f"incomplete: {self.stopped or 'not every question ran'}; "
                f"{unfinished} of {len(self.records)} questions not evaluated",
                yellow=True,
            )
        for label, path, error in self.written:
            if error is None:
                terminalreporter.write_line(f"{label} written to {path}")
            else:
                terminalreporter.write_line(f"{label} NOT written to {path}: {error}", red=True)
        if self._failed_writing:
            terminalreporter.write_line(
                "the run fails (exit 1): a report it was asked for could not be written",
                red=True,
            )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._restore_signals is not None:
            self._restore_signals()
            self._restore_signals = None
        if self._runner is not None:
            self._runner.close()
        if self.cache is not None:
            self.cache.close()  # commits the verdicts gathered since the last batch


def versions(judge_model: str) -> dict[str, str | None]:
    """What produced a report: package versions and the default judge's model."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("pytest-rageval", "llama-index-core", "pytest"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    found["python"] = sys.version.split()[0]
    found["judge_model"] = judge_model
    return found


def _on_done(rset: RagSet) -> Callable[[str, QuestionResult | BaseException | None], None]:
    """What the runner calls (on its loop) as each question of ``rset`` finishes."""

    def done(nodeid: str, outcome: QuestionResult | BaseException | None) -> None:
        if isinstance(outcome, QuestionResult):
            result = outcome
        else:
            message = "not evaluated: cancelled" if outcome is None else describe(outcome)
            result = QuestionResult(rset.members[nodeid], errors={"query": message})
        if not result.applicable and result.errors:
            result.applicable = rset.applicable.get(nodeid, ())
        rset.finished(nodeid, result)

    return done


_LOOKAHEAD = 64
"""How many sets ahead of the running one may be submitted early."""


def _pick(
    rset: RagSet, evaluators: Any, embed_model: Callable[[], Any] | None = None
) -> dict[str, Any]:
    """The evaluators of ``rset``: what the ``rag_evaluators`` fixture returned (None when
    it was not needed), or, for names a data file lists that it does not provide, the
    built-in evaluators of that name (``evaluators.BY_NAME``, with the file's options;
    ``embed_model`` gives those that embed text the ``rag_embed_model`` fixture's model,
    and without it they cannot be built here)."""
    if evaluators is not None and (not isinstance(evaluators, Mapping) or not evaluators):
        raise RagSetupError(
            "the rag_evaluators fixture must return a non-empty dict of metric name -> "
            f"llama-index evaluator, got {evaluators!r}"
        )
    if rset.evaluator_names is None:
        return dict(evaluators or {})
    from pytest_rageval.evaluators import BY_NAME

    given = evaluators or {}
    picked = {}
    for name in rset.evaluator_names:
        options = rset.evaluator_options.get(name)
        if options is None and name in given:
            picked[name] = given[name]
        elif name in BY_NAME:
            options = dict(options or {})
            cls = BY_NAME[name]
            if "embed_model" in inspect.signature(cls).parameters and "embed_model" not in options:
                if embed_model is None:
                    raise RagSetupError(f"{rset.name}: {name} needs the rag_embed_model fixture")
                options["embed_model"] = embed_model()
            picked[name] = _built_in(rset, name, cls, options)
        elif options is not None:
            raise RagSetupError(
                f"{rset.name} gives options for evaluator {name!r}, which is not built in"
                f"{closest(name, BY_NAME)}; options are for the built-in evaluators "
                f"({', '.join(BY_NAME)}); configure your own in your rag_evaluators fixture"
            )
        else:
            known = [*given, *(n for n in BY_NAME if n not in given)]
            raise RagSetupError(
                f"{rset.name} asks for evaluator {name!r}, which neither rag_evaluators "
                f"provides nor is built in{closest(name, known)} (known: {', '.join(known)}); "
                "fix the file's 'evaluators' list or add it to your rag_evaluators fixture"
            )
    return picked


def _built_in(rset: RagSet, name: str, cls: type, options: Mapping[str, Any]) -> Any:
    try:
        return cls(**options)
    except (TypeError, ValueError, re.error) as exc:
        accepted = [p for p in inspect.signature(cls).parameters if p not in ("self",)]
        raise RagSetupError(
            f"{rset.name}: the options of evaluator {name!r} are not valid: {exc}; it takes "
            + (", ".join(accepted) if accepted else "no options")
        ) from None


def _wants_rag_evaluators(rset: RagSet, item: pytest.Item) -> bool:
    """Whether ``rset`` needs the ``rag_evaluators`` fixture: not when its data file names
    only built-in evaluators and the fixture is the plugin's own (LLM judges only), so
    that a file of deterministic metrics runs without a judge."""
    names = rset.evaluator_names
    if names is None:
        return True
    from pytest_rageval.evaluators import BY_NAME

    if any(name not in BY_NAME or name in judges.DEFAULT_METRICS for name in names):
        return True
    found = _fixture_def(item, "rag_evaluators")
    return found is None or getattr(found.func, "__module__", None) != "pytest_rageval.fixtures"


def _shared_fixtures(item: pytest.Item, engine_name: str) -> tuple[object, object] | None:
    """The fixture definitions ``item`` gets its engine and evaluators from, when both are
    session-scoped and unparametrized (so every item that resolves to them gets the same
    values); None otherwise, or when pytest's fixture lookup is not what we expect."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    found = []
    for name in (engine_name, "rag_evaluators"):
        if name in params:
            return None
        definition = _fixture_def(item, name)
        if definition is None or definition.scope != "session" or definition.params:
            return None
        found.append(definition)
    return found[0], found[1]


def _fixture_def(item: pytest.Item, name: str) -> Any:
    """The definition of fixture ``name`` that ``item`` gets; None when there is none or
    pytest's fixture lookup (a private API) is not what we expect."""
    try:
        defs = item.session._fixturemanager.getfixturedefs(name, item)
    except Exception:
        return None
    return defs[-1] if defs else None


def _may_skip(item: pytest.Item) -> bool:
    return (
        any(item.iter_markers("skip"))
        or any(item.iter_markers("skipif"))
        or any(item.iter_markers("xfail"))
    )


def _unknown_metrics(rset: RagSet, evaluators: Mapping[str, Any]) -> str | None:
    """A threshold naming a metric no evaluator of the set provides (a typo, usually)."""
    for metric, where in rset.named.items():
        if metric not in evaluators:
            return (
                f"{where} sets a threshold for {metric!r}, which no evaluator of {rset.name} "
                f"provides{closest(metric, evaluators)}; its metrics are: "
                f"{', '.join(evaluators)}"
            )
    return None


def _nothing_applies(rset: RagSet, evaluators: Mapping[str, Any]) -> str | None:
    """A set where no metric applies to any question would pass without being judged."""
    for question in rset.members.values():
        if any(judges.applies(evaluator, question) for evaluator in evaluators.values()):
            return None
    needs = []
    for name, evaluator in evaluators.items():
        what = judges.needs(evaluator)
        needs.append(f"{name} needs {what}" if what else f"{name} does not apply")
    return f"no metric applied to any question of {rset.name}: {'; '.join(needs)}"


def _first_exception(result: QuestionResult) -> BaseException | None:
    """The exception behind a question's first error when it came from the user's code
    (the app or an evaluator), not from the runner giving up on a transient failure."""
    for where in result.errors:
        exc = result.exceptions.get(where)
        return None if exc is None or isinstance(exc, GaveUp) else exc
    return None


def _in_pytest_machinery(frame: Any) -> bool:
    """Whether the main thread was interrupted in pytest's, pluggy's or our own code (past
    any standard library frames they called), not in the user's."""
    stdlib = os.path.dirname(os.__file__) + os.sep
    while frame is not None:
        filename: str = frame.f_code.co_filename
        if filename.startswith("<frozen") or (
            filename.startswith(stdlib) and "site-packages" not in filename
        ):
            frame = frame.f_back
            continue
        return filename.startswith(_machinery())
    return True


@functools.cache
def _machinery() -> tuple[str, ...]:
    import _pytest
    import pluggy

    modules = (pytest, _pytest, pluggy, sys.modules[__package__ or "pytest_rageval"])
    return tuple(os.path.dirname(m.__file__ or "") + os.sep for m in modules if m.__file__)


def _hide_for_app_errors(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
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
    import os

    roots = (
        os.path.dirname(__file__),
        os.path.dirname(asyncio.__file__),
        os.path.dirname(futures.__file__),
    )
    return filename.startswith(roots) or filename.endswith(("functools.py", "threading.py"))


def _reason(stopped: str, settings: Settings) -> str:
    if stopped == "deadline" and settings.deadline is not None:
        return f"deadline (--rag-deadline {settings.deadline:g} s)"
    return stopped


def _identity(value: object) -> object:
    """Parameter values as a set key: equal when hashable, else the same object."""
    try:
        hash(value)
    except TypeError:
        return ("id", id(value))
    return value


def _python_set_name(item: pytest.Function, others: Mapping[str, object]) -> str:
    """``file::test`` plus its other parameters, e.g. ``test_app.py::test_x[style=short]``."""
    base = f"{item.parent.nodeid}::{item.originalname}" if item.parent else item.originalname
    if not others:
        return base
    shown = [
        f"{name}={value}" if isinstance(value, (str, int, float, bool)) else name
        for name, value in others.items()
    ]
    return f"{base}[{','.join(shown)}]"
