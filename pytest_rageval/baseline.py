"""Comparing a run with a baseline: an earlier ``--rag-report`` JSON (no pytest here).

Questions are matched by set id and question id. A set's id is its data file's path
from the rootdir (or ``module.py::test_name`` for a parametrized test); a question's id
is the ``id`` given in the file, else a slug of its query. Moving or renaming the file,
renaming the test, or rewording a question without an ``id`` changes them.

Per set and metric: the baseline's pass rate and the delta (between whole-set pass rates
as each run printed them), the questions that flipped pass -> fail and fail -> pass,
those apart (errored or invalid in either run), and the exact McNemar test on the flips.
New and removed questions are listed per set and never counted as flips.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_rageval.stats import McNemar, mcnemar
from pytest_rageval.text import quoted

READABLE_VERSIONS = (1,)
"""Report versions this version reads as a baseline."""

JUDGED = ("passing", "failing")
FAILING = ("failed", "tolerated", "error")
"""Outcomes of a question that fails a metric or errs: the baseline's answer is kept."""


class BaselineError(Exception):
    """A baseline that cannot be used (missing, unreadable, not a report, wrong version)."""


@dataclass(frozen=True)
class BaselineSet:
    """One set of the baseline: its printed pass rates and each question's results."""

    rates: dict[str, float | None]
    results: dict[str, dict[str, str]]
    """Question id -> metric -> passing / failing / invalid / error."""
    responses: dict[str, str | None] = field(default_factory=dict)
    """Question id -> the app's response as the baseline report holds it (shortened or
    None, as its ``--rag-report-text`` left it)."""


@dataclass(frozen=True)
class Baseline:
    path: str
    sets: dict[str, BaselineSet]

    def result(self, set_id: str, question_id: str, metric: str) -> str | None:
        """What the baseline said of one question's metric (None: not in the baseline)."""
        base = self.sets.get(set_id)
        if base is None:
            return None
        return base.results.get(question_id, {}).get(metric)


def load(path: Path, display: str | None = None) -> Baseline:
    """Read and check a baseline report; :class:`BaselineError` says what is wrong with
    it and how to fix it."""
    name = display or str(path)
    return from_document(read_document(path, name), name)


