"""The terminal's ``rag evaluation`` section: the table, flips since the baseline,
errors by cause and warnings (no pytest here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_rageval.baseline import Baseline, MetricChange, SetChange
from pytest_rageval.reports.summary import (
    SetSummary,
    changes_of,
    erring_causes,
    warnings,
)
from pytest_rageval.wording import (
    corrected_line,
    format_delta,
    format_fraction,
    format_interval,
    labels_source,
    printable,
    shorten,
)

TABLE_HEADERS = (
    "set",
    "metric",
    "questions",
    "passed",
    "failed",
    "invalid",
    "errors",
    "pass rate",
    "95% CI",
    "threshold",
    "verdict",
)
BASELINE_HEADERS = ("baseline", "delta", "change")
"""Columns added before the verdict when the run has a baseline."""
FLIPS_SHOWN = 10
"""Flipped questions listed per set and metric on the terminal (the rest are counted)."""


def format_change(change: MetricChange | None) -> str:
    if change is None:
        return "n/a"
    return f"{change.test.change} (p={change.test.p_value:.2g})"


def format_judged(judged: int, population: int) -> str:
    """``212/5,000``: the questions a set judged of those it has."""
    return f"{judged:,}/{population:,}"


def table_rows(
    summaries: Iterable[SetSummary], changes: Mapping[str, SetChange] | None = None
) -> list[tuple[object, ...]]:
    """The terminal table's rows; with ``changes`` (a baseline), three more columns, and
    with a sequential set, a ``judged`` column after the metric."""
    summaries = list(summaries)
    sampled = any(summary.sampling is not None for summary in summaries)
    rows: list[tuple[object, ...]] = []
    for summary in summaries:
        rates = summary.rates
        against = changes.get(summary.name) if changes is not None else None
        extra: tuple[object, ...]
        if not rates:
            n = len(summary.questions)
            extra = ("n/a",) * len(BASELINE_HEADERS) if changes is not None else ()
            judged = (format_judged(0, n),) if sampled else ()
            rows.append(
                (summary.name, "-", *judged, n, 0, 0, 0, n, "n/a", "n/a", "n/a", *extra, "FAILED")
            )
        verdicts = summary.verdicts()
        for metric, rate in rates.items():
            extra = ()
            if changes is not None:
                change = against.metrics.get(metric) if against is not None else None
                if change is None:
                    extra = ("none", "n/a", "n/a")
                else:
                    extra = (
                        format_fraction(change.baseline_rate),
                        format_delta(change.delta, rate.max_drop),
                        format_change(change),
                    )
            judged = ()
            if sampled:
                population = rate.sampled.population if rate.sampled is not None else rate.n
                judged = (format_judged(rate.n, population),)
            rows.append(
                (
                    summary.name,
                    metric,
                    *judged,
                    rate.n,
                    rate.passed,
                    rate.failed,
                    rate.invalid,
                    rate.errors,
                    format_fraction(rate.pass_rate),
                    format_interval(rate.interval),
                    format_fraction(rate.threshold),
                    *extra,
                    verdicts[metric],
                )
            )
    return rows


def headers(with_baseline: bool, sampled: bool = False) -> tuple[str, ...]:
    first = (*TABLE_HEADERS[:2], "judged", *TABLE_HEADERS[2:]) if sampled else TABLE_HEADERS
    if not with_baseline:
        return first
    return (*first[:-1], *BASELINE_HEADERS, first[-1])


def render_table(
    summaries: Iterable[SetSummary], changes: Mapping[str, SetChange] | None = None
) -> str:
    from tabulate import tabulate

    summaries = list(summaries)
    return tabulate(
        table_rows(summaries, changes),
        headers=headers(changes is not None, any(s.sampling is not None for s in summaries)),
        disable_numparse=True,
    )


def render_flips(changes: Mapping[str, SetChange], baseline_path: str) -> list[str]:
    """The questions whose verdicts changed since the baseline, per set and metric."""
    lines = [f"against the baseline {baseline_path}:"]
    for set_id, change in changes.items():
        if not change.found:
            lines.append(f"  no baseline for {set_id}")
            continue
        if change.new:
            lines.append(f"  {set_id}: new: {_some(change.new)}")
        if change.removed:
            lines.append(f"  {set_id}: removed: {_some(change.removed)}")
        for metric, flips in change.metrics.items():
            if not (flips.worse or flips.better or flips.apart):
                continue
            lines.append(
                f"  {set_id} {metric}: {len(flips.worse)} pass -> fail, "
                f"{len(flips.better)} fail -> pass "
                f"({flips.test.change}, p={flips.test.p_value:.2g})"
            )
            for label, listed in (("pass -> fail", flips.worse), ("fail -> pass", flips.better)):
                for flip in listed[:FLIPS_SHOWN]:
                    lines.append(
                        f"    {label}: {printable(flip.id)}: {shorten(flip.feedback, 120)}"
                    )
                if len(listed) > FLIPS_SHOWN:
                    lines.append(f"    {label}: and {len(listed) - FLIPS_SHOWN} more")
            if flips.apart:
                lines.append(f"    errored or invalid in either run: {_some(flips.apart)}")
    if len(lines) == 1:
        lines.append("  no question changed its verdict")
    return lines


def _some(ids: list[str], shown: int = FLIPS_SHOWN) -> str:
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return ", ".join(printable(i) for i in ids[:shown]) + more


def render_summary(
    summaries: list[SetSummary], notices: Iterable[str] = (), baseline: Baseline | None = None
) -> list[str]:
    """The ``rag evaluation`` section: the table, sets judged on nothing, the flips since
    the baseline, errors by cause and warnings."""
    changes = changes_of(summaries, baseline) if baseline is not None else None
    lines = render_table(summaries, changes).splitlines()
    lines.extend(render_corrected(summaries))
    for summary in summaries:
        if summary.problem is not None:
            lines.append(f"{summary.name}: {printable(summary.problem)}")
    for summary in summaries:
        lines.extend(f"FAILED {printable(reason)}" for reason in summary.unheld())
    lines.extend(render_unstable(summaries))
    if changes is not None and baseline is not None:
        lines.extend(render_flips(changes, baseline.path))
        lines.extend(
            f"  {printable(s.name)}: sequential: only the {s.sampling.to_json()['visited']:,} "
            "questions it asked were compared"
            for s in summaries
            if s.sampling is not None
        )
    causes = erring_causes(summaries)
    if causes:
        lines.append("errors by cause:")
        lines.extend(f"  {printable(line)}" for line in causes)
    lines.extend(f"warning: {printable(notice)}" for notice in warnings(summaries, notices))
    return lines


def render_corrected(summaries: Iterable[SetSummary]) -> list[str]:
    """The judge's rate and the corrected rate the gate compared, per calibrated metric."""
    lines = []
    for summary in summaries:
        for metric, rate in summary.rates.items():
            if rate.corrected is None or rate.pending:
                continue
            entry = rate.to_json()
            lines.append(
                f"  {printable(summary.name)} {metric}  {corrected_line(entry)}  "
                f"labels {printable(labels_source(entry))}"
            )
    if not lines:
        return []
    return ["corrected for the judge's errors on labelled cases (n: labels):", *lines]


