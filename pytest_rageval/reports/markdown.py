"""The Markdown summary: short enough for a pull-request comment or a GitHub step
summary, rendered from a ``--rag-report`` document (no pytest here)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pytest_rageval.reports.json import gate_passed
from pytest_rageval.text import printable, well_formed
from pytest_rageval.wording import (
    corrected_line,
    format_delta,
    format_fraction,
    format_interval,
    judged_of,
    labels_source,
    sampled_line,
    shorten,
)

FLIP_LINES = 20
"""Flipped questions listed in all; the rest are counted and left to the HTML report."""
_VERDICT = re.compile(r"[A-Za-z]+(?: \([a-z]+(?:_[a-z]+)*\))?")
"""The shape of the verdicts the gate writes (``ok``, ``FAILED (must_pass)``): no markup
can form in it, so it shows as it is; anything else in a report file is shown inert."""


def inert(text: object, *, table: bool = False) -> str:
    """``text`` as Markdown that shows it and does nothing else: one line, in a code span.

    Every piece of text the project did not write itself (judge feedback, app answers,
    queries, question and set ids, metric names, paths, error messages) goes through
    here: in a code span no link, image, HTML tag, heading or emphasis can form, and
    GitHub makes no @mention, #123 reference or :emoji: in code. The fence is one backtick
    longer than the longest run inside; ``table`` escapes pipes, which GFM ends a cell
    with even inside a code span (and unescapes there)."""
    flat = printable(" ".join(str(text).split()))
    if table:
        flat = flat.replace("|", "\\|")
    fence = "`" * (max(map(len, re.findall("`+", flat)), default=0) + 1)
    if flat.startswith("`") or flat.endswith("`"):
        flat = f" {flat} "  # one space each side is taken off again
    return f"{fence}{flat or ' '}{fence}"


def passed(document: Mapping[str, Any]) -> bool:
    """The rag gate's result as the report states it (worked out for reports written
    before the report carried a ``gate``)."""
    stated = document.get("gate")
    if isinstance(stated, Mapping):
        said = stated.get("passed")
        if isinstance(said, bool):
            return said
    return gate_passed(document)


def render_markdown(
    document: Mapping[str, Any], html: str | None = None, root: str | None = None
) -> str:
    """The summary of a report; ``html`` names the HTML report that a cut list points to.
    Paths under ``root`` (the directory the run was started from) are shown relative to
    it: a reviewer has no use for the runner's absolute paths."""
    sets = document.get("sets", [])
    with_baseline = document.get("baseline") is not None
    metrics = sum(len(entry["metrics"]) for entry in sets)
    ok = sum(m["verdict"] == "ok" for entry in sets for m in entry["metrics"].values())
    status = "passed" if passed(document) else "FAILED"
    lines = [f"### pytest-rageval: {status} ({ok} of {metrics} set metrics ok)", ""]
    lines += _table(sets, with_baseline)
    budget = [FLIP_LINES]
    listed: set[tuple[str, str]] = set()
    if with_baseline:
        lines += ["", f"**Since the baseline** ({inert(document['baseline'])})", ""]
        lines += _flips(sets, html, budget, listed)
    lines += _section("**Failed questions**", _failing(sets, budget, listed))
    lines += _section("**Invalid judgements and errors**", _problems(sets))
    lines += _section(
        "**Corrected for the judge** (the gate compares the corrected rate)", _corrected(sets)
    )
    lines += _section(
        "**Sequential sets** (questions judged in a random order until certain)",
        _sampled(sets, with_baseline),
    )
    lines += _section("**Errors and warnings**", _notices(document))
    return well_formed(_relative("\n".join(lines) + "\n", root))


def _section(heading: str, items: list[str]) -> list[str]:
    """A list under its heading, or nothing when the list is empty."""
    return ["", heading, "", *items] if items else []


