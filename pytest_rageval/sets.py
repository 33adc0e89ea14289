"""Forming the run's sets from the collected items, each with its gate: markers (closest
first) > data file > ini > defaults. A set is gated on all its questions, so it is
submitted as a whole and its questions' outcomes wait on each other (``RagSet``)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_rageval.baseline import BaselineSet
from pytest_rageval.calibration import SEQUENTIAL_REFUSED, LabelsFile, open_labels
from pytest_rageval.gate import Gate, MetricRate, Tally, newly_failing, outcome
from pytest_rageval.gate.sampled import Sampling
from pytest_rageval.keys import PROBLEM_KEY, QUESTION_FILE_KEY, QUESTION_KEY
from pytest_rageval.questions import DEFAULT_QUERY_ENGINE, Question, as_question
from pytest_rageval.questions.labels import CalibrationError
from pytest_rageval.results import QuestionResult
from pytest_rageval.settings import Settings
from pytest_rageval.thresholds import Layer, ThresholdError, check_layer, merge_layers
from pytest_rageval.verdicts import MetricResult, Outcome, QuestionRecord, metric_results


@dataclass(eq=False)
class RagSet:
    """Questions gated together: one data file, or one parametrized test function."""

    name: str
    gate: Gate
    named: dict[str, str] = field(default_factory=dict)
    """Metric -> where a marker or the data file set its threshold (to catch typos)."""
    repeat: int = 1
    base: BaselineSet | None = None
    """What the baseline report says of this set (None: no baseline, or not in it)."""
    labels: LabelsFile | None = None
    """Its ``calibration`` labels file (judged when the set is submitted)."""
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
    judged: dict[str, dict[str, MetricResult]] = field(default_factory=dict)
    """Each finished question's metric results, worked out once as its result came in."""
    problem: str | None = None
    """Why none of the set's questions can be evaluated (e.g. no metric applies)."""
    setup_error: str | None = None
    """Why its questions were never asked when a fixture they need raised (the items fail
    with the fixture's own traceback; this is what the summary and the report say)."""
    metrics: tuple[str, ...] = ()
    applicable: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tally: Tally | None = None
    sampling: Sampling | None = None
    """A sequential set's decision (``sample: sequential``), fed as results come in."""
    skipped: set[str] = field(default_factory=set)
    """A sequential set's questions never asked: it was decided before their turn."""
    changed: threading.Condition = field(default_factory=threading.Condition)

    def finished(self, nodeid: str, result: QuestionResult) -> None:
        """A question's result is in (called on the runner's loop thread)."""
        metrics = metric_results(result)
        with self.changed:
            self.results[nodeid] = result
            self.judged[nodeid] = metrics
            if self.sampling is not None:
                self.sampling.add(result.question.id, metrics, result.error)
            else:
                assert self.tally is not None
                self.tally.add(metrics)
            self.changed.notify_all()

    def sample(self, applicable: Mapping[str, tuple[str, ...]]) -> list[str]:
        """Start a sequential set's decision; its questions in the order to ask them:
        ``must_pass`` ones first (always asked), then the visiting order."""
        by_id = {question.id: nodeid for nodeid, question in self.members.items()}
        must_pass = [nodeid for nodeid, question in self.members.items() if question.must_pass]
        self.sampling = Sampling(
            self.name,
            self.gate,
            {self.members[nodeid].id: names for nodeid, names in applicable.items()},
            [self.members[nodeid].id for nodeid in must_pass],
        )
        return must_pass + [
            by_id[qid] for qid in self.sampling.order if by_id[qid] not in must_pass
        ]

    def wanted(self, nodeid: str) -> bool:
        """Whether the question is still to be asked (a sequential set may be decided)."""
        with self.changed:
            return self.sampling is None or self.sampling.wanted(self.members[nodeid].id)

    def withdrawn(self, nodeid: str) -> None:
        """A question of a decided sequential set that will not be asked."""
        with self.changed:
            self.skipped.add(nodeid)
            self.changed.notify_all()

    def tag(self, record: QuestionRecord) -> QuestionRecord:
        """``record`` with what reports group it by (its set; the set's gate travels once,
        beside the records) and what the baseline said of it."""
        record["set"] = self.name
        record["baseline"] = self.base.results.get(record["id"]) if self.base else None
        return record

    def newly(self, question_id: str, metrics: Mapping[str, MetricResult]) -> frozenset[str]:
        """The metrics this question fails and did not fail in the baseline (for the drop
        gate; empty without one)."""
        if self.base is None or not self.gate.drops:
            return frozenset()
        return newly_failing(metrics, self.base.results.get(question_id))

    def unfinished(self) -> int:
        """Its questions still waiting for a result (read under the lock the runner's
        loop thread writes them under)."""
        with self.changed:
            return len(self.members) - len(self.results) - len(self.skipped)

    def result(self, nodeid: str) -> tuple[QuestionResult | None, dict[str, MetricResult]]:
        """The question's result and its metric results, waiting for them (None: a
        question a sequential set did not ask)."""
        with self.changed:
            while nodeid not in self.results and nodeid not in self.skipped:
                self.changed.wait()
            if nodeid in self.skipped:
                return None, {}
            return self.results[nodeid], self.judged[nodeid]

    def skipped_reason(self) -> str:
        with self.changed:
            assert self.sampling is not None
            return self.sampling.skipped_reason()

    def decide(
        self, metrics: Mapping[str, MetricResult], newly: frozenset[str] = frozenset()
    ) -> tuple[Outcome, dict[str, MetricRate]]:
        """The outcome of a question that failed a metric, as soon as the set's rates make
        it certain, with the rates it was decided on."""
        with self.changed:
            if self.sampling is not None:
                return self._decide_sampled(metrics, newly)
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

    def _decide_sampled(
        self, metrics: Mapping[str, MetricResult], newly: frozenset[str]
    ) -> tuple[Outcome, dict[str, MetricRate]]:
        """:meth:`decide` of a sequential set: once the set is decided (or every question
        is in), by its decisions. Called under the lock."""
        assert self.sampling is not None
        while self.sampling.decision is None and (
            len(self.results) + len(self.skipped) < len(self.members)
        ):
            self.changed.wait()
        rates = self.gate.sampled_rates(self.sampling, bounds=False)
        return outcome(metrics, None, False, rates, newly), rates