def render_cache(stats: Mapping[str, object]) -> str:
    """``verdict cache (on): faithfulness 18 hits, 2 misses; relevancy 20 hits, 0 misses``."""
    metrics = stats.get("metrics") or {}
    assert isinstance(metrics, Mapping)
    parts = [
        f"{name} {seen['hits']} hits, {seen['misses']} misses" for name, seen in metrics.items()
    ]
    if stats.get("replayed"):
        parts.append(f"{stats['replayed']} app answers replayed (--rag-replay)")
    return f"verdict cache ({stats.get('mode')}): " + "; ".join(parts)


def render_unstable(summaries: Iterable[SetSummary]) -> list[str]:
    """Questions whose repeated judgements disagree: judge noise, not a verdict to trust."""
    lines: list[str] = []
    for summary in summaries:
        found = [
            (record["id"], name, metric["votes"], metric.get("repeat") or len(metric["votes"]))
            for record in summary.questions
            for name, metric in record["metrics"].items()
            if metric.get("unstable")
        ]
        for qid, name, votes, repeat in found[:FLIPS_SHOWN]:
            passed = sum(bool(vote["passing"]) for vote in votes)
            # fewer votes than asked: the first ones decided the majority
            early = (
                f" (of {repeat} asked: the other {repeat - len(votes)} could not change "
                "the majority)"
                if repeat > len(votes)
                else ""
            )
            lines.append(
                f"  {summary.name} {printable(qid)} {name}: {passed} of {len(votes)} votes "
                f"passing{early}"
            )
        if len(found) > FLIPS_SHOWN:
            lines.append(f"  {summary.name}: and {len(found) - FLIPS_SHOWN} more")
    return ["unstable (the votes disagree):", *lines] if lines else []


