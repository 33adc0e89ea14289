"""Sentences a user reads about rates, drops and failed questions (no pytest here):
the terminal, every report and a failed question's message share them."""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Mapping
from typing import Any

from pytest_rageval.gate import MetricRate
from pytest_rageval.gate.sampled import SHOWN
from pytest_rageval.text import printable as text_printable


def format_interval(interval: tuple[float, float] | list[float] | None) -> str:
    """``0.61-0.97``: an interval as the table and every report show it."""
    return "n/a" if not interval else f"{interval[0]:.2f}-{interval[1]:.2f}"


def format_fraction(value: float | None) -> str:
    """Rates and thresholds as fractions, the way the table and messages show them."""
    return "n/a" if value is None else f"{value:.2f}"


def format_delta(delta: float | None, max_drop: float | None = None) -> str:
    """``-0.20``, and ``-0.20 (max_drop 0.10)`` where a drop is gated."""
    text = "n/a" if delta is None else f"{delta:+.2f}"
    return text if max_drop is None else f"{text} (max_drop {format_fraction(max_drop)})"


def shorten(text: str | None, width: int = 300) -> str:
    """One line for the terminal: white space folded, control characters escaped."""
    if text is None:
        return "(none)"
    flat = printable(" ".join(text.split()))
    return textwrap.shorten(flat, width, placeholder=" [...]") if flat else "(empty)"


def describe_drop(set_name: str, name: str, rate: MetricRate) -> str:
    """``rag_set.yaml: faithfulness pass rate 0.70 is 0.20 below the baseline's 0.90,
    more than max_drop 0.05`` (with questions still running: the best it can still be)."""
    assert rate.baseline is not None and rate.n
    best = (rate.passed + rate.pending) / rate.n
    text = (
        f"{set_name}: {name} pass rate {'at most ' if rate.pending else ''}"
        f"{format_fraction(best)} is {format_fraction(rate.baseline - best)} below the "
        f"baseline's {format_fraction(rate.baseline)}, more than max_drop "
        f"{format_fraction(rate.max_drop)}"
    )
    if rate.pending:
        text += f" (decided with {rate.pending} of {rate.n} questions still running)"
    return text


def describe_rate(set_name: str, name: str, rate: MetricRate) -> str:
    """``rag_set.yaml: faithfulness pass rate 3/4 = 0.75 < threshold 0.76``: the rate
    against its threshold, true whatever is still running. With questions pending it
    states the bound that decided (``at most`` when the threshold can no longer be met,
    ``at least`` when it is met whatever they give), else the range the rate may end in."""
    head = f"{set_name}: {name} pass rate"
    threshold = f"threshold {format_fraction(rate.threshold)}"
    if rate.sampled is not None:
        relation = {"pass": ">=", "fail": "<"}.get(rate.sampled.rate or "", "not decided against")
        return (
            f"{head} {rate.passed}/{rate.n} judged = {format_fraction(rate.pass_rate)}; the "
            f"whole set's rate {relation} {threshold} at {rate.sampled.level:.0%} "
            f"(sequential test, decided after {rate.sampled.read:,} of {rate.sampled.size:,} "
            "questions in random order)"
        )
    if not rate.pending:
        return f"{head} {_rate_against(rate, rate.passed, '>=' if rate.ok else '<')} {threshold}"
    running = f"{rate.pending} of {rate.n} questions still running"
    best = rate.passed + rate.pending
    if not rate.could_pass:
        return (
            f"{head} at most {_rate_against(rate, best, '<')} {threshold} (decided with {running})"
        )
    if rate.ok:
        return (
            f"{head} at least {_rate_against(rate, rate.passed, '>=')} {threshold} "
            f"(decided with {running})"
        )
    return (
        f"{head} between {rate.passed}/{rate.n} = {format_fraction(rate.passed / rate.n)} and "
        f"{best}/{rate.n} = {format_fraction(best / rate.n)}, {threshold} (not decided yet: "
        f"{running})"
    )


def _rate_against(rate: MetricRate, passed: int, relation: str) -> str:
    """``3/4 = 0.75 <`` (with ``confidence``: and the lower bound of its interval; with
    labels: the corrected rate, which the gate compares)."""
    text = f"{passed}/{rate.n} = {format_fraction(passed / rate.n)}"
    if rate.labelled is not None and rate.labelled.problem(rate.confidence) is None:
        ppi = rate.labelled.rate(rate.confidence)
        text += f" by the judge, PPI++ with {len(rate.labelled.pairs)} labels:"
        if rate.confidence is None:
            return f"{text} {format_fraction(ppi.estimate)} {relation}"
        return (
            f"{text} {format_fraction(ppi.estimate)}, lower bound of its "
            f"{rate.confidence:.0%} interval {format_fraction(ppi.lower)} {relation}"
        )
    if rate.corrected is not None:
        corrected = rate.corrected.rate(passed, rate.n, rate.confidence)
        text += f" by the judge, corrected with {rate.corrected.file} to"
        if rate.confidence is None:
            return f"{text} {format_fraction(corrected.estimate)} {relation}"
        return (
            f"{text} {format_fraction(corrected.estimate)}, lower bound of its "
            f"{rate.confidence:.0%} interval {format_fraction(corrected.lower)} {relation}"
        )
    if rate.confidence is None:
        return f"{text} {relation}"
    return (
        f"{text}, lower bound of its {rate.confidence:.0%} Wilson interval "
        f"{format_fraction(rate.lower_bound(passed))} {relation}"
    )


