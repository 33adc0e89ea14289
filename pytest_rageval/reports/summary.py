"""Sets as reported: question records grouped by set, their rates and verdicts, and
their comparison with a baseline (no pytest here). Every format renders from these."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_rageval.baseline import Baseline, SetChange, compare_set
from pytest_rageval.correction import Labels
from pytest_rageval.gate import Gate, MetricRate, fell_more, row_verdicts, unheld
from pytest_rageval.gate.corrected import Calibration
from pytest_rageval.gate.sampled import Sampling
from pytest_rageval.retry import cause
from pytest_rageval.stats import detectable_drop
from pytest_rageval.verdicts import MetricResult
from pytest_rageval.wording import describe_drop, describe_rate, format_fraction


@dataclass
class SetSummary:
    """One gated set as reported: its gate, and its questions' records."""

    name: str
    gate: Gate
    questions: list[dict[str, Any]] = field(default_factory=list)
    """Its questions' records (``QuestionRecord``)."""

    @functools.cached_property
    def judged(self) -> list[dict[str, MetricResult]]:
        return [
            {name: MetricResult.from_json(metric) for name, metric in record["metrics"].items()}
            for record in self.questions
        ]

    @functools.cached_property
    def sampling(self) -> Sampling | None:
        """A sequential set's decision, replayed from its records (None: every question
        was judged)."""
        return self.gate.sampling(self.name, self.questions) if self.gate.sequential else None

    @functools.cached_property
    def rates(self) -> dict[str, MetricRate]:
        """Rates over ``questions`` (computed once: read them after they are all in)."""
        if self.sampling is not None:
            return self.gate.sampled_rates(self.sampling)
        return self.gate.rates(self.judged)

    def verdicts(self) -> dict[str, str]:
        """Each metric's verdict, as the table shows it."""
        return row_verdicts(self.rates, self.questions)

    def unheld(self) -> list[str]:
        """Why the set fails where no question of it failed through the metric (a
        confidence bound or a drop with nothing newly failing): the run fails as a whole."""
        reasons = []
        for name in unheld(self.rates, self.verdicts(), self.questions):
            rate = self.rates[name]
            why = (
                describe_drop(self.name, name, rate)
                if rate.dropped and rate.ok
                else describe_rate(self.name, name, rate)
            )
            reasons.append(f"{why}, and no question failed it: the set fails the run")
        return reasons

    def detectable(self, metric: str) -> float | None:
        """The smallest drop this set detects in ``metric`` (80% power, 5% level), from
        the baseline's rate, or the threshold without one."""
        rate = self.rates[metric]
        p0 = (self.gate.baselines or {}).get(metric)
        return detectable_drop(rate.n, rate.threshold if p0 is None else p0)

    def calibration_notices(self) -> list[str]:
        """A warning per corrected metric whose judge pass rate on the run lies outside
        what its rate on the labelled cases allows (95% Wilson intervals apart): the
        answers may have changed kind since the labelling, and q1, q0 with them."""
        notices = []
        for name, rate in self.rates.items():
            labelled = rate.labelled
            if labelled is not None and not rate.pending:
                problem = labelled.problem(rate.confidence)
                if problem is not None:
                    notices.append(f"{self.name} {name}: {problem}")
                elif labelled.stale:
                    notices.append(
                        f"{self.name} {name}: {labelled.stale} of its questions' labels "
                        "ignored: the app's answer changed since the labelling (relabel "
                        "them with the new answer's labelled_response_sha256)"
                    )
                continue
            if rate.corrected is None or rate.pending:
                continue
            apart = rate.corrected.drift(rate.passed, rate.n)
            if apart is not None:
                notices.append(
                    f"{self.name} {name}: the judge passes {apart[0]:.0%} of this run's "
                    f"answers and {apart[1]:.0%} of the labelled cases in "
                    f"{rate.corrected.file} (their 95% intervals do not overlap): the "
                    "answers may have changed since the labelling, so its q1 and q0 may "
                    "not hold for them; label some of this run's answers "
                    "(rageval calibrate --suggest N)"
                )
        return notices

    @property
    def problem(self) -> str | None:
        """Why nothing of the set was judged, when that is so."""
        if self.rates:
            return None
        errors = [record["error"] for record in self.questions if record["error"]]
        return errors[0] if errors else "no metric applied to any question"


def summarize(
    records: Iterable[Mapping[str, Any]], gates: Mapping[str, Gate], *, copy: bool = True
) -> list[SetSummary]:
    """Group question records by set, sets by name (the same order whatever the order
    their questions finished in, with or without pytest-xdist), each with its gate.
    ``copy=False``: the records are the caller's to give away (``rageval merge``'s
    100,000): each is kept itself, its ``set`` taken out, rather than copied."""
    sets: dict[str, SetSummary] = {}
    for record in records:
        name = record["set"]
        summary = sets.get(name)
        if summary is None:
            summary = sets[name] = SetSummary(name, gates.get(name, Gate()))
        if not copy and isinstance(record, dict):
            del record["set"]
            summary.questions.append(record)
        else:
            summary.questions.append({k: v for k, v in record.items() if k != "set"})
    return sorted(sets.values(), key=lambda summary: summary.name)


