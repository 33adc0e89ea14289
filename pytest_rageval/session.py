"""The per-run state: sets of questions, their submission, verdicts and reports."""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_rageval import report as rag_report
from pytest_rageval.keys import (
    PROBLEM_KEY,
    QUESTION_FILE_KEY,
    QUESTION_KEY,
    RECORD_KEY,
    SET_KEY,
)
from pytest_rageval.options import Settings
from pytest_rageval.questions import DEFAULT_QUERY_ENGINE, Question, as_question
from pytest_rageval.runner import QuestionResult, Runner
from pytest_rageval.thresholds import ThresholdError, check_thresholds, merge_layers
from pytest_rageval.verdicts import (
    MetricRate,
    explain,
    metric_results,
    needs_set,
    outcome,
    question_record,
    set_rates,
)


class RagSetupError(Exception):
    """Something the user must define or fix before questions can be evaluated."""


@dataclass(eq=False)
class RagSet:
    """Questions gated together: one data file, or one parametrized test function."""

    name: str
    thresholds: dict[str, float]
    engine_fixture: str = DEFAULT_QUERY_ENGINE
    evaluator_names: tuple[str, ...] | None = None
    members: dict[str, Question] = field(default_factory=dict)
    futures: dict[str, concurrent.futures.Future[QuestionResult]] | None = None
    _rates: dict[str, MetricRate] | None = None

    def rates(self) -> dict[str, MetricRate]:
        """Pass rates over every selected question of the set (waits for all of them)."""
        if self._rates is None:
            assert self.futures is not None
            judged = [metric_results(future.result()) for future in self.futures.values()]
            self._rates = set_rates(judged, self.thresholds)
        return self._rates


