"""How the run ends: why it stopped, whether every question was recorded, its exit
status, what an xdist worker sends, and the reports (the JSON document, the files, the
terminal section), all rendered from the same records and gates."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from pytest_rageval.gcpause import paused
from pytest_rageval.keys import DEFERRED_KEY
from pytest_rageval.recorded import Recorded
from pytest_rageval.redaction import redact
from pytest_rageval.reports import document, terminal
from pytest_rageval.reports.summary import SetSummary
from pytest_rageval.thresholds import unused_thresholds
from pytest_rageval.totals import Totals, WorkerOutput, own_usage

if TYPE_CHECKING:
    from pytest_rageval.cache import VerdictCache
    from pytest_rageval.runner import Runner
    from pytest_rageval.sets import RagSet
    from pytest_rageval.settings import Settings


class RunEnd:
    """What the run recorded and counted, why it stopped, and the reports made of it.

    ``runner`` gives the process's runner when it has started (None: nothing was asked).
    """

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        sets: list[RagSet],
        metrics_seen: set[str],
        cache: VerdictCache | None,
        runner: Callable[[], Runner | None],
    ) -> None:
        self.config = config
        self.settings = settings
        self.sets = sets
        self.metrics_seen = metrics_seen
        self.cache = cache
        self.runner = runner
        self.started = time.monotonic()
        self.recorded = Recorded()
        self.totals = Totals()
        """What the workers counted (xdist)."""
        self.complete = True
        self.stopped: str | None = None
        self.written: list[document.Written] = []
        """Each report file: what it is, where, and why it could not be written (or None)."""
        self.failed_writing = False
        self.clear_notices: list[str] = []
        self.on_worker = hasattr(config, "workerinput")

    @property
    def deferred(self) -> bool:
        """A shard: the set gates are decided by ``rageval merge`` (``DEFERRED_KEY``)."""
        return self.config.stash.get(DEFERRED_KEY, False)

    def stop(self, reason: str, *, wait: bool = True) -> None:
        """Stop spending: the first reason given is the one reported."""
        self.stopped = self.stopped or reason
        runner = self.runner()
        if runner is not None:
            runner.stop(reason, wait=wait)

    @paused()  # the summaries and reports of every record: many objects, no cycles
    def finish(self, session: pytest.Session, exitstatus: int) -> None:
        """At the session's end: why it stopped, what is missing, the exit status, and
        the worker's payload or the run's reports."""
        runner = self.runner()
        if runner is not None and runner.stopped is not None:
            self.stopped = self.stopped or _reason(runner.stopped, self.settings)
        elif exitstatus == pytest.ExitCode.INTERRUPTED:
            self.stop("interrupted")
        elif session.shouldfail or session.shouldstop:
            self.stop(f"the run stopped early ({session.shouldfail or session.shouldstop})")
        if self.recorded.keep_unreported(self.sets, self.stopped, worker=self.on_worker):
            self.complete = False
        if self.stopped is not None:
            self.complete = False
        if hasattr(self.config, "workeroutput"):  # an xdist worker: the controller reports
            from pytest_rageval.xdist import send

            send(self.config, self.worker_output())
            return
        # a set can fail with no failed item to carry it (a confidence bound, a drop from
        # removed questions): the run fails, and the summary says why
        if (
            not self.deferred
            and session.exitstatus == pytest.ExitCode.OK
            and any(summary.unheld() for summary in self.summaries())
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self.write_reports(int(session.exitstatus))
        if session.exitstatus == pytest.ExitCode.OK and any(error for *_, error in self.written):
            # CI reads the file it asked for (a baseline, a comment): without it, a green
            # run would hide that the next step has nothing, or last run's file, to read
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            self.failed_writing = True

    def worker_output(self) -> WorkerOutput:
        """What this xdist worker alone knows, for the controller."""
        runner = self.runner()
        # stopped, the controller may not have read every report we sent: all of them
        kept = 0 if self.stopped is not None else self.recorded.on_reports
        return WorkerOutput(
            records=self.recorded.records[kept:],  # the rest came with the reports
            gates={rset.name: rset.gate.to_json() for rset in self.sets},
            notices=self.notices(),
            metrics=sorted(self.metrics_seen),
            stopped=self.stopped,
            complete=self.complete,
            counts=dict(runner.counts) if runner is not None else {},
            usage=own_usage(runner),
            cache=self.cache.stats() if self.cache is not None else None,
        )

    def merge_worker(self, output: WorkerOutput) -> None:
        """On the xdist controller: what a worker alone knew (results of items that never
        ran, its warnings, why it stopped)."""
        self.recorded.merge(output["records"], output["gates"])
        self.totals.add(output)
        self.metrics_seen.update(output["metrics"])
        if not output["complete"]:
            self.complete = False
        self.stopped = self.stopped or output["stopped"]

    def write_reports(self, exitstatus: int) -> None:
        """Every report asked for, from one document; a file that cannot be written is
        said in the summary."""
        if self.deferred or not document.wanted(self.settings):
            return  # a shard writes its part (shards.py), never the run's reports
        report = self.json_report(exitstatus)
        self.config.hook.pytest_rageval_update_report(config=self.config, report=report)
        self.written.extend(
            document.write(report, self.settings, self.config.invocation_params.dir)
        )

    def summaries(self) -> list[SetSummary]:
        """The sets as reported (the gate, the reports and the terminal read the same)."""
        return self.recorded.summaries(self.sets)

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
                "wall_seconds": round(time.monotonic() - self.started, 3),
                **self.totals.run_counts(self.runner()),
            },
            cache=self.cache_stats(),
            usage=self.usage_report(),
        )

    def usage_report(self) -> dict[str, Any]:
        """Tokens, what the cache saved and the cost, this process's and its workers'."""
        return self.totals.usage_report(self.runner(), self.settings.prices)

    def cache_stats(self) -> dict[str, Any] | None:
        """Verdict cache hits and misses per metric, this process's and its workers'."""
        return self.totals.cache_stats(self.cache)

    def notices(self) -> list[str]:
        """Warnings for the user: from the runner, and ini thresholds no set used."""
        runner = self.runner()
        notices = list(runner.notices) if runner is not None else []
        if self.cache is not None:
            notices.extend(self.cache.notices)
        notices.extend(n for n in self.clear_notices + self.totals.notices if n not in notices)
        if not self.on_worker:  # the controller has every record
            notices.extend(n for s in self.summaries() for n in s.calibration_notices())
        if self.metrics_seen:
            notices.extend(
                unused_thresholds(
                    self.settings.thresholds, self.settings.thresholds_where, self.metrics_seen
                )
            )
        return [redact(notice) for notice in notices]

    @paused()
    def terminal_summary(self, terminalreporter: Any) -> None:
        """The ``rag evaluation`` section and the run's last lines."""
        if not self.recorded.records or self.deferred:
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
            self.recorded.records, self.complete, self.stopped, self.written, self.failed_writing
        )
        for line, markup in ending:
            terminalreporter.write_line(line, **markup)


def _reason(stopped: str, settings: Settings) -> str:
    if stopped == "deadline" and settings.deadline is not None:
        return f"deadline (--rag-deadline {settings.deadline:g} s)"
    return stopped
