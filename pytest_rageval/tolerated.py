"""``-rT`` (and ``-rA``): the tolerated questions, each with the metrics it failed, as
pytest lists its own categories in the short test summary (pytest-rerunfailures does the
same for its reruns with ``-rR``)."""

from __future__ import annotations

from typing import Any

import pytest

LETTER = "T"


def wanted(config: pytest.Config) -> bool:
    """Whether ``-r`` asks for tolerated questions: its own letter, or ``A`` (all)."""
    chars = config.option.reportchars or ""
    return "N" not in chars and (LETTER in chars or "A" in chars)


def lines(reports: list[Any]) -> list[str]:
    """One line per tolerated question: its node id and the metrics it did not pass."""
    said = []
    for report in reports:
        metrics = (getattr(report, "rag", None) or {}).get("metrics") or {}
        missed = [
            f"{name} {metric.get('result')}"
            for name, metric in metrics.items()
            if metric.get("result") != "passing"
        ]
        said.append(f"TOLERATED {report.nodeid} - {', '.join(missed) or 'no metric failed'}")
    return said


def summary(terminalreporter: Any) -> None:
    """The section ``-rT`` / ``-rA`` shows, when any question was tolerated."""
    if not wanted(terminalreporter.config):
        return
    reports = terminalreporter.stats.get("tolerated", [])
    if not reports:
        return
    terminalreporter.write_sep("=", "tolerated questions")
    for line in lines(reports):
        terminalreporter.write_line(line)
