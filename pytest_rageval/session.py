"""The per-run state: sets of questions, their submission, verdicts and reports."""

from __future__ import annotations

import contextlib
import inspect
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, TypeVar

import pytest

from pytest_rageval import callphase, judges
from pytest_rageval.cache import VerdictCache
from pytest_rageval.interrupts import InterruptGuard
from pytest_rageval.keys import (
    PROBLEM_KEY,
    QUESTION_KEY,
    RECORD_KEY,
    SET_KEY,
)
from pytest_rageval.options import Settings
from pytest_rageval.questions import as_question
from pytest_rageval.redaction import redact, redact_in_place
from pytest_rageval.reports import document, terminal
from pytest_rageval.reports.summary import SetSummary, summarize
from pytest_rageval.results import QuestionResult, describe
from pytest_rageval.runner import Runner
from pytest_rageval.sets import RagSet, form_sets, new_set
from pytest_rageval.thresholds import (
    closest,
)
from pytest_rageval.totals import Totals, WorkerOutput, own_usage
from pytest_rageval.verdicts import (
    QuestionRecord,
    Tally,
    metric_results,
    outcome,
    question_record,
    set_rates,
)

T = TypeVar("T")


class RagSetupError(Exception):
    """Something the user must define or fix before questions can be evaluated."""


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
        self.records: list[QuestionRecord] = []
        self.complete = True
        self.stopped: str | None = None
        self.written: list[document.Written] = []
        """Each report file: what it is, where, and why it could not be written (or None)."""
        self._session: Any = None
        self._failed_writing = False
        self.interrupts = InterruptGuard(self._cancelled)
        self._records_on_reports = 0
        self._clear_notices: list[str] = []
        self._shared: dict[tuple[object, object], tuple[Any, Any]] = {}
        self.cache = (
            VerdictCache(settings.cache_dir, settings.cache) if settings.cache != "off" else None
        )
        self._summaries: list[SetSummary] | None = None
        self._summarized = -1
        self.totals = Totals()
        """What the workers counted (xdist)."""

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
        self._sets = form_sets(session.items, self.settings)
        if hasattr(self.config, "workerinput"):
            from pytest_rageval.xdist import write_sets

            write_sets(
                self.config,
                {nodeid: rset.name for rset in self._sets for nodeid in rset.members},
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
            rset = new_set(item.nodeid, item, question.file_gate, self.settings)
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
        return self.interrupts.wait(rset.result, item.nodeid)

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
            waiting += other.unfinished()

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
        worker = hasattr(self.config, "workeroutput")
        # a set can fail with no failed item to carry it (a confidence bound, a drop from
        # removed questions): the run fails, and the summary says why
        if (
            not worker
            and session.exitstatus == pytest.ExitCode.OK
            and any(summary.unheld() for summary in self.summaries())
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if worker:  # an xdist worker: the controller reports
            from pytest_rageval.xdist import send

            # stopped, the controller may not have read every report we sent: all of them
            kept = 0 if self.stopped is not None else self._records_on_reports
            send(
                self.config,
                WorkerOutput(
                    records=self.records[kept:],  # the rest came with the reports
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
        if not document.wanted(self.settings):
            return
        report = self.json_report(exitstatus)
        self.config.hook.pytest_rageval_update_report(config=self.config, report=report)
        self.written.extend(
            document.write(report, self.settings, self.config.invocation_params.dir)
        )

    def merge_worker(self, output: WorkerOutput) -> None:
        """On the xdist controller: what a worker alone knew (results of items that never
        ran, its warnings, why it stopped)."""
        # once per question: a cancelled worker sends every result it holds (some also
        # came with its reports) and a stand-in for each question of the sets it did
        # not start, which another worker may have run
        where = {(r.get("set"), r.get("id")): i for i, r in enumerate(self.records)}
        for record in output["records"]:
            key = (record.get("set"), record.get("id"))
            if key not in where:
                where[key] = len(self.records)
                self.records.append(record)
            elif record.get("evaluated") and not self.records[where[key]].get("evaluated"):
                self.records[where[key]] = record
        self.totals.add(output)
        self._metrics_seen.update(output["metrics"])
        if not output["complete"]:
            self.complete = False
        self.stopped = self.stopped or output["stopped"]

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
        self.interrupts.uninstall()
        if self._runner is not None:
            self._runner.close()
        if self.cache is not None:
            self.cache.close()  # commits the verdicts gathered since the last batch


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


def _reason(stopped: str, settings: Settings) -> str:
    if stopped == "deadline" and settings.deadline is not None:
        return f"deadline (--rag-deadline {settings.deadline:g} s)"
    return stopped