def _table(sets: list[Mapping[str, Any]], with_baseline: bool) -> list[str]:
    """The table of every set's metrics, with the baseline's columns when there is one."""
    header = ["set", "metric", "pass rate", "95% CI", "threshold"]
    if with_baseline:
        header += ["baseline", "delta", "change"]
    header += ["invalid", "errors", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in sets:
        changes = (entry.get("baseline") or {}).get("metrics", {})
        for name, rate in entry["metrics"].items():
            change = changes.get(name) if with_baseline else None
            row = _row(entry["id"], name, rate, change, with_baseline)
            lines.append("| " + " | ".join(row) + " |")
    return lines


def _row(
    set_id: object,
    name: str,
    rate: Mapping[str, Any],
    change: Mapping[str, Any] | None,
    with_baseline: bool,
) -> list[str]:
    """One metric's cells: its rates, the ``change`` since the baseline (columns only
    ``with_baseline``; None: the baseline lacks it) and its verdict."""
    row = [
        inert(set_id, table=True),
        inert(name, table=True),
        f"{format_fraction(rate['pass_rate'])} ({rate['passed']}/{rate['n']}{judged_of(rate)})",
        format_interval(rate.get("interval")),
        format_fraction(rate["threshold"]),
    ]
    if with_baseline:
        if change is None:
            row += ["none", "n/a", "n/a"]
        else:
            row += [
                format_fraction(change["baseline_pass_rate"]),
                format_delta(change["delta"], rate.get("max_drop")),
                f"{change['change']} (p={change['p_value']:.2g})",
            ]
    verdict = str(rate["verdict"])
    mark = "✅" if verdict == "ok" else "❌"
    shown = verdict if _VERDICT.fullmatch(verdict) else inert(verdict, table=True)
    row += [str(rate["invalid"]), str(rate["errors"]), f"{mark} {shown}"]
    return row


def _problems(sets: list[Mapping[str, Any]]) -> list[str]:
    """A line for each set and metric with invalid judgements or errors."""
    return [
        f"- {inert(entry['id'])} {inert(name)}: {rate['invalid']} invalid, {rate['errors']} errors"
        for entry in sets
        for name, rate in entry["metrics"].items()
        if rate["invalid"] or rate["errors"]
    ]


def _corrected(sets: list[Mapping[str, Any]]) -> list[str]:
    """A line for each set and metric whose rate is corrected for the judge."""
    return [
        f"- {inert(entry['id'])} {inert(name)}: {corrected_line(rate)}, labels "
        f"{inert(labels_source(rate))}"
        for entry in sets
        for name, rate in entry["metrics"].items()
        if rate.get("corrected")
    ]


def _sampled(sets: list[Mapping[str, Any]], with_baseline: bool) -> list[str]:
    """A line for each sequential set: how far its sampling went."""
    compared = "; only the questions asked were compared with the baseline"
    return [
        f"- {inert(entry['id'])}: {inert(sampled_line(entry['sample']))}"
        f"{compared if with_baseline else ''}"
        for entry in sets
        if entry.get("sample")
    ]


def _notices(document: Mapping[str, Any]) -> list[str]:
    """The run's notices, after why it stopped early if it did."""
    notices = [f"- {inert(notice)}" for notice in document.get("notices", [])]
    if document.get("stopped"):
        notices.insert(0, f"- the run stopped early: {inert(document['stopped'])}")
    return notices


def _relative(text: str, root: str | None) -> str:
    """``text`` with the paths under ``root`` relative to it."""
    if root and len(root.rstrip(os.sep)) > 1:
        # inside code spans, where every path is: the relative path shows the same way
        text = text.replace(root.rstrip(os.sep) + os.sep, "")
    return text


def _flips(
    sets: list[Mapping[str, Any]],
    html: str | None,
    budget: list[int],
    shown: set[tuple[str, str]],
) -> list[str]:
    """The flips since the baseline, each flipped question with what it was asked, both
    answers, the judge's feedback and its sources, up to ``budget`` questions."""
    lines: list[str] = []
    left = 0
    for entry in sets:
        base = entry.get("baseline")
        if base is None:
            continue
        if not base.get("found"):
            lines.append(f"- no baseline for {inert(entry['id'])}")
            continue
        records = {q["id"]: q for q in entry.get("questions", [])}
        for label, ids in (("new", base["new"]), ("removed", base["removed"])):
            if ids:
                lines.append(
                    f"- {inert(entry['id'])} {label}: {', '.join(map(inert, ids[:10]))}"
                    + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
                )
        for name, change in base["metrics"].items():
            worse, better = change["pass_to_fail"], change["fail_to_pass"]
            if not (worse or better):
                continue
            lines.append(
                f"- {inert(entry['id'])} {inert(name)}: {len(worse)} pass → fail, "
                f"{len(better)} fail → pass ({change['change']}, p={change['p_value']:.2g})"
            )
            for mark, ids in (("❌", worse), ("✅", better)):
                for qid in ids:
                    if budget[0] <= 0:
                        left += 1
                        continue
                    budget[0] -= 1
                    record = records.get(qid, {"id": qid})
                    lines += _question(mark, record, [name], base.get("responses"), shown, entry)
    if left:
        where = f" (see the HTML report, {inert(html)})" if html else ""
        lines.append(f"- … and {left} more flipped questions{where}")
    if not lines:
        lines.append("- no question changed its verdict")
    return lines


def _failing(
    sets: list[Mapping[str, Any]], budget: list[int], shown: set[tuple[str, str]]
) -> list[str]:
    """The questions that fail the run and are not among the flips, up to ``budget``."""
    lines: list[str] = []
    left = 0
    for entry in sets:
        responses = (entry.get("baseline") or {}).get("responses")
        for record in entry.get("questions", []):
            if record.get("outcome") not in ("failed", "error"):
                continue
            if (entry["id"], record["id"]) in shown:
                continue
            if budget[0] <= 0:
                left += 1
                continue
            budget[0] -= 1
            failed = [n for n, m in record.get("metrics", {}).items() if not m.get("passing")]
            lines += _question("❌", record, failed, responses, shown, entry, with_set=True)
    if left:
        lines.append(f"- … and {left} more failed questions")
    return lines


SHORT = 200
"""Characters of a query or response the Markdown shows (the HTML shows them whole)."""


def _question(
    mark: str,
    record: Mapping[str, Any],
    metrics: list[str],
    responses: Mapping[str, Any] | None,
    shown: set[tuple[str, str]],
    entry: Mapping[str, Any],
    with_set: bool = False,
) -> list[str]:
    """One question of the flip or failure list: its id and the judge's feedback, then
    (the first time it is listed) the query, both answers and the sources, all inert."""
    judged = record.get("metrics", {})
    said = [
        (f"{inert(name)}: " if with_set else "") + inert(shorten(feedback, 100))
        for name in metrics
        if _says_more(feedback := (judged.get(name) or {}).get("feedback"))
    ]
    error = record.get("error")
    if error:
        said.append(f"error: {inert(shorten(error, 100))}")
    where = f"{inert(entry['id'])} " if with_set else ""
    names = ", ".join(inert(name) for name in metrics)
    head = f"  - {mark} {where}{inert(record['id'])}" + (f" ({names})" if with_set else "")
    lines = [head + (": " + "; ".join(said) if said else "")]
    key = (str(entry["id"]), str(record["id"]))
    if key in shown:
        return lines
    shown.add(key)
    lines.append(f"    - asked: {inert(shorten(record.get('query'), SHORT))}")
    lines.append(f"    - answer now: {inert(shorten(record.get('response'), SHORT))}")
    if responses is not None and record["id"] in responses:
        before = responses[record["id"]]
        lines.append(f"    - baseline's answer: {inert(shorten(before, SHORT))}")
    sources = record.get("sources")
    if sources:
        # one node per item: its ids (ref_doc_id, file_name), each inert on its own
        nodes = [" ".join(map(inert, ids)) if ids else "(no id)" for ids in sources]
        lines.append(f"    - sources: {'; '.join(nodes)}")
    return lines


def _says_more(feedback: object) -> bool:
    """Whether the judge's feedback says more than a bare YES or NO (llama-index's
    faithfulness and relevancy judges answer only that)."""
    if not isinstance(feedback, str):
        return False
    return feedback.strip().rstrip(".!").strip().upper() not in ("", "YES", "NO")