def changes_of(summaries: Iterable[SetSummary], baseline: Baseline) -> dict[str, SetChange]:
    """Each set of this run against the baseline."""
    return {
        summary.name: compare_set(
            summary.name,
            {name: rate.pass_rate for name, rate in summary.rates.items()},
            summary.questions,
            baseline,
        )
        for summary in summaries
    }


def error_causes(summaries: Iterable[SetSummary]) -> Counter[str]:
    """Questions that errored, counted by what went wrong (attempt counts left out)."""
    causes: Counter[str] = Counter()
    for summary in summaries:
        for record in summary.questions:
            if record["outcome"] == "error" and record["error"]:
                causes[cause(record["error"])] += 1
    return causes


def _calibration_of(metrics: Mapping[str, Any]) -> Calibration | None:
    """The labels that corrected a saved report's metrics (None: no metric corrected)."""
    found = {name: rate["corrected"] for name, rate in metrics.items() if rate.get("corrected")}
    if not found:
        return None
    first = next(iter(found.values()))
    keys = ("people_passed", "judge_passed", "people_failed", "judge_failed")
    return Calibration(
        first["labels_file"],
        first.get("labels_date"),
        {name: Labels(*(int(entry[key]) for key in keys)) for name, entry in found.items()},
    )


CAUSE_PREFIX = "errors by cause: "
"""How a notice that counts errors of one cause begins (the terminal lists them apart)."""


def erring_causes(summaries: Iterable[SetSummary]) -> list[str]:
    """``3 x TimeoutError: ...``: questions that errored, by cause, most first (sets
    judged on nothing are left out: their one problem is said on its own)."""
    causes = error_causes(s for s in summaries if s.problem is None)
    return [f"{count} x {text}" for text, count in causes.most_common()]


def weak_gates(summaries: Iterable[SetSummary]) -> list[str]:
    """Warnings for sets too small for their ``max_drop``: the smallest drop they detect
    (80% power, 5% level) is larger."""
    found: list[str] = []
    for summary in summaries:
        max_drop = summary.gate.max_drop
        if max_drop is None:
            continue
        for metric, rate in summary.rates.items():
            drop = summary.detectable(metric)
            if drop is None:
                found.append(
                    f"{summary.name} has {_questions(rate.n)} for {metric}: too few to detect "
                    f"any drop, whatever max_drop ({format_fraction(max_drop)}) says"
                )
            elif fell_more(drop, max_drop):
                found.append(
                    f"{summary.name} has {_questions(rate.n)}: it can only detect drops of "
                    f"{format_fraction(drop)} or more in {metric} (max_drop "
                    f"{format_fraction(max_drop)})"
                )
    return found


def drop_notes(summaries: Iterable[SetSummary]) -> list[str]:
    """Why a row reads ``FAILED (drop)`` beside ``within noise``: ``max_drop`` is a fixed
    bound on the fall, and the p-value only says whether the flips could be noise."""
    notes: list[str] = []
    for summary in summaries:
        verdicts = summary.verdicts()
        for metric, rate in summary.rates.items():
            if verdicts[metric] != "FAILED (drop)" or rate.baseline is None:
                continue
            fell = rate.baseline - (rate.pass_rate or 0.0)
            notes.append(
                f"{summary.name} {metric}: FAILED (drop) because the pass rate fell "
                f"{format_fraction(fell)} below the baseline's {format_fraction(rate.baseline)}"
                f", more than max_drop {format_fraction(rate.max_drop)}: a fixed bound, held "
                "whatever the p-value; the change column's p-value only says whether the "
                "flips could be judge noise"
            )
    return notes


def warnings(summaries: Iterable[SetSummary], notices: Iterable[str]) -> list[str]:
    """Every warning of a run, as the terminal prints it and every report holds it: the
    session's notices (the runner, the cache, unused ini thresholds), sets too small for
    their ``max_drop``, and what a failed drop means."""
    summaries = list(summaries)
    found = list(notices)
    found += [w for w in (*weak_gates(summaries), *drop_notes(summaries)) if w not in found]
    return found


def run_notices(summaries: Iterable[SetSummary], notices: Iterable[str]) -> list[str]:
    """A report's ``notices``: the errors by cause, then :func:`warnings`."""
    summaries = list(summaries)
    causes = [CAUSE_PREFIX + line for line in erring_causes(summaries)]
    return [*causes, *warnings(summaries, notices)]


def summaries_from_document(document: Mapping[str, Any]) -> list[SetSummary]:
    """The sets of a saved ``--rag-report`` document, as the run that wrote it had them."""
    summaries = []
    for entry in document.get("sets", []):
        metrics = entry.get("metrics", {})
        written: Mapping[str, Any] = next(iter(metrics.values()), {})
        base = entry.get("baseline")
        gate = Gate(
            {name: rate["threshold"] for name, rate in metrics.items()},
            max_invalid=written.get("max_invalid"),
            max_drop=written.get("max_drop"),
            confidence=written.get("confidence"),
            baselines=(
                {
                    name: change.get("baseline_pass_rate")
                    for name, change in base.get("metrics", {}).items()
                }
                if base and base.get("found")
                else None
            ),
            calibration=_calibration_of(metrics),
        )
        summaries.append(SetSummary(entry["id"], gate, list(entry.get("questions", []))))
    return summaries


def _questions(n: int) -> str:
    return "1 question" if n == 1 else f"{n} questions"
