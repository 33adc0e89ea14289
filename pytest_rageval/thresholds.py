"""Minimum pass rates per metric: validation and precedence (no pytest here)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

DEFAULT_THRESHOLD = 1.0
"""Used for a metric no marker, data file or ini line names: every question must pass."""


class ThresholdError(ValueError):
    """A threshold that is not a number in [0, 1]; the message says where it came from."""


def check_threshold(metric: str, value: object, where: str) -> float:
    """Return ``value`` as a float in [0, 1], or raise :class:`ThresholdError` naming ``where``."""
    if not isinstance(metric, str) or not metric.strip():
        raise ThresholdError(f"{where}: metric names must be non-empty strings, got {metric!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ThresholdError(
            f"{where}: threshold for {metric!r} must be a number in [0, 1] "
            f"(a minimum pass rate such as 0.9), got {value!r}"
        )
    rate = float(value)
    if math.isnan(rate) or not 0.0 <= rate <= 1.0:
        raise ThresholdError(
            f"{where}: threshold for {metric!r} must be in [0, 1] "
            f"(a fraction: 0.9 means 90% of questions must pass), got {value!r}"
        )
    return rate


def check_thresholds(values: Mapping[str, object], where: str) -> dict[str, float]:
    """Validate a whole mapping of metric -> minimum pass rate."""
    return {metric: check_threshold(metric, value, where) for metric, value in values.items()}


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
                f"{where}: expected 'metric=rate' (e.g. faithfulness=0.9), got {raw!r}"
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