SET_KEY: pytest.StashKey[RagSet] = pytest.StashKey()
"""The set of a question's item."""


def form_sets(items: Iterable[pytest.Item], settings: Settings) -> list[RagSet]:
    """The run's sets, in the order their first items run: a data file's questions, or a
    Python test function's (per value of its other parameters). Each item's question
    and set go into its stash; an item whose ``rag_question`` is not a question gets
    the reason instead."""
    sets: dict[object, RagSet] = {}
    for item in items:
        if QUESTION_FILE_KEY in item.stash:
            question_file = item.stash[QUESTION_FILE_KEY]
            key: object = item.parent.nodeid if item.parent else item.nodeid
            rset = sets.get(key)
            if rset is None:
                rset = sets[key] = new_set(str(key), item, question_file.gate, settings)
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
            rset = sets[key] = new_set(name, item, question.file_gate, settings)
        rset.members[item.nodeid] = question
        rset.items.append(item)
        item.stash[QUESTION_KEY] = question
        item.stash[SET_KEY] = rset
    found = list(sets.values())
    for index, rset in enumerate(found):
        rset.index = index
    return found


def new_set(name: str, item: pytest.Item, file_layer: Layer, settings: Settings) -> RagSet:
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
    thresholds = merge_layers([*(layer.thresholds for layer in layers), settings.thresholds])
    base = settings.baseline.sets.get(name) if settings.baseline is not None else None
    sample = str(options.get("sample", settings.sample) or "all")
    gate = Gate(
        thresholds,
        max_invalid=options.get("max_invalid", settings.max_invalid),
        max_drop=options.get("max_drop", settings.max_drop),
        confidence=options.get("confidence", settings.confidence),
        baselines=base.rates if base is not None else None,
        sample="all" if settings.sample_forced else sample,
        seed=settings.seed,
    )
    labels = _labels_file(name, item, layers, settings)
    if labels is not None and gate.sequential:
        raise pytest.UsageError(f"{name}: {SEQUENTIAL_REFUSED}")
    return RagSet(
        name,
        gate,
        named=named,
        repeat=int(options.get("repeat", settings.repeat)),
        base=base,
        labels=labels,
    )


def _labels_file(
    name: str, item: pytest.Item, layers: list[Layer], settings: Settings
) -> LabelsFile | None:
    """The set's ``calibration`` labels file: the closest layer's (a marker's is relative
    to its test file, a data file's already to that file), else the ini's."""
    for layer in layers:
        value = layer.options.get("calibration")
        if value is not None:
            path, where = item.path.parent / value, layer.where
            break
    else:
        if settings.calibration is None:
            return None
        path, where = settings.calibration, settings.calibration_where
    try:
        display = str(Path(path).resolve().relative_to(item.config.rootpath))
    except ValueError:
        display = str(path)
    try:
        return open_labels(Path(path), display, where)
    except CalibrationError as exc:
        raise pytest.UsageError(f"{name}: {exc}") from None


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
