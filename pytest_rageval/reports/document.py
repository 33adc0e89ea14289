"""One run's report document, and every file rendered from it: the JSON report, the
Markdown summary (also onto a GitHub step summary) and the HTML report. They are all
rendered from the same document, so they say the same thing."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from pytest_rageval.baseline import Baseline
from pytest_rageval.reports import html, markdown
from pytest_rageval.reports import json as json_report
from pytest_rageval.reports.summary import SetSummary, run_notices
from pytest_rageval.settings import Settings


class Written(NamedTuple):
    """A report file: what it is, where, and why it could not be written (or None)."""

    label: str
    path: Path
    error: str | None


def build(
    summaries: Iterable[SetSummary],
    settings: Settings,
    *,
    exitstatus: int,
    complete: bool,
    stopped: str | None,
    notices: list[str],
    timing: dict[str, Any],
    cache: dict[str, Any] | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    """The ``--rag-report`` document of a run that ended with ``exitstatus``; its
    ``notices`` are every warning the terminal prints, and the errors by cause."""
    return assemble(
        summaries,
        text=settings.report_text,
        baseline=settings.baseline,
        exitstatus=exitstatus,
        complete=complete,
        stopped=stopped,
        notices=notices,
        settings=settings.to_json(),
        versions=versions(settings.judge.model),
        timing=timing,
        cache=cache,
        usage=usage,
    )


def assemble(
    summaries: Iterable[SetSummary],
    *,
    text: str,
    baseline: Baseline | None,
    exitstatus: int,
    complete: bool,
    stopped: str | None,
    notices: list[str],
    settings: dict[str, Any],
    versions: dict[str, Any],
    timing: dict[str, Any],
    cache: dict[str, Any] | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    """:func:`build` from plain values, as a run's own settings give them or as
    ``rageval merge`` reads them from the shards' parts."""
    summaries = list(summaries)
    document = json_report.json_report(summaries, text=text, baseline=baseline)
    document["complete"] = complete
    document["stopped"] = stopped
    document["gate"] = json_report.gate(document, exitstatus)
    document["notices"] = run_notices(summaries, notices)
    document["settings"] = settings
    document["versions"] = versions
    document["timing"] = timing
    document["cache"] = cache
    document["usage"] = usage
    return document


def wanted(settings: Settings) -> bool:
    """Whether the run writes any report at all (files, or a GitHub step summary)."""
    return bool(
        os.environ.get("GITHUB_STEP_SUMMARY")
        or any(path is not None for path in (settings.report, settings.markdown, settings.html))
    )


def write(document: dict[str, Any], settings: Settings, invoked_in: Path) -> list[Written]:
    """Every report ``settings`` asks for, rendered from ``document``; a file that cannot
    be written is returned with its reason, and the others are still written. The
    Markdown shows paths relative to ``invoked_in`` (the rootdir, where CI runs pytest)."""
    shown = None if settings.html is None else os.path.relpath(settings.html, invoked_in)

    def summary(document: dict[str, Any]) -> str:
        # paths as the user would type them
        return markdown.render_markdown(document, html=shown, root=str(invoked_in))

    outputs: list[tuple[str, Path | None, Callable[[dict[str, Any]], str]]] = [
        ("rag report", settings.report, json_report.dumps),
        ("rag markdown summary", settings.markdown, summary),
        ("rag html report", settings.html, html.render_html),
    ]
    written: list[Written] = []
    for label, path, render in outputs:
        if path is None:
            continue
        try:
            json_report.write_atomic(path, render(document))
        except (OSError, ValueError, TypeError) as exc:
            written.append(Written(label, path, f"{type(exc).__name__}: {exc}"))
        else:
            written.append(Written(label, path, None))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as appended:
                appended.write(summary(document))
        except OSError as exc:
            written.append(Written("GitHub step summary", Path(step_summary), str(exc)))
    return written


def versions(judge_model: str) -> dict[str, str | None]:
    """What produced a report: package versions and the default judge's model."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for package in ("pytest-rageval", "llama-index-core", "pytest"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    found["python"] = sys.version.split()[0]
    found["judge_model"] = judge_model
    return found
