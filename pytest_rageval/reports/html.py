"""The self-contained HTML report, rendered from a ``--rag-report`` document with a
Jinja2 template (no pytest here). No network and no external assets: it opens from a
file, in a CI artifact as on a laptop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_rageval.reports.markdown import passed
from pytest_rageval.text import printable, well_formed
from pytest_rageval.wording import (
    corrected_line,
    format_delta,
    format_fraction,
    format_interval,
    judged_of,
    labels_source,
    sampled_line,
)

CHART = {"width": 160, "height": 24}
"""Size of each metric's chart: its pass rate on a 0-1 scale, with the interval, the
threshold (dashed) and the baseline (a diamond)."""


def _x(value: float | None) -> float | None:
    if value is None:
        return None
    return round(4 + max(0.0, min(1.0, value)) * (CHART["width"] - 8), 1)


def view(document: Mapping[str, Any]) -> dict[str, Any]:
    """What the template shows, computed here so that the template only lays it out."""
    with_baseline = document.get("baseline") is not None
    sets: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    for entry in document.get("sets", []):
        sets.append(_set_view(entry, with_baseline))
        questions += _question_views(entry)
    # what a reviewer reads first: questions that flipped or fail the run, then those
    # tolerated, then the rest, each group in the report's order (a stable sort)
    questions.sort(key=_first)
    for rank, question in enumerate(questions):
        question["rank"] = rank
    metrics = [metric for shown in sets for metric in shown["metrics"]]
    return {
        "status": "passed" if passed(document) else "FAILED",
        "ok": sum(metric["verdict"] == "ok" for metric in metrics),
        "total": len(metrics),
        "baseline": document.get("baseline"),
        "versions": document.get("versions") or {},
        "timing": document.get("timing") or {},
        "stopped": document.get("stopped"),
        "notices": document.get("notices", []),
        "sets": sets,
        "questions": questions,
        "outcomes": sorted({q["outcome"] for q in questions if q["outcome"]}),
        "chart": CHART,
    }


def _set_view(entry: Mapping[str, Any], with_baseline: bool) -> dict[str, Any]:
    """A set's row group: each metric's rates and chart, and the set's notes."""
    base = entry.get("baseline") or {}
    changes = base.get("metrics", {})
    metrics = [
        _metric_view(name, rate, changes.get(name)) for name, rate in entry["metrics"].items()
    ]
    return {
        "id": printable(entry["id"]),
        "metrics": metrics,
        "no_baseline": with_baseline and not base.get("found"),
        "sampled": sampled_line(entry["sample"]) if entry.get("sample") else None,
    }


def _metric_view(
    name: str, rate: Mapping[str, Any], change: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One metric's row: its rate, interval and threshold, the change since the baseline
    (``change``; None without one) as text, and where each sits on the chart."""
    interval = rate.get("interval")
    baseline_rate = change["baseline_pass_rate"] if change else None
    delta = change["delta"] if change else None
    return {
        "name": name,
        "n": f"{rate['n']}{judged_of(rate)}",
        "passed": rate["passed"],
        "invalid": rate["invalid"],
        "errors": rate["errors"],
        "verdict": rate["verdict"],
        "rate_text": format_fraction(rate["pass_rate"]),
        "interval_text": (format_interval(interval)),
        "threshold_text": format_fraction(rate["threshold"]),
        "baseline_text": format_fraction(baseline_rate) if change else "none",
        "delta_text": format_delta(delta, rate.get("max_drop")) if change else "n/a",
        "change_text": (f"{change['change']} (p={change['p_value']:.2g})" if change else "n/a"),
        "rate_x": _x(rate["pass_rate"]),
        "low_x": _x(interval[0]) if interval else None,
        "high_x": _x(interval[1]) if interval else None,
        "threshold_x": _x(rate["threshold"]),
        "baseline_x": _x(baseline_rate),
        "corrected": (
            f"{name}: {corrected_line(rate)}, labels {labels_source(rate)}"
            if rate.get("corrected")
            else None
        ),
    }


def _question_views(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A set's questions, each with what the baseline said of it: its earlier answer,
    whether it is new, and each metric's flip."""
    base = entry.get("baseline") or {}
    changes = base.get("metrics", {})
    down = {n: set(c["pass_to_fail"]) for n, c in changes.items()}
    up = {n: set(c["fail_to_pass"]) for n, c in changes.items()}
    new = set(base.get("new", ()))
    before = base.get("responses") or {}
    questions = []
    for record in entry.get("questions", []):
        judged = _judged(record, down, up)
        questions.append(
            {
                "set": printable(entry["id"]),
                "id": printable(record["id"]),
                "outcome": record.get("outcome"),
                "query": _shown(record.get("query")),
                "response": _shown(record.get("response")),
                "baseline_response": _shown(before.get(record["id"])),
                "has_baseline_response": record["id"] in before,
                "contexts": _contexts(record),
                "metrics": judged,
                "flipped": any(m["flip"] for m in judged),
                "new": record["id"] in new,
            }
        )
    return questions


def _judged(
    record: Mapping[str, Any], down: Mapping[str, set[str]], up: Mapping[str, set[str]]
) -> list[dict[str, Any]]:
    """Each metric's result on a question, its feedback, and its flip since the baseline
    (``down``: pass to fail, ``up``: fail to pass, None: neither)."""
    judged = []
    for name, metric in record.get("metrics", {}).items():
        flip = "down" if record["id"] in down.get(name, ()) else None
        flip = "up" if record["id"] in up.get(name, ()) else flip
        judged.append(
            {
                "name": name,
                "result": metric.get("result"),
                "feedback": _shown(
                    metric.get("error") or metric.get("reason") or metric.get("feedback")
                ),
                "flip": flip,
            }
        )
    return judged


def _first(question: Mapping[str, Any]) -> int:
    if question["flipped"] or question["outcome"] in ("failed", "error"):
        return 0
    return 1 if question["outcome"] == "tolerated" else 2


def _contexts(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each retrieved context with its source ids (where the app returned nodes)."""
    sources = record.get("sources") or []
    return [
        {
            "text": _shown(text),
            "sources": ", ".join(_shown(i) for i in sources[index]) if index < len(sources) else "",
        }
        for index, text in enumerate(record.get("contexts") or [])
    ]


def _shown(text: Any) -> Any:
    """Text a reviewer reads, with bidi overrides and zero-width characters escaped
    (HTML escaping leaves them to reorder or hide what follows)."""
    return printable(text) if isinstance(text, str) else text


def render_html(document: Mapping[str, Any]) -> str:
    """The HTML report of a report document (valid Unicode, whatever text it holds)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_rageval.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return well_formed(environment.get_template("report.html.j2").render(**view(document)))