def render_usage(report: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``tokens: query 1,200 in / 300 out; faithfulness ...`` and, with prices, the cost
    and what the verdict cache saved."""
    counted = {
        name: seen for name, seen in report.items() if seen["calls"] or seen["saved"]["calls"]
    }
    if not counted:
        return []
    parts = [
        f"{name} {seen['prompt_tokens']:,} in / {seen['completion_tokens']:,} out"
        for name, seen in counted.items()
        if seen["calls"]
    ]
    lines = ["tokens: " + ("; ".join(parts) if parts else "none spent")]
    costs = [seen["cost"] for seen in counted.values() if seen["calls"]]
    if costs and all(cost is not None for cost in costs):
        lines.append(f"cost: ${sum(costs):.4f}")
    elif any(cost is not None for cost in costs):
        lines.append(
            f"cost: ${sum(c for c in costs if c is not None):.4f} for the models rag_prices "
            "names (others not priced)"
        )
    saved_tokens = sum(
        seen["saved"]["prompt_tokens"] + seen["saved"]["completion_tokens"]
        for seen in counted.values()
    )
    if saved_tokens:
        saved_costs = [seen["saved"]["cost"] for seen in counted.values() if seen["saved"]["calls"]]
        money = (
            f" (${sum(saved_costs):.4f})"
            if saved_costs and all(c is not None for c in saved_costs)
            else ""
        )
        lines.append(f"the verdict cache saved {saved_tokens:,} tokens{money}")
    return lines


def render_ending(
    records: Sequence[Mapping[str, Any]],
    complete: bool,
    stopped: str | None,
    written: Iterable[tuple[str, Any, str | None]],
    failed_writing: bool,
) -> list[tuple[str, dict[str, bool]]]:
    """The lines after the summary, each with its colour: an incomplete run, each report
    file written (or not, and why), and the exit a report that could not be written
    causes."""
    lines: list[tuple[str, dict[str, bool]]] = []
    if not complete:
        unfinished = sum(
            1
            for record in records
            if not record.get("evaluated", True) and record["outcome"] != "skipped"
        )
        lines.append(
            (
                f"incomplete: {stopped or 'not every question ran'}; "
                f"{unfinished} of {len(records)} questions not evaluated",
                {"yellow": True},
            )
        )
    for label, path, error in written:
        if error is None:
            lines.append((f"{label} written to {path}", {}))
        else:
            lines.append((f"{label} NOT written to {path}: {error}", {"red": True}))
    if failed_writing:
        lines.append(
            (
                "the run fails (exit 1): a report it was asked for could not be written",
                {"red": True},
            )
        )
    return lines


def render_section(
    summaries: list[SetSummary],
    notices: Iterable[str],
    baseline: Baseline | None,
    cache: Mapping[str, Any] | None,
    usage: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    """The whole ``rag evaluation`` section of a run (in pytest, or merged from shards):
    :func:`render_summary`, the verdict cache's counts when it was used, and the usage."""
    lines = render_summary(summaries, notices, baseline)
    if cache is not None and (cache["metrics"] or cache["replayed"]):
        lines.append(render_cache(cache))
    lines.extend(render_usage(usage))
    return lines