def explain(
    record: Mapping[str, Any],
    rates: Mapping[str, MetricRate] | None,
    set_name: str,
    newly: Collection[str] = (),
) -> str:
    """The failure message a user reads for a failed or errored question."""
    lines = [f"query:    {shorten(record['query'])}"]
    if record["outcome"] == "error":
        lines.insert(0, f"rag question errored: {printable(record['error'])}")
        if record["response"] is not None:
            lines.append(f"response: {shorten(record['response'])}")
        return "\n".join(lines)
    failed = [name for name, m in record["metrics"].items() if not m["passing"]]
    lines.insert(0, f"rag question failed {', '.join(failed)}")
    lines.append(f"response: {shorten(record['response'])}")
    for name in failed:
        metric = record["metrics"][name]
        if metric["invalid"]:
            # the reason is ours and says what to do: never cut it short
            lines.append(f"{name}: invalid judgement: {shorten(metric.get('reason'), 2000)}")
            if metric["feedback"] is not None:
                lines.append(f"  judge said: {shorten(metric['feedback'], 400)}")
        else:
            lines.append(f"{name}: failed; judge said: {shorten(metric['feedback'], 400)}")
        if record["must_pass"]:
            lines.append("  must_pass: this question may not fail any metric")
        elif rates is not None and name in rates:
            # only the bounds this question was failed by: a threshold still within reach,
            # or met, decided nothing, and saying "<" of it would be false
            rate = rates[name]
            if not rate.could_pass:
                lines.append("  " + describe_rate(set_name, name, rate))
            if name in newly and rate.dropped:
                was = "is new" if record.get("baseline") is None else "passed it in the baseline"
                lines.append(f"  {describe_drop(set_name, name, rate)}; this question {was}")
            if metric["invalid"] and rate.max_invalid is not None:
                relation = ">" if rate.invalid_exceeded else "<="
                lines.append(
                    f"  {set_name}: {name} invalid judgements {rate.invalid}/{rate.n} "
                    f"{relation} max_invalid {format_fraction(rate.max_invalid)}"
                )
    return "\n".join(lines)


def printable(text: str | None) -> str:
    """Control characters (terminal escapes and the like), bidi overrides and zero-width
    characters as visible ``\\x1b`` escapes (``text.printable``)."""
    if text is None:
        return "(none)"
    return text_printable(text)


def judged_of(rate: Mapping[str, Any]) -> str:
    """`` of 5,000`` after a sequential set's judged count (a rate's JSON), else ``""``."""
    sampled = rate.get("sampled")
    return f" of {sampled['population']:,}" if sampled else ""


def corrected_line(rate: Mapping[str, Any]) -> str | None:
    """``judge 0.91  corrected 0.84 (0.77-0.90)  q1 0.95 q0 0.62 (n=120)`` from a metric's
    report entry (None when no labels correct it); ``n``: the labelled cases."""
    corrected = rate.get("corrected")
    if not corrected:
        return None
    interval = corrected.get("interval")
    shown = (
        f"corrected {format_fraction(corrected['estimate'])} ({interval[0]:.2f}-{interval[1]:.2f})"
        if interval
        else "corrected n/a"
    )
    if corrected.get("method") == "ppi++":
        total = corrected["labelled"] + corrected["unlabelled"]
        return (
            f"judge {format_fraction(rate.get('pass_rate'))}  {shown}  PPI++ "
            f"(n={corrected['labelled']} labelled of {total})"
        )
    labelled = corrected["people_passed"] + corrected["people_failed"]
    return (
        f"judge {format_fraction(rate.get('pass_rate'))}  {shown}  "
        f"q1 {format_fraction(corrected['q1'])} q0 {format_fraction(corrected['q0'])} "
        f"(n={labelled})"
    )


def labels_source(rate: Mapping[str, Any]) -> str:
    """``labels.yaml of 2026-12-07``: the labels file a corrected rate used, and its date."""
    corrected = rate.get("corrected") or {}
    if corrected.get("method") == "ppi++":
        return "the set's questions"
    date = corrected.get("labels_date")
    return f"{corrected.get('labels_file')}{f' of {date}' if date else ''}"


def sampled_line(sample: Mapping[str, Any]) -> str:
    """What a sequential set decided, from its report entry's ``sample``."""
    decision = SHOWN.get(sample.get("decision") or "", "not decided")
    return (
        f"decided {decision} ({sample.get('reason') or 'stopped first'}) after "
        f"{sample['decided_after']:,} of {sample['population']:,} questions in random order "
        f"({sample['visited']:,} asked; level {sample['level']:.0%}, seed {sample['seed']})"
    )