def read_document(path: Path, name: str) -> Any:
    """A report file's parsed JSON, or :class:`BaselineError` naming ``name``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(
            f"{name}: no such file; give the --rag-report JSON of an earlier run (for "
            "example the main branch's), or leave the baseline out"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{name}: cannot be read ({exc})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"{name}:{exc.lineno}: not a pytest-rageval report: invalid JSON ({exc.msg})"
        ) from None
    except RecursionError:
        raise BaselineError(
            f"{name}: not a pytest-rageval report: lists or objects nested too deeply to "
            "read (hundreds of levels inside each other); a baseline is the JSON that "
            "--rag-report writes"
        ) from None
    return document


def from_document(document: Any, name: str) -> Baseline:
    """A :class:`Baseline` from a parsed report."""
    if not isinstance(document, Mapping) or "version" not in document:
        raise BaselineError(
            f"{name}: not a pytest-rageval report (no 'version'); a baseline is the JSON "
            "that --rag-report writes"
        )
    version = document["version"]
    if isinstance(version, bool) or version not in READABLE_VERSIONS:  # True == 1
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise BaselineError(
            f"{name}: report version {quoted(version)}, and this pytest-rageval reads version "
            f"{readable}; write the baseline again with this version"
        )
    sets = document.get("sets")
    if not isinstance(sets, list):
        raise BaselineError(f"{name}: 'sets' must be a list")
    found: dict[str, BaselineSet] = {}
    for index, entry in enumerate(sets):
        where = f"{name}: sets[{index}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            raise BaselineError(f"{where} has no 'id'")
        metrics = entry.get("metrics")
        questions = entry.get("questions")
        if not isinstance(metrics, Mapping) or not isinstance(questions, list):
            raise BaselineError(f"{where} needs 'metrics' (an object) and 'questions' (a list)")
        for metric, rate in metrics.items():
            _check_numbers(rate, f"{where}.metrics[{quoted(metric)}]", RATE_NUMBERS)
        compared = entry.get("baseline")
        if isinstance(compared, Mapping) and isinstance(compared.get("metrics"), Mapping):
            for metric, change in compared["metrics"].items():
                _check_numbers(
                    change, f"{where}.baseline.metrics[{quoted(metric)}]", CHANGE_NUMBERS
                )
        rates = {str(metric): _rate(rate.get("pass_rate")) for metric, rate in metrics.items()}
        results: dict[str, dict[str, str]] = {}
        responses: dict[str, str | None] = {}
        for number, question in enumerate(questions):
            if not isinstance(question, Mapping) or not isinstance(question.get("id"), str):
                raise BaselineError(f"{where}.questions[{number}] has no 'id'")
            judged = question.get("metrics") or {}
            if not isinstance(judged, Mapping):
                raise BaselineError(f"{where}.questions[{number}].metrics must be an object")
            for metric, value in judged.items():
                _check_numbers(
                    value, f"{where}.questions[{number}].metrics[{quoted(metric)}]", SCORE
                )
            results[question["id"]] = {
                str(metric): str(value.get("result"))
                for metric, value in judged.items()
                if isinstance(value, Mapping)
            }
            response = question.get("response")
            responses[question["id"]] = response if isinstance(response, str) else None
        found[entry["id"]] = BaselineSet(rates, results, responses)
    return Baseline(name, found)


def _rate(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


_FRACTION = ("a number from 0 to 1", 0.0, 1.0)
_COUNT = ("a whole number >= 0", 0.0, math.inf)
RATE_NUMBERS = {
    "n": _COUNT,
    "passed": _COUNT,
    "failed": _COUNT,
    "invalid": _COUNT,
    "errors": _COUNT,
    "pass_rate": _FRACTION,
    "threshold": _FRACTION,
    "max_invalid": _FRACTION,
    "max_drop": _FRACTION,
    "confidence": _FRACTION,
    "detectable_drop": _FRACTION,
}
"""The numbers of a set's metric in a report: what each must be (when not null)."""
CHANGE_NUMBERS = {
    "baseline_pass_rate": _FRACTION,
    "delta": ("a number from -1 to 1", -1.0, 1.0),
    "p_value": _FRACTION,
}
SCORE = {"score": ("a finite number", -math.inf, math.inf)}


def _check_numbers(
    value: object, where: str, numbers: Mapping[str, tuple[str, float, float]]
) -> None:
    """BaselineError unless ``value`` is an object whose ``numbers`` are each null or a
    number of their kind: a NaN, an infinity or a string there (a hand-edited report)
    would otherwise hang the drop gate or crash the reports."""
    if not isinstance(value, Mapping):
        raise BaselineError(f"{where} must be an object, got {quoted(value)}")
    for key, (kind, low, high) in numbers.items():
        number = value.get(key)
        if number is None:
            continue
        if (
            isinstance(number, bool)
            or not isinstance(number, (int, float))
            or not (math.isfinite(number) and low <= number <= high)
            or (kind is _COUNT[0] and number != int(number))
        ):
            raise BaselineError(
                f"{where}.{key} is {quoted(number)}, and it must be {kind} (or null); write "
                "the report again with pytest --rag-report"
            )
    interval = value.get("interval")
    if interval is not None and not (
        isinstance(interval, list)
        and len(interval) == 2
        and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0
            for x in interval
        )
    ):
        raise BaselineError(
            f"{where}.interval is {quoted(interval)}, and it must be two numbers from 0 to 1 "
            "(or null); write the report again with pytest --rag-report"
        )


@dataclass(frozen=True)
class Flip:
    """A question whose verdict on one metric changed, with what the judge says now."""

    id: str
    feedback: str | None = None


