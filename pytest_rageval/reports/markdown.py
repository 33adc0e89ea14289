"""The Markdown summary: short enough for a pull-request comment or a GitHub step
summary, rendered from a ``--rag-report`` document (no pytest here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_rageval.reports.json import gate_passed
from pytest_rageval.text import printable
from pytest_rageval.verdicts import shorten

FLIP_LINES = 20
"""Flipped questions listed in all; the rest are counted and left to the HTML report."""


def cell(text: object) -> str:
    """``text`` safe inside a Markdown table cell or list item (one line, no pipes, no
    bidi override or zero-width character left to mislead a reviewer)."""
    return " ".join(printable(str(text)).split()).replace("|", "\\|")


def code(text: object) -> str:
    quoted = cell(text).replace("`", "'")
    return f"`{quoted}`"


def _fraction(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def passed(document: Mapping[str, Any]) -> bool:
    """The rag gate's result as the report states it (worked out for reports written
    before the report carried a ``gate``)."""
    stated = document.get("gate")
    if isinstance(stated, Mapping):
        said = stated.get("passed")
        if isinstance(said, bool):
            return said
    return gate_passed(document)


def render_markdown(document: Mapping[str, Any], html: str | None = None) -> str:
    """The summary of a report; ``html`` names the HTML report that a cut list points to."""
    sets = document.get("sets", [])
    with_baseline = document.get("baseline") is not None
    metrics = sum(len(entry["metrics"]) for entry in sets)
    ok = sum(m["verdict"] == "ok" for entry in sets for m in entry["metrics"].values())
    status = "passed" if passed(document) else "FAILED"
    lines = [f"### pytest-rageval: {status} ({ok} of {metrics} set metrics ok)", ""]
    header = ["set", "metric", "pass rate", "95% CI", "threshold"]
    if with_baseline:
        header += ["baseline", "delta", "change"]
    header += ["invalid", "errors", "verdict"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in sets:
        changes = (entry.get("baseline") or {}).get("metrics", {})
        for name, rate in entry["metrics"].items():
            interval = rate.get("interval")
            row = [
                code(entry["id"]),
                cell(name),
                f"{_fraction(rate['pass_rate'])} ({rate['passed']}/{rate['n']})",
                "n/a" if not interval else f"{interval[0]:.2f}-{interval[1]:.2f}",
                _fraction(rate["threshold"]),
            ]
            if with_baseline:
                change = changes.get(name)
                if change is None:
                    row += ["none", "n/a", "n/a"]
                else:
                    delta = change["delta"]
                    row += [
                        _fraction(change["baseline_pass_rate"]),
                        "n/a" if delta is None else f"{delta:+.2f}",
                        f"{change['change']} (p={change['p_value']:.2g})",
                    ]
            mark = "✅" if rate["verdict"] == "ok" else "❌"
            row += [str(rate["invalid"]), str(rate["errors"]), f"{mark} {cell(rate['verdict'])}"]
            lines.append("| " + " | ".join(row) + " |")
    if with_baseline:
        lines += ["", f"**Since the baseline** ({code(document['baseline'])})", ""]
        lines += _flips(sets, html)
    problems = [
        f"- {code(entry['id'])} {cell(name)}: {rate['invalid']} invalid, {rate['errors']} errors"
        for entry in sets
        for name, rate in entry["metrics"].items()
        if rate["invalid"] or rate["errors"]
    ]
    if problems:
        lines += ["", "**Invalid judgements and errors**", "", *problems]
    notices = list(document.get("notices", []))
    if document.get("stopped"):
        notices.insert(0, f"the run stopped early: {document['stopped']}")
    if notices:
        lines += ["", "**Warnings**", "", *(f"- {cell(n)}" for n in notices)]
    return "\n".join(lines) + "\n"


def _flips(sets: list[Mapping[str, Any]], html: str | None) -> list[str]:
    lines: list[str] = []
    budget = FLIP_LINES
    left = 0
    for entry in sets:
        base = entry.get("baseline")
        if base is None:
            continue
        if not base.get("found"):
            lines.append(f"- no baseline for {code(entry['id'])}")
            continue
        feedback = {
            q["id"]: {n: m.get("feedback") for n, m in q.get("metrics", {}).items()}
            for q in entry.get("questions", [])
        }
        for label, ids in (("new", base["new"]), ("removed", base["removed"])):
            if ids:
                lines.append(
                    f"- {code(entry['id'])} {label}: {', '.join(map(code, ids[:10]))}"
                    + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
                )
        for name, change in base["metrics"].items():
            worse, better = change["pass_to_fail"], change["fail_to_pass"]
            if not (worse or better):
                continue
            lines.append(
                f"- {code(entry['id'])} {cell(name)}: {len(worse)} pass → fail, "
                f"{len(better)} fail → pass ({change['change']}, p={change['p_value']:.2g})"
            )
            for mark, ids in (("❌", worse), ("✅", better)):
                for qid in ids:
                    if budget <= 0:
                        left += 1
                        continue
                    budget -= 1
                    said = shorten(feedback.get(qid, {}).get(name), 100)
                    lines.append(f"  - {mark} {code(qid)}: {cell(said)}")
    if left:
        where = f" (see the HTML report, {code(html)})" if html else ""
        lines.append(f"- … and {left} more flipped questions{where}")
    if not lines:
        lines.append("- no question changed its verdict")
    return lines
