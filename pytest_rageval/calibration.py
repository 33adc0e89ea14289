"""A set's labels file in the run: loaded once, judged once by the run's own judge (on
the runner, through the verdict cache), and turned into the set's
:class:`~pytest_rageval.gate.corrected.Calibration` (the gate corrects its rates with it).

Where a set's ``calibration`` comes from: ``rag_threshold(calibration=...)`` (relative to
the test file), a data file's ``calibration:`` key (relative to that file), the ini's
``rag_calibration`` (relative to the ini file); the closest wins, as for thresholds.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_rageval import judges
from pytest_rageval.correction import Labels, check_labels
from pytest_rageval.gate.corrected import Calibration
from pytest_rageval.questions import Question
from pytest_rageval.questions.labels import CalibrationError, Case, load_labels
from pytest_rageval.runner import Answered, QuestionResult, Runner
from pytest_rageval.verdicts import metric_results

SEQUENTIAL_REFUSED = (
    "calibration cannot be combined with sample: sequential: the sequential test bounds "
    "the judge's pass rate of the whole set, while a corrected rate also carries the "
    "uncertainty of q1 and q0, measured on the labels, which that test does not account "
    "for, so its guarantee would not hold; judge the calibrated set in full (sample: all)"
)


@dataclass(frozen=True)
class LabelsFile:
    """A set's labels file, loaded: its cases, and where it was named."""

    path: Path
    display: str
    """The file as messages and reports name it (relative to the rootdir when inside)."""
    where: str
    """What named it (a marker, a data file, the ini)."""
    cases: tuple[Case, ...]
    date: str | None
    """The day the file last changed (ISO), for the reports."""


_loaded: dict[tuple[Path, int, int], LabelsFile] = {}
_loaded_lock = threading.Lock()


def open_labels(path: Path, display: str, where: str) -> LabelsFile:
    """The labels file at ``path`` (loaded once per version of it); CalibrationError
    names what named it, the file and the line."""
    try:
        stat = path.stat()
    except OSError:
        raise CalibrationError(
            f"{where} names calibration file {display}, which does not exist; write the "
            "cases people labelled there (rageval calibrate --suggest N writes a template)"
        ) from None
    key = (path.resolve(), stat.st_mtime_ns, stat.st_size)
    with _loaded_lock:
        found = _loaded.get(key)
    if found is not None:
        return found
    try:
        cases = load_labels(path, display)
    except CalibrationError as exc:
        raise CalibrationError(f"{exc} (the calibration file {where} names)") from None
    date = datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc).date().isoformat()
    loaded = LabelsFile(path, display, where, tuple(cases), date)
    with _loaded_lock:
        _loaded[key] = loaded
    return loaded


@dataclass(frozen=True)
class Judged:
    """The labels file as one set's judge judged it: per labelled metric the set has, how
    the judge did (or why it could not be judged), and the labelled metrics it lacks."""

    labels: Mapping[str, Labels]
    unused: tuple[str, ...]
    problem: str | None = None


class Judging:
    """Judges labels files on the run's runner, once per file, judge and ``repeat``
    (a second set with the same file and evaluators reuses the verdicts)."""

    def __init__(self) -> None:
        self._done: dict[tuple[object, ...], Mapping[str, Labels] | str] = {}

    def calibrate(
        self,
        labels: LabelsFile,
        evaluators: Mapping[str, Any],
        runner: Runner,
        wait: Callable[..., Any],
        *,
        name: str,
        repeat: int = 1,
    ) -> tuple[Calibration | None, str | None, list[str]]:
        """The set's calibration, or why it cannot have one (the set errors with it), and
        its notices (labelled metrics the set does not gate)."""
        labelled = list(dict.fromkeys(m for case in labels.cases for m in case.labels))
        metrics = [m for m in evaluators if m in labelled]
        unused = [m for m in labelled if m not in evaluators]
        notices = []
        if unused:
            notices.append(
                f"{labels.display} labels {', '.join(map(repr, unused))}, which {name} does "
                "not gate: those labels are unused"
            )
        if not metrics:
            return (
                None,
                f"{labels.where} names calibration file {labels.display}, which labels no "
                f"metric of {name} (it labels {', '.join(labelled)}; the set's metrics are "
                f"{', '.join(evaluators)})",
                notices,
            )
        key = (
            labels.path,
            labels.date,
            len(labels.cases),
            repeat,
            *((m, id(evaluators[m])) for m in metrics),
        )
        judged = self._done.get(key)
        if judged is None:
            judged = _judge(labels, {m: evaluators[m] for m in metrics}, runner, wait, repeat)
            self._done[key] = judged
        if isinstance(judged, str):
            return None, judged, notices
        for metric, counts in judged.items():
            reason = check_labels(counts)
            if reason is not None:
                return (
                    None,
                    f"{name}: {metric} cannot be corrected with {labels.display}: {reason.message}",
                    notices,
                )
        return Calibration(labels.display, labels.date, dict(judged)), None, notices


def _judge(
    labels: LabelsFile,
    evaluators: Mapping[str, Any],
    runner: Runner,
    wait: Callable[..., Any],
    repeat: int,
) -> Mapping[str, Labels] | str:
    """Judge each labelled case with the set's evaluators of the metrics it labels, as
    the gate judges an answer (an invalid verdict does not pass); the judge's counts per
    metric, or why a case could not be judged."""
    cases: Sequence[Case] = labels.cases
    futures: list[concurrent.futures.Future[QuestionResult | BaseException | None]] = []
    for case in cases:
        wanted = {m: ev for m, ev in evaluators.items() if m in case.labels}
        future: concurrent.futures.Future[QuestionResult | BaseException | None] = (
            concurrent.futures.Future()
        )
        futures.append(future)
        if not wanted:
            future.set_result(None)
            continue
        question = Question(query=case.query, reference=case.reference, contexts=None)
        contexts = list(case.contexts) if case.contexts is not None else None
        runner.submit_questions(
            None,
            [(future, question)],
            wanted,
            lambda key, outcome: key.set_result(outcome),
            repeat=repeat,
            answers=[Answered(case.response, contexts)],
        )
    pairs: dict[str, list[tuple[bool, bool]]] = {m: [] for m in evaluators}
    for case, future in zip(cases, futures, strict=True):
        outcome = wait(future.result)
        labelled = [m for m in evaluators if m in case.labels]
        if not labelled:
            continue
        if not isinstance(outcome, QuestionResult):
            why = "cancelled" if outcome is None else f"{type(outcome).__name__}: {outcome}"
            return f"judging the labelled case {case.where} failed: {why}"
        results = metric_results(outcome)
        for metric in labelled:
            result = results.get(metric)
            if result is None:  # not applicable: it lacks what the evaluator needs
                lacks = judges.needs(evaluators[metric], outcome.question) or "more"
                return f"{case.where}: {metric} cannot judge this labelled case: it needs {lacks}"
            if result.error is not None:
                return (
                    f"judging the labelled case {case.where} ({metric}) failed: {result.error}; "
                    "the correction needs every labelled case judged"
                )
            pairs[metric].append((case.labels[metric], result.passing))
    return {metric: Labels.from_pairs(found) for metric, found in pairs.items()}
