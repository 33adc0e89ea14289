"""The judge-corrected gate of a set with a labels file (``calibration``; no pytest here).

The set's labels file is judged by the run's own judge; per labelled metric, how the
judge did on it (:class:`~pytest_rageval.correction.Labels`: q1, q0) travels in the set's
:class:`Calibration`, beside its thresholds. A metric's rate then carries a
:class:`Calibrated` (``MetricRate.corrected``), and the gate compares the corrected rate
(:func:`pytest_rageval.correction.correct`), or with ``confidence`` its interval's lower
bound, with the threshold. The per-question verdicts stay the judge's.

Where the set's own questions carry labels of the answers the app still gives
(``labels`` and ``labelled_response_sha256`` in the data file), a metric's rate carries
an :class:`OwnLabels` instead (``MetricRate.labelled``): prediction-powered inference
(:func:`pytest_rageval.ppi.ppi_rate`, PPI++ with lambda cross-fitted on 2 folds)
is exact for that population, so it replaces the labels file's correction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_rageval.correction import (
    CONFIDENCE,
    Corrected,
    Labels,
    Uncorrectable,
    UncorrectableError,
    correct,
)
from pytest_rageval.ppi import PPIRate, ppi_rate
from pytest_rageval.stats import wilson


@dataclass(frozen=True)
class Calibrated:
    """The labels that correct one metric of a set: how the judge did on them, and the
    labels file (as messages name it) with the date it last changed."""

    labels: Labels
    file: str
    date: str | None = None

    def rate(self, passed: int, n: int, confidence: float | None) -> Corrected:
        """The corrected rate of ``passed`` of ``n`` judged passing (raises
        :class:`~pytest_rageval.correction.UncorrectableError` when the labels cannot)."""
        return correct(passed, n, self.labels, confidence or CONFIDENCE)

    @property
    def labelled(self) -> int:
        return self.labels.people_passed + self.labels.people_failed

    @property
    def labelled_passed(self) -> int:
        """How many labelled cases the judge passed."""
        labels = self.labels
        return labels.judge_passed + labels.people_failed - labels.judge_failed

    def drift(self, passed: int, n: int) -> tuple[float, float] | None:
        """The judge's pass rates on the run and on the labelled cases when their 95%
        Wilson intervals do not overlap (the answers changed kind since the labelling:
        q1 and q0 may not carry over), else None."""
        run = wilson(passed, n)
        labelled = wilson(self.labelled_passed, self.labelled)
        if run is None or labelled is None:
            return None
        if run[0] > labelled[1] or labelled[0] > run[1]:
            return passed / n, self.labelled_passed / self.labelled
        return None

    def to_json(self, passed: int, n: int, confidence: float | None) -> dict[str, Any]:
        """The report's ``corrected`` object of a rate of ``passed`` of ``n``."""
        labels = self.labels
        entry: dict[str, Any] = {
            "labels_file": self.file,
            "labels_date": self.date,
            "people_passed": labels.people_passed,
            "judge_passed": labels.judge_passed,
            "people_failed": labels.people_failed,
            "judge_failed": labels.judge_failed,
            "q1": labels.q1,
            "q0": labels.q0,
        }
        if not n:
            return {**entry, "estimate": None, "interval": None, "confidence": None}
        rate = self.rate(passed, n, confidence)
        return {
            **entry,
            "estimate": round(rate.estimate, 12),
            "interval": [round(rate.lower, 12), round(rate.upper, 12)],
            "confidence": rate.confidence,
            "q1_interval": [round(b, 12) for b in rate.q1_interval],
            "q0_interval": [round(b, 12) for b in rate.q0_interval],
        }


@dataclass(frozen=True)
class Calibration:
    """A set's labels file after the run's judge judged it: per labelled metric the set
    gates, how the judge did."""

    file: str
    date: str | None = None
    labels: Mapping[str, Labels] = field(default_factory=dict)

    def of(self, metric: str) -> Calibrated | None:
        labels = self.labels.get(metric)
        return Calibrated(labels, self.file, self.date) if labels is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "date": self.date,
            "labels": {
                metric: [c.people_passed, c.judge_passed, c.people_failed, c.judge_failed]
                for metric, c in self.labels.items()
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Calibration | None:
        if not data:
            return None
        return cls(
            data["file"],
            data.get("date"),
            {metric: Labels(*counts) for metric, counts in (data.get("labels") or {}).items()},
        )


@dataclass(frozen=True)
class OwnLabels:
    """One metric's labels on a set's own questions: (person, judge) per labelled
    question, the judge's verdicts on the rest, and the labels the app's answers no
    longer match (``stale``: ignored)."""

    pairs: tuple[tuple[bool, bool], ...]
    unlabelled: tuple[bool, ...]
    stale: int = 0

    @classmethod
    def of(cls, verdicts: Sequence[tuple[bool | None, bool]], stale: int) -> OwnLabels:
        """From (person or None, judge) per question. The labelled ones are sorted by
        (person, judge): the folds are then stratified, and the rate does not depend on
        the order the answers came in."""
        pairs = sorted((h, j) for h, j in verdicts if h is not None)
        return cls(tuple(pairs), tuple(j for h, j in verdicts if h is None), stale)

    def rate(self, confidence: float | None) -> PPIRate:
        """PPI++'s rate (raises UncorrectableError with fewer than 30 labels, or when
        every question is labelled)."""
        judge = [j for _, j in self.pairs] + list(self.unlabelled)
        human: list[bool | None] = [h for h, _ in self.pairs]
        human += [None] * len(self.unlabelled)
        if not self.unlabelled:
            raise UncorrectableError(
                Uncorrectable(
                    "too few labels",
                    "every question is labelled, so prediction-powered inference has no "
                    "unlabelled question to use the judge on; leave some unlabelled",
                    0,
                    0,
                )
            )
        return ppi_rate(judge, human, folds=2, confidence=confidence or CONFIDENCE)

    def problem(self, confidence: float | None) -> str | None:
        """Why PPI++ refuses these labels (None: it does not)."""
        try:
            self.rate(confidence)
        except UncorrectableError as exc:
            return exc.reason.message + self.dropped
        return None

    @property
    def dropped(self) -> str:
        if not self.stale:
            return ""
        return (
            f" ({self.stale} label{'s' if self.stale != 1 else ''} ignored: the app's "
            "answer changed since the labelling)"
        )

    def to_json(self, confidence: float | None) -> dict[str, Any]:
        """The report's ``corrected`` object (``method: ppi++``)."""
        entry: dict[str, Any] = {
            "method": "ppi++",
            "labelled": len(self.pairs),
            "unlabelled": len(self.unlabelled),
            "stale_labels": self.stale,
            "people_passed": sum(h for h, _ in self.pairs),
        }
        try:
            rate = self.rate(confidence)
        except UncorrectableError as exc:
            problem = exc.reason.message + self.dropped
            return {**entry, "estimate": None, "interval": None, "problem": problem}
        return {
            **entry,
            "estimate": round(rate.estimate, 12),
            "interval": [round(rate.lower, 12), round(rate.upper, 12)],
            "confidence": rate.confidence,
            "lambda": round(rate.lam, 12),
            "folds": rate.folds,
        }