@dataclass(frozen=True)
class MetricChange:
    metric: str
    rate: float | None
    baseline_rate: float | None
    worse: list[Flip]
    """Passed in the baseline, fails now."""
    better: list[Flip]
    """Failed in the baseline, passes now."""
    apart: list[str]
    """In both runs, but errored or invalid in either: left out of the test."""
    test: McNemar

    @property
    def delta(self) -> float | None:
        if self.rate is None or self.baseline_rate is None:
            return None
        return self.rate - self.baseline_rate

    def to_json(self) -> dict[str, Any]:
        return {
            "baseline_pass_rate": self.baseline_rate,
            # a difference of two rates: rounded, so that 0.8 - 0.9 reads -0.1
            "delta": None if self.delta is None else round(self.delta, 12),
            "pass_to_fail": [flip.id for flip in self.worse],
            "fail_to_pass": [flip.id for flip in self.better],
            "apart": list(self.apart),
            "p_value": self.test.p_value,
            "change": self.test.change,
        }


@dataclass(frozen=True)
class SetChange:
    """One set of this run against the baseline (``found`` False: no baseline for it)."""

    id: str
    found: bool
    new: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    metrics: dict[str, MetricChange] = field(default_factory=dict)
    responses: dict[str, str | None] = field(default_factory=dict)
    """The baseline's response to each question that flipped or fails a metric now, so a
    reviewer reads the two answers side by side."""

    def to_json(self) -> dict[str, Any]:
        return {
            "found": self.found,
            "new": list(self.new),
            "removed": list(self.removed),
            "metrics": {name: change.to_json() for name, change in self.metrics.items()},
            "responses": dict(self.responses),
        }


def compare_set(
    set_id: str,
    rates: Mapping[str, float | None],
    questions: Iterable[Mapping[str, Any]],
    baseline: Baseline,
) -> SetChange:
    """One set of this run (its printed pass rates and question records) against the
    baseline."""
    base = baseline.sets.get(set_id)
    if base is None:
        return SetChange(set_id, found=False)
    records = {record["id"]: record for record in questions}
    new = [qid for qid in records if qid not in base.results]
    removed = [qid for qid in base.results if qid not in records]
    metrics: dict[str, MetricChange] = {}
    for metric, rate in rates.items():
        if metric not in base.rates:
            continue  # a metric the baseline did not judge: nothing to compare
        worse: list[Flip] = []
        better: list[Flip] = []
        apart: list[str] = []
        for qid, record in records.items():
            now = record.get("metrics", {}).get(metric)
            before = base.results.get(qid, {}).get(metric)
            if now is None or before is None:
                continue
            if now.get("result") not in JUDGED or before not in JUDGED:
                apart.append(qid)
            elif before == "passing" and now["result"] == "failing":
                worse.append(Flip(qid, now.get("feedback")))
            elif before == "failing" and now["result"] == "passing":
                better.append(Flip(qid, now.get("feedback")))
        metrics[metric] = MetricChange(
            metric,
            rate,
            base.rates.get(metric),
            worse,
            better,
            apart,
            mcnemar(len(worse), len(better)),
        )
    flipped = {flip.id for change in metrics.values() for flip in (*change.worse, *change.better)}
    shown = {
        qid: base.responses.get(qid)
        for qid, record in records.items()
        if qid in base.results and (qid in flipped or record.get("outcome") in FAILING)
    }
    return SetChange(set_id, True, new, removed, metrics, shown)


def compare(report: Mapping[str, Any], baseline: Baseline) -> dict[str, SetChange]:
    """Every set of a report document (as ``--rag-report`` writes it) against the
    baseline, by set id."""
    changes: dict[str, SetChange] = {}
    for entry in report.get("sets", []):
        rates = {name: rate.get("pass_rate") for name, rate in entry["metrics"].items()}
        changes[entry["id"]] = compare_set(entry["id"], rates, entry["questions"], baseline)
    return changes