class RagSession:
    """Registered as a plugin for every run; owns the runner and everything gated."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._runner: Runner | None = None
        self.records: list[dict[str, Any]] = []

    @property
    def runner(self) -> Runner:
        """The process's one runner, started on first use."""
        if self._runner is None:
            self._runner = Runner(
                self.settings.workers, timeout=self.settings.timeout, retries=self.settings.retries
            )
        return self._runner

    # -- collection: group the selected questions into sets -----------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        sets: dict[object, RagSet] = {}
        for item in session.items:
            if QUESTION_FILE_KEY in item.stash:
                question_file = item.stash[QUESTION_FILE_KEY]
                key: object = item.parent.nodeid if item.parent else item.nodeid
                rset = sets.get(key)
                if rset is None:
                    rset = sets[key] = RagSet(
                        name=str(key),
                        thresholds=self._thresholds(item, question_file.thresholds),
                        engine_fixture=question_file.query_engine,
                        evaluator_names=question_file.evaluators,
                    )
                rset.members[item.nodeid] = item.stash[QUESTION_KEY]
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
                rset = sets[key] = RagSet(
                    name=name,
                    thresholds=self._thresholds(item, question.file_thresholds),
                )
            rset.members[item.nodeid] = question
            item.stash[QUESTION_KEY] = question
            item.stash[SET_KEY] = rset

    def _thresholds(self, item: pytest.Item, file_layer: Mapping[str, float]) -> dict[str, float]:
        layers: list[Mapping[str, float]] = []
        for marker in item.iter_markers("rag_threshold"):
            where = f"@pytest.mark.rag_threshold on {item.nodeid}"
            if marker.args:
                raise pytest.UsageError(
                    f"{where}: give metrics as keywords, e.g. rag_threshold(faithfulness=0.9), "
                    f"got positional {marker.args!r}"
                )
            try:
                layers.append(check_thresholds(marker.kwargs, where))
            except ThresholdError as exc:
                raise pytest.UsageError(str(exc)) from None
        return merge_layers([*layers, file_layer, self.settings.thresholds])

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
            rset = RagSet(item.nodeid, self._thresholds(item, question.file_thresholds))
            rset.members[item.nodeid] = question
            item.stash[QUESTION_KEY] = question
            item.stash[SET_KEY] = rset
        if rset.futures is None:
            try:
                engine = self._fixture(request, rset.engine_fixture, item)
                evaluators = self._evaluators(rset, request, item)
            except RagSetupError as exc:
                item.stash[PROBLEM_KEY] = str(exc)
                return None
            rset.futures = {
                nodeid: self.runner.submit_question(engine, question, evaluators)
                for nodeid, question in rset.members.items()
            }
        return rset.futures[item.nodeid].result()

    def _fixture(self, request: pytest.FixtureRequest, name: str, item: pytest.Item) -> Any:
        try:
            return request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            where = item.nodeid.split("::", 1)[0]
            raise RagSetupError(
                f"no fixture named {name!r}, which {where} uses as its query engine; define it "
                "in a conftest.py next to that file, returning your llama-index query engine "
                "(or a callable that takes the query string)"
            ) from None

    def _evaluators(
        self, rset: RagSet, request: pytest.FixtureRequest, item: pytest.Item
    ) -> dict[str, Any]:
        evaluators = self._fixture(request, "rag_evaluators", item)
        if not isinstance(evaluators, Mapping) or not evaluators:
            raise RagSetupError(
                "the rag_evaluators fixture must return a non-empty dict of metric name -> "
                f"llama-index evaluator, got {evaluators!r}"
            )
        if rset.evaluator_names is None:
            return dict(evaluators)
        unknown = [name for name in rset.evaluator_names if name not in evaluators]
        if unknown:
            raise RagSetupError(
                f"{rset.name} asks for evaluator {unknown[0]!r}, which rag_evaluators does not "
                f"provide (it has: {', '.join(evaluators)}); fix the file's 'evaluators' list "
                "or add it to your rag_evaluators fixture"
            )
        return {name: evaluators[name] for name in rset.evaluator_names}

    # -- verdicts, applied in the call phase ---------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        if SET_KEY not in item.stash and PROBLEM_KEY not in item.stash:
            return (yield)
        if PROBLEM_KEY in item.stash:  # e.g. rag_result could not get a query engine
            self._fail_setup(item)
        try:
            result = yield
        except BaseException:
            if SET_KEY in item.stash and PROBLEM_KEY not in item.stash:
                self._judge(item, fail=False)
            raise
        if PROBLEM_KEY in item.stash:
            self._fail_setup(item)
        self._judge(item, fail=True)
        return result

    def _fail_setup(self, item: pytest.Item) -> None:
        __tracebackhide__ = True
        problem = item.stash[PROBLEM_KEY]
        question = item.stash.get(QUESTION_KEY, None)
        if question is not None and SET_KEY in item.stash:
            record = question_record(QuestionResult(question), {}, "error")
            record["error"] = problem
            self._keep(item, record)
        pytest.fail(problem, pytrace=False)

    def _judge(self, item: pytest.Item, *, fail: bool) -> None:
        __tracebackhide__ = True
        rset = item.stash[SET_KEY]
        if rset.futures is None:
            return
        result = rset.futures[item.nodeid].result()
        metrics = metric_results(result)
        question = result.question
        rates = rset.rates() if needs_set(metrics, result.error, question.must_pass) else None
        verdict = outcome(metrics, result.error, question.must_pass, rates)
        record = question_record(result, metrics, verdict)
        for name, metric in metrics.items():
            item.user_properties.append((f"rag.{name}.passing", metric.passing))
            item.user_properties.append((f"rag.{name}.score", metric.score))
        self._keep(item, record)
        if fail and verdict in ("failed", "error"):
            pytest.fail(explain(record, rates, rset.name), pytrace=False)

    def _keep(self, item: pytest.Item, record: dict[str, Any]) -> None:
        rset = item.stash[SET_KEY]
        record["set"] = rset.name
        record["thresholds"] = dict(rset.thresholds)
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

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.records:
            return
        terminalreporter.write_sep("=", "rag evaluation")
        for line in rag_report.render_table(rag_report.summarize(self.records)).splitlines():
            terminalreporter.write_line(line)
        if self.settings.report is not None and not hasattr(self.config, "workerinput"):
            terminalreporter.write_line(f"rag report written to {self.settings.report}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        path = self.settings.report
        if path is None or hasattr(self.config, "workerinput"):
            return
        document = rag_report.json_report(rag_report.summarize(self.records))
        self.config.hook.pytest_rageval_update_report(config=self.config, report=document)
        rag_report.write_json(path, document)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._runner is not None:
            self._runner.close()


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
