"""The per-run state: sets of questions, their submission, verdicts and reports."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Awaitable, Generator, Mapping
from typing import Any, TypeVar

import pytest

from pytest_rageval import callphase
from pytest_rageval.cache import VerdictCache
from pytest_rageval.interrupts import InterruptGuard
from pytest_rageval.keys import DEFERRED_KEY, PROBLEM_KEY, QUESTION_KEY, RECORD_KEY
from pytest_rageval.recorded import Recorded
from pytest_rageval.redaction import redact, redact_in_place
from pytest_rageval.reports import document, terminal
from pytest_rageval.reports.summary import SetSummary
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner import Runner
from pytest_rageval.sets import SET_KEY, RagSet, form_sets
from pytest_rageval.settings import Settings
from pytest_rageval.submit import Submitter
from pytest_rageval.thresholds import unused_thresholds
from pytest_rageval.totals import Totals, WorkerOutput, own_usage

T = TypeVar("T")


class RagSession:
    """Registered as a plugin for every run; owns the runner and everything gated."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._runner: Runner | None = None
        self._started = time.monotonic()
        self._sets: list[RagSet] = []
        self._metrics_seen: set[str] = set()
        self.recorded = Recorded()
        self.records = self.recorded.records
        """Every question's record (the list ``recorded`` fills)."""
        self.gates = self.recorded.gates
        self.complete = True
        self.stopped: str | None = None
        self.written: list[document.Written] = []
        """Each report file: what it is, where, and why it could not be written (or None)."""
        self._session: Any = None
        self._failed_writing = False
        self.interrupts = InterruptGuard(self._cancelled)
        self.submitter = Submitter(
            settings,
            lambda: self.runner,
            self._sets,
            self._metrics_seen,
            self.interrupts.wait,
            looks_ahead=not hasattr(config, "workerinput"),
        )
        self._clear_notices: list[str] = []
        self.cache = (
            VerdictCache(settings.cache_dir, settings.cache) if settings.cache != "off" else None
        )
        self.totals = Totals()
        """What the workers counted (xdist)."""

    @property
    def deferred(self) -> bool:
        """A shard: the set gates are decided by ``rageval merge`` (``DEFERRED_KEY``)."""
        return self.config.stash.get(DEFERRED_KEY, False)

    @property
    def metrics_seen(self) -> set[str]:
        """Every metric the run's sets were judged on (its workers' too)."""
        return self._metrics_seen

    @property
    def started_runner(self) -> Runner | None:
        """The runner, when the run has started it (None: nothing was asked)."""
        return self._runner

    @property
    def runner(self) -> Runner:
        """The process's one runner, started on first use."""
        if self._runner is None:
            elapsed = time.monotonic() - self._started
            self._runner = Runner(**self.settings.runner_options(elapsed), cache=self.cache)
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
        self.interrupts.install()
        if hasattr(self.config, "workerinput"):
            from pytest_rageval.xdist import announce_pid

            announce_pid(self.config)

    def _cancelled(self, reason: str) -> None:
        """Ctrl-C or SIGTERM (in the signal handler): stop spending now."""
        self.stopped = self.stopped or reason
        if self._runner is not None:
            self._runner.stop(reason, wait=False)
        self._session.shouldstop = reason

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Generator[None, object, object]:
        self.interrupts.looping = True
        try:
            return (yield)
        finally:
            self.interrupts.looping = False

    # -- collection: group the selected questions into sets -----------------------------

    @pytest.hookimpl(tryfirst=True)  # under xdist, before the worker reports its collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._sets[:] = form_sets(session.items, self.settings)
        if hasattr(self.config, "workerinput"):
            from pytest_rageval.xdist import write_sets

            write_sets(
                self.config,
                {nodeid: rset.name for rset in self._sets for nodeid in rset.members},
            )

    # -- running: submit a whole set when its first question runs ------------------------

    def ask(self, item: pytest.Item, request: pytest.FixtureRequest) -> QuestionResult | None:
        """This item's result; submits its whole set first. None when setup failed."""
        return self.submitter.ask(item, request)

    # -- verdicts, applied in the call phase ---------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        __tracebackhide__ = callphase.hide_for_app_errors
        if SET_KEY not in item.stash and PROBLEM_KEY not in item.stash:
            return (yield)
        if PROBLEM_KEY in item.stash:  # e.g. rag_result could not get a query engine
            callphase.fail_setup(item)
        try:
            result = yield
        except KeyboardInterrupt:
            self._stop("interrupted")  # now, not once pytest has unwound to its own hook
            raise
        except SystemExit:
            raise
        except BaseException:
            if SET_KEY in item.stash and PROBLEM_KEY not in item.stash:
                callphase.judge(item, self.interrupts.wait, fail=False)
            raise
        if PROBLEM_KEY in item.stash:
            callphase.fail_setup(item)
        callphase.judge(item, self.interrupts.wait, fail=True)
        return result

    # -- reporting ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        # a record is made in the call phase, or in setup for a question a sequential set
        # skipped (its rag_result fixture skips the test)
        if call.when in ("setup", "call") and RECORD_KEY in item.stash:
            self.recorded.attach(report, item.stash[RECORD_KEY], item.stash[SET_KEY])
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
        self.recorded.logged(report)

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
        on_worker = hasattr(self.config, "workerinput")
        if self.recorded.keep_unreported(self._sets, self.stopped, worker=on_worker):
            self.complete = False
        if self.stopped is not None:
            self.complete = False
        worker = hasattr(self.config, "workeroutput")
        # a set can fail with no failed item to carry it (a confidence bound, a drop from
        # removed questions): the run fails, and the summary says why
        if (
            not worker
            and not self.deferred
            and session.exitstatus == pytest.ExitCode.OK
            and any(summary.unheld() for summary in self.summaries())
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if worker:  # an xdist worker: the controller reports
            from pytest_rageval.xdist import send

            # stopped, the controller may not have read every report we sent: all of them
            kept = 0 if self.stopped is not None else self.recorded.on_reports
            send(
                self.config,
                WorkerOutput(
                    records=self.records[kept:],  # the rest came with the reports
                    gates={rset.name: rset.gate.to_json() for rset in self._sets},
                    notices=self.notices(),
                    metrics=sorted(self._metrics_seen),
                    stopped=self.stopped,
                    complete=self.complete,
                    counts=dict(self._runner.counts) if self._runner is not None else {},
                    usage=own_usage(self._runner),
                    cache=self.cache.stats() if self.cache is not None else None,
                ),
            )
            return
        self._write_reports(int(session.exitstatus))
        if session.exitstatus == pytest.ExitCode.OK and any(error for *_, error in self.written):
            # CI reads the file it asked for (a baseline, a comment): without it, a green
            # run would hide that the next step has nothing, or last run's file, to read
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self._failed_writing = True

    def _write_reports(self, exitstatus: int) -> None:
        """Every report asked for, from one document; a file that cannot be written is
        said in the summary."""
        if self.deferred or not document.wanted(self.settings):
            return  # a shard writes its part (shards.py), never the run's reports
        report = self.json_report(exitstatus)
        self.config.hook.pytest_rageval_update_report(config=self.config, report=report)
        self.written.extend(
            document.write(report, self.settings, self.config.invocation_params.dir)
        )

    def merge_worker(self, output: WorkerOutput) -> None:
        """On the xdist controller: what a worker alone knew (results of items that never
        ran, its warnings, why it stopped)."""
        self.recorded.merge(output["records"], output["gates"])
        self.totals.add(output)
        self._metrics_seen.update(output["metrics"])
        if not output["complete"]:
            self.complete = False
        self.stopped = self.stopped or output["stopped"]

    def summaries(self) -> list[SetSummary]:
        """The sets as reported (the gate, the reports and the terminal read the same)."""
        return self.recorded.summaries(self._sets)

    def json_report(self, exitstatus: int) -> dict[str, Any]:
        """The ``--rag-report`` document of this run, which ended with ``exitstatus``."""
        return document.build(
            self.summaries(),
            self.settings,
            exitstatus=exitstatus,
            complete=self.complete,
            stopped=self.stopped,
            notices=self.notices(),
            timing={
                "wall_seconds": round(time.monotonic() - self._started, 3),
                **self.totals.run_counts(self._runner),
            },
            cache=self.cache_stats(),
            usage=self.usage_report(),
        )

    def usage_report(self) -> dict[str, Any]:
        """Tokens, what the cache saved and the cost, this process's and its workers'."""
        return self.totals.usage_report(self._runner, self.settings.prices)

    def cache_stats(self) -> dict[str, Any] | None:
        """Verdict cache hits and misses per metric, this process's and its workers'."""
        return self.totals.cache_stats(self.cache)

    def notices(self) -> list[str]:
        """Warnings for the user: from the runner, and ini thresholds no set used."""
        notices = list(self._runner.notices) if self._runner is not None else []
        if self.cache is not None:
            notices.extend(self.cache.notices)
        notices.extend(n for n in self._clear_notices + self.totals.notices if n not in notices)
        if not hasattr(self.config, "workerinput"):  # the controller has every record
            notices.extend(n for s in self.summaries() for n in s.calibration_notices())
        if self._metrics_seen:
            notices.extend(
                unused_thresholds(
                    self.settings.thresholds, self.settings.thresholds_where, self._metrics_seen
                )
            )
        return [redact(notice) for notice in notices]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records or self.deferred:
            return
        terminalreporter.write_sep("=", "rag evaluation")
        lines = terminal.render_section(
            self.summaries(),
            self.notices(),
            self.settings.baseline,
            self.cache_stats(),
            self.usage_report(),
        )
        for line in lines:
            terminalreporter.write_line(line)
        ending = terminal.render_ending(
            self.records, self.complete, self.stopped, self.written, self._failed_writing
        )
        for line, markup in ending:
            terminalreporter.write_line(line, **markup)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.interrupts.uninstall()
        if self._runner is not None:
            self._runner.close()
        if self.cache is not None:
            self.cache.close()  # commits the verdicts gathered since the last batch


def _reason(stopped: str, settings: Settings) -> str:
    if stopped == "deadline" and settings.deadline is not None:
        return f"deadline (--rag-deadline {settings.deadline:g} s)"
    return stopped
