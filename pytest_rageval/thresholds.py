"""Minimum pass rates per metric: validation and precedence (no pytest here)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_rageval.text import quoted

DEFAULT_THRESHOLD = 1.0
"""Used for a metric no marker, data file or ini line names: every question must pass."""


GATE_OPTIONS = ("max_invalid", "max_drop", "confidence", "repeat", "sample", "calibration")
"""Keywords of ``rag_threshold`` and keys beside a data file's thresholds that are not
metric names: ``max_invalid`` is the most invalid judgements a set's metric may have, as a
fraction of its questions; ``max_drop`` the most a pass rate may fall below the baseline's;
``confidence`` gates thresholds on the lower bound of the pass rate's Wilson interval at
that level (e.g. 0.95); ``repeat`` is how many times each evaluator judges each answer
(the verdict is the votes' majority); ``sample`` is ``all`` (judge every question) or
``sequential`` (judge questions in a random order until the set's verdict is certain);
``calibration`` names a labels file that corrects the judge's pass rates
(:mod:`pytest_rageval.gate.corrected`)."""

SAMPLES = ("all", "sequential")


@dataclass(frozen=True)
class Layer:
    """One source of gate settings: metric thresholds, gate options, and where they were
    written (for messages)."""

    thresholds: Mapping[str, float] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""


class ThresholdError(ValueError):
    """A threshold that is not a number in [0, 1]; the message says where it came from."""


def check_threshold(metric: str, value: object, where: str) -> float:
    """Return ``value`` as a float in [0, 1], or raise :class:`ThresholdError` naming ``where``."""
    if not isinstance(metric, str) or not metric.strip():
        raise ThresholdError(
            f"{where}: metric names must be non-empty strings, got {quoted(metric)}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ThresholdError(
            f"{where}: threshold for {quoted(metric)} must be a number in [0, 1] "
            f"(a minimum pass rate such as 0.9), got {quoted(value)}"
        )
    rate = float(value)
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise ThresholdError(
            f"{where}: threshold for {quoted(metric)} must be in [0, 1] "
            f"(a fraction: 0.9 means 90% of questions must pass), got {quoted(value)}"
        )
    return rate


def check_thresholds(values: Mapping[str, object], where: str) -> dict[str, float]:
    """Validate a whole mapping of metric -> minimum pass rate."""
    return {metric: check_threshold(metric, value, where) for metric, value in values.items()}


def check_layer(values: Mapping[str, object], where: str) -> Layer:
    """Metric thresholds and gate options (``max_invalid``) from one marker or file."""
    thresholds = {k: v for k, v in values.items() if k not in GATE_OPTIONS}
    options = {k: v for k, v in values.items() if k in GATE_OPTIONS}
    return Layer(
        check_thresholds(thresholds, where),
        {name: _check_option(name, value, where) for name, value in options.items()},
        where,
    )


def _check_option(name: str, value: object, where: str) -> Any:
    if name == "repeat":
        return check_count(name, value, where)
    if name == "sample":
        return check_sample(value, where)
    if name == "calibration":
        return check_calibration(value, where)
    return check_fraction(name, value, where)


def check_sample(value: object, where: str) -> str:
    """``all`` or ``sequential``."""
    if value not in SAMPLES:
        raise ThresholdError(
            f"{where}: sample must be 'all' or 'sequential' (judge questions in a random "
            f"order until the set's verdict is certain), got {quoted(value)}"
        )
    assert isinstance(value, str)
    return value


def check_calibration(value: object, where: str) -> str:
    """The path of a labels file (as written; relative to the file that names it)."""
    if not isinstance(value, str) or not value.strip():
        raise ThresholdError(
            f"{where}: calibration must be the path of a labels file (the cases people "
            f"labelled, as rageval calibrate reads them), got {quoted(value)}"
        )
    return value.strip()


def check_count(name: str, value: object, where: str) -> int:
    """A gate option that counts (``repeat``): a whole number >= 1."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise ThresholdError(f"{where}: {name} must be a whole number >= 1, got {quoted(value)}")
    if value < 1:
        raise ThresholdError(f"{where}: {name} must be a whole number >= 1, got {quoted(value)}")
    return int(value)


def check_fraction(name: str, value: object, where: str) -> float:
    """A gate option's value: a fraction in [0, 1] (``confidence``: strictly between)."""
    if name.endswith("confidence"):
        allowed, example = "a level strictly between 0 and 1", " such as 0.95"
    else:
        allowed, example = "a fraction in [0, 1]", ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ThresholdError(f"{where}: {name} must be {allowed}{example}, got {quoted(value)}")
    number = float(value)
    bad = not 0.0 < number < 1.0 if name.endswith("confidence") else not 0.0 <= number <= 1.0
    if math.isnan(number) or bad:
        raise ThresholdError(f"{where}: {name} must be {allowed}{example}, got {quoted(value)}")
    return number


def closest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'faithfulness'?)`` when a choice is close to ``name``, else ``""``."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def parse_ini_thresholds(lines: Iterable[str], where: str) -> dict[str, float]:
    """Parse ini lines like ``faithfulness=0.9`` (blank lines and ``#`` comments ignored)."""
    result: dict[str, float] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        metric, sep, value = line.partition("=")
        if not sep:
            raise ThresholdError(
                f"{where}: expected 'metric=rate' (e.g. faithfulness=0.9), got {quoted(raw)}"
            )
        try:
            number: object = float(value.strip())
        except ValueError:
            number = value.strip()
        result[metric.strip()] = check_threshold(metric.strip(), number, where)
    return result


def merge_layers(layers: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Flatten layers, closest first, into one mapping of every metric any layer names.

    Each metric takes its value from the closest layer that names it: markers
    (closest first), then the data file, then the ini. A metric no layer names
    gets :data:`DEFAULT_THRESHOLD` from :func:`threshold_for`.
    """
    merged: dict[str, float] = {}
    for layer in layers:
        for metric, value in layer.items():
            merged.setdefault(metric, value)
    return merged


def threshold_for(thresholds: Mapping[str, float], metric: str) -> float:
    """The minimum pass rate of ``metric``, :data:`DEFAULT_THRESHOLD` when unnamed."""
    return thresholds.get(metric, DEFAULT_THRESHOLD)


def unused_thresholds(thresholds: Iterable[str], where: str, seen: Iterable[str]) -> list[str]:
    """A notice for each metric ``where`` sets a threshold for that no evaluator of the
    run provided (``seen``: the metrics it did)."""
    seen = set(seen)
    return [
        f"{where} sets a threshold for {metric!r}, which no evaluator of this run provides"
        f"{closest(metric, seen)}"
        for metric in thresholds
        if metric not in seen
    ]
