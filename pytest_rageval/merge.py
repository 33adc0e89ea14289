"""``rageval merge``: a sharded run's parts made one run, gated as one machine would have.

Every statistic is recomputed from the union of the parts' question records through the
code a single run uses: each set's records are summarized with its gate
(:func:`~pytest_rageval.reports.summary.summarize`), each question's outcome is decided
on its whole set's rates (:func:`~pytest_rageval.gate.outcome`), and the report, the
Markdown, the HTML and the terminal table are rendered by the plugin's own renderers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from pytest_rageval.baseline import Baseline, BaselineError
from pytest_rageval.baseline import load as load_baseline
from pytest_rageval.gate import newly_failing, outcome
from pytest_rageval.gcpause import paused
from pytest_rageval.parts import PartError, Run, assemble, baseline_digest, read_part
from pytest_rageval.reports import document as report_document
from pytest_rageval.reports import html, markdown, terminal
from pytest_rageval.reports import json as json_report
from pytest_rageval.reports.summary import SetSummary, summarize
from pytest_rageval.text import well_formed
from pytest_rageval.thresholds import unused_thresholds
from pytest_rageval.totals import Totals, WorkerOutput


@dataclass
class Merged:
    """A merged run: its sets, its report document, what the terminal shows, its exit."""

    summaries: list[SetSummary]
    document: dict[str, Any]
    lines: list[str]
    exitstatus: int


def decide(run: Run) -> list[SetSummary]:
    """The run's sets, each question's outcome decided on its whole set's rates (as the
    shard could not)."""
    summaries = summarize(run.records, run.gates, copy=False)
    for summary in summaries:
        rates = summary.rates  # before any outcome changes
        drops = summary.gate.drops  # as RagSet.newly: a set in the baseline, max_drop
        # the results the rates were counted from (a sequential set's are parsed here)
        for record, metrics in zip(summary.questions, summary.judged, strict=True):
            if record["outcome"] == "skipped":
                continue
            newly = newly_failing(metrics, record.get("baseline")) if drops else frozenset()
            record["outcome"] = outcome(metrics, record["error"], record["must_pass"], rates, newly)
    return summaries


def merge(run: Run, baseline: Baseline | None) -> Merged:
    """The run's report and exit status, as one machine running every shard would give."""
    first = run.first
    summaries = decide(run)
    settings = first["settings"]
    documents = [part.document for part in run.parts]
    notices = _notices(first, documents)
    totals = _totals(documents)
    exitstatus = _exitstatus(summaries, documents)
    prices = {model: (float(i), float(o)) for model, (i, o) in first["prices"].items()}
    document = report_document.assemble(
        summaries,
        text=settings.get("report_text") or "truncate",
        baseline=baseline,
        exitstatus=exitstatus,
        complete=all(d["complete"] for d in documents),
        stopped=next((d["stopped"] for d in documents if d["stopped"]), None),
        notices=notices,
        settings=settings,
        versions=first["versions"],
        timing={
            "wall_seconds": max(d["timing"]["wall_seconds"] for d in documents),
            **totals.run_counts(None),
        },
        cache=_cache(totals, [d["cache"] for d in documents]),
        usage=totals.usage_report(None, prices),
    )
    document["shards"] = {
        "count": len(documents),
        "parts": [part.path for part in run.parts],
        "deselected": [d["deselected"] for d in documents],
    }
    lines = terminal.render_section(
        summaries, notices, baseline, document["cache"], document["usage"]
    )
    return Merged(summaries, document, lines, exitstatus)


def _notices(first: Mapping[str, Any], documents: Sequence[Mapping[str, Any]]) -> list[str]:
    """The parts' notices, each once, then the thresholds no merged set's metric used."""
    metrics: set[str] = set()
    notices: list[str] = []
    for part in documents:
        metrics.update(part["metrics"])
        notices.extend(n for n in part["notices"] if n not in notices)
    if metrics:
        thresholds = first["settings"].get("thresholds") or {}
        notices.extend(unused_thresholds(thresholds, first["thresholds_where"], metrics))
    return notices


def _totals(documents: Iterable[Mapping[str, Any]]) -> Totals:
    """The parts' counts, usage and cache counts, added up as a controller adds workers'."""
    totals = Totals()
    for part in documents:
        totals.add(
            WorkerOutput(
                records=[],
                gates={},
                notices=[],
                metrics=[],
                stopped=None,
                complete=True,
                counts=part["counts"],
                usage=part["usage"],
                cache=part["cache"],
            )
        )
    return totals


