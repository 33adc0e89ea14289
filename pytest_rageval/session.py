"""The object registered with pytest: hook methods that delegate to the run's parts."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from typing import Any

import pytest

from pytest_rageval import callphase
from pytest_rageval.cache import VerdictCache
from pytest_rageval.ending import RunEnd
from pytest_rageval.interrupts import InterruptGuard
from pytest_rageval.keys import PROBLEM_KEY, QUESTION_KEY, RECORD_KEY
from pytest_rageval.redaction import redact_in_place
from pytest_rageval.results import QuestionResult
from pytest_rageval.runner import Runner
from pytest_rageval.sets import SET_KEY, RagSet, form_sets
from pytest_rageval.settings import Settings
from pytest_rageval.submit import Submitter
from pytest_rageval.totals import WorkerOutput


class RagSession:
    """Registered as a plugin for every run; owns the runner and everything gated.

    Its parts: ``sets.py`` forms the sets, ``submit.py`` submits them, ``callphase.py``
    applies each verdict, ``interrupts.py`` guards Ctrl-C, and ``end`` (``ending.py``)
    holds what the run recorded and counted, why it stopped, and its reports.
    """

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._runner: Runner | None = None
        self._sets: list[RagSet] = []
        self.metrics_seen: set[str] = set()
        """Every metric the run's sets were judged on (its workers' too)."""
        self._session: Any = None
        self.interrupts = InterruptGuard(self._cancelled)
        self.submitter = Submitter(
            settings,
            lambda: self.runner,
            self._sets,
            self.metrics_seen,
            self.interrupts.wait,
            looks_ahead=not hasattr(config, "workerinput"),
        )
        self.cache = (
            VerdictCache(settings.cache_dir, settings.cache) if settings.cache != "off" else None
        )
        self.end = RunEnd(
            config, settings, self._sets, self.metrics_seen, self.cache, lambda: self._runner
        )

    @property
    def started_runner(self) -> Runner | None:
        """The runner, when the run has started it (None: nothing was asked)."""
        return self._runner

    @property
    def runner(self) -> Runner:
        """The process's one runner, started on first use."""
        if self._runner is None:
            elapsed = time.monotonic() - self.end.started
            self._runner = Runner(**self.settings.runner_options(elapsed), cache=self.cache)
        return self._runner

    @property
    def stopped(self) -> str | None:
        """Why the run stopped early, or None."""
        return self.end.stopped

    def merge_worker(self, output: WorkerOutput) -> None:
        """On the xdist controller: what a worker alone knew."""
        self.end.merge_worker(output)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.end.started = time.monotonic()
        if self.config.getoption("rag_cache_clear", False) and not hasattr(
            self.config, "workerinput"
        ):
            clearing = VerdictCache(self.settings.cache_dir, "on")
            clearing.clear()
            clearing.close()
            self.end.clear_notices = clearing.notices
        self._session = session
        self.interrupts.install()
        if hasattr(self.config, "workerinput"):
            from pytest_rageval.xdist import announce_pid

            announce_pid(self.config)

    def _cancelled(self, reason: str) -> None:
        """Ctrl-C or SIGTERM (in the signal handler): stop spending now."""
        self.end.stop(reason, wait=False)
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
            self.end.stop("interrupted")  # now, not once pytest has unwound to its own hook
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
            self.end.recorded.attach(report, item.stash[RECORD_KEY], item.stash[SET_KEY])
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
        self.end.recorded.logged(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.end.stop("interrupted")
        if not self.config.option.fulltrace and len(excinfo.traceback) > 1:
            # pytest shows where it stopped, one line, but works out the source of every
            # frame first: seconds on a busy CI runner, where SIGKILL follows in 7.5 s
            excinfo.traceback = excinfo.traceback[-1:]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.config.option.collectonly:
            return  # nothing ran: no summary, and no report replaces the last real one
        if self.cache is not None:  # now, so that a verdict that cannot be stored is said
            self.cache.flush()
        self.end.finish(session, exitstatus)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        self.end.terminal_summary(terminalreporter)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.interrupts.uninstall()
        if self._runner is not None:
            self._runner.close()
        if self.cache is not None:
            self.cache.close()  # commits the verdicts gathered since the last batch