def _exitstatus(summaries: Sequence[SetSummary], documents: Sequence[Mapping[str, Any]]) -> int:
    """1 when a question fails or errors, a set fails where no question carries it, or a
    shard failed outside the evaluation; else 0."""
    failing = any(
        record["outcome"] in ("failed", "error") for s in summaries for record in s.questions
    )
    failing = failing or any(s.unheld() for s in summaries)
    failing = failing or any(d["others_failed"] or d["exitstatus"] not in (0, 1) for d in documents)
    return 1 if failing else 0


def _cache(totals: Totals, stats: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """The cache's counts of every part (None when no part had a cache), under the first
    cache's mode and path."""
    first = next((s for s in stats if s is not None), None)
    return None if first is None else totals.cache_report(first["mode"], first["path"])


def junit_xml(summaries: Iterable[SetSummary]) -> str:
    """One test case per question, with the properties its item has in a single run."""
    suite = ElementTree.Element("testsuite", name="rageval")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for summary in summaries:
        for record in summary.questions:
            case = ElementTree.SubElement(
                suite,
                "testcase",
                classname=well_formed(summary.name),
                name=well_formed(record["id"]),
            )
            props = ElementTree.SubElement(case, "properties")
            for name, value in properties(record):
                ElementTree.SubElement(props, "property", name=name, value=str(value))
            counts["tests"] += 1
            verdict = record["outcome"]
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(verdict)
            if tag is not None:
                counts[{"failure": "failures", "error": "errors"}.get(tag, tag)] += 1
                ElementTree.SubElement(case, tag, message=well_formed(record["error"] or verdict))
    for key, value in counts.items():
        suite.set(key, str(value))
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def properties(record: Mapping[str, Any]) -> list[tuple[str, object]]:
    """A question's JUnit properties, in the order its item records them."""
    found: list[tuple[str, object]] = []
    before = record.get("baseline")
    for name, metric in record["metrics"].items():
        prop = f"rag.{well_formed(name)}"
        found.append((f"{prop}.result", metric["result"]))
        found.append((f"{prop}.passing", metric["passing"]))
        found.append((f"{prop}.score", metric["score"]))
        if before is not None and name in before:
            found.append((f"{prop}.baseline", before[name]))
            flipped = {before[name], metric["result"]} == {"passing", "failing"}
            found.append((f"{prop}.flipped", flipped))
    found.append(("rag.outcome", record["outcome"]))
    return found


@paused()  # the parts' records: millions of objects, none in a cycle
def run(
    paths: Sequence[str],
    *,
    out: str | None,
    markdown_out: str | None,
    html_out: str | None,
    junit_out: str | None,
    baseline_path: str | None,
) -> int:
    """``rageval merge``: 0 when the merged run passes its gate, 1 when it fails, and
    :class:`PartError` (exit 2) for parts that are not one complete run."""
    merged_run = assemble(read_part(Path(path)) for path in paths)
    ran_against = merged_run.first["baseline"]
    baseline = None
    if baseline_path is not None or ran_against["path"] is not None:
        shown = baseline_path or ran_against["path"]
        try:
            baseline = load_baseline(Path(shown), shown)
        except BaselineError as exc:
            raise PartError(
                f"{exc} (the shards ran against baseline {ran_against['path']})"
            ) from None
        if baseline_digest(baseline) != ran_against["digest"]:
            raise PartError(
                f"{shown}: not the baseline the shards ran against ({ran_against['path']}); "
                "give that one with --baseline"
            )
    merged = merge(merged_run, baseline)
    print("=" * 20 + " rag evaluation " + "=" * 20)
    for line in merged.lines:
        print(line)
    if not merged.document["complete"]:
        print(f"incomplete: {merged.document['stopped'] or 'not every question ran'}")
    summary = markdown.render_markdown(merged.document, html=html_out, root=os.getcwd())
    if out is not None:
        json_report.write_json(Path(out), merged.document)
        print(f"rag report written to {out}")
    outputs: list[tuple[str, str | None, Callable[[], str]]] = [
        ("rag markdown summary", markdown_out, lambda: summary),
        ("rag html report", html_out, lambda: html.render_html(merged.document)),
        ("rag junit xml", junit_out, lambda: junit_xml(merged.summaries)),
    ]
    for label, path, render in outputs:
        if path is not None:
            json_report.write_atomic(Path(path), render())
            print(f"{label} written to {path}")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as appended:
            appended.write(summary)
    shards = len(merged_run.parts)
    verdict = "passed" if merged.exitstatus == 0 else "FAILED"
    print(f"rag gate {verdict}: {len(merged_run.records)} questions merged from {shards} shards")
    return merged.exitstatus
