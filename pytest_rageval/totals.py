"""What the run counted (calls, tokens and cost, verdict cache hits), this process's and,
on the xdist controller, its workers': one payload type for what a worker sends, one
place that adds it up. No pytest in here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from pytest_rageval import usage
from pytest_rageval.verdicts import QuestionRecord

if TYPE_CHECKING:
    from pytest_rageval.cache import VerdictCache
    from pytest_rageval.runner import Runner

COUNTED = ("app_calls", "judge_calls", "retries")
"""The runner's counts a report shows (``timing``)."""


class WorkerOutput(TypedDict):
    """What an xdist worker alone knows, sent to the controller once its session ends."""

    records: list[QuestionRecord]
    """Question records the controller cannot have from the worker's reports: of items
    that never ran, or, when the worker was stopped, all it holds (merged once each)."""
    gates: dict[str, dict[str, Any]]
    """Each of the worker's sets' ``Gate.to_json()``, by set name."""
    notices: list[str]
    metrics: list[str]
    """Every metric the worker's sets were judged on."""
    stopped: str | None
    complete: bool
    counts: dict[str, int]
    """The worker's runner's counts (app calls, judge calls, retries)."""
    usage: dict[str, Any]
    """:func:`own_usage` of the worker."""
    cache: dict[str, Any] | None
    """The worker's ``VerdictCache.stats()`` (None: no cache)."""


def own_usage(runner: Runner | None) -> dict[str, Any]:
    """The tokens ``runner`` metered, what its cache saved, and each metric's model."""
    if runner is None:
        return {}
    return {
        "usage": {name: meter.to_json() for name, meter in runner.usage.items()},
        "saved": {name: meter.to_json() for name, meter in runner.saved.items()},
        "models": dict(runner.judge_models),
    }


class Totals:
    """The workers' counts, added up as their outputs arrive; this process's own are
    added when a total is asked for (they keep changing until the end)."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.counts: Counter[str] = Counter()
        self.usage: dict[str, dict[str, Any]] = {"usage": {}, "saved": {}, "models": {}}
        self.cache_counters: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()

    def add(self, output: WorkerOutput) -> None:
        """One worker's counts (its records, stop and metrics are the session's)."""
        self.notices.extend(n for n in output["notices"] if n not in self.notices)
        self.counts.update(output["counts"])
        for kind in ("usage", "saved", "models"):
            for name, value in (output["usage"].get(kind) or {}).items():
                if kind == "models":
                    self.usage["models"].setdefault(name, value)
                else:
                    self.usage[kind].setdefault(name, usage.Meter()).add(value)
        worker_cache = output["cache"] or {}
        for counter in ("replayed", "recorded"):
            self.cache_counters[counter] += worker_cache.get(counter, 0)
        for metric, seen in (worker_cache.get("metrics") or {}).items():
            self.hits[metric] += seen.get("hits", 0)
            self.misses[metric] += seen.get("misses", 0)

    def run_counts(self, runner: Runner | None) -> dict[str, int]:
        """App calls, judge calls and retries of the whole run."""
        counts = Counter(self.counts)
        counts.update(runner.counts if runner is not None else {})
        return {key: counts[key] for key in COUNTED}

    def usage_report(
        self, runner: Runner | None, prices: Mapping[str, tuple[float, float]]
    ) -> dict[str, Any]:
        """Tokens per metric and for the app (``query``), what the cache saved, and the
        cost when ``prices`` knows the models."""
        totals: dict[str, dict[str, usage.Meter]] = {"usage": {}, "saved": {}}
        models = dict(self.usage["models"])
        own = own_usage(runner)
        models.update(own.get("models", {}))
        for kind in ("usage", "saved"):
            for source in (self.usage[kind], own.get(kind, {})):
                for name, value in source.items():
                    totals[kind].setdefault(name, usage.Meter()).add(value)
        report: dict[str, Any] = {}
        for name in sorted(set(totals["usage"]) | set(totals["saved"])):
            spent = totals["usage"].get(name, usage.Meter()).to_json()
            saved = totals["saved"].get(name, usage.Meter()).to_json()
            answered = list(spent["models"]) + list(saved["models"])
            price = usage.price_of(prices, models.get(name), answered)
            report[name] = {
                **spent,
                "cost": usage.cost(spent, price),
                "saved": {**saved, "cost": usage.cost(saved, price)},
            }
        return report

    def cache_stats(self, cache: VerdictCache | None) -> dict[str, Any] | None:
        """Verdict cache hits and misses per metric (None without a cache)."""
        if cache is None:
            return None
        own = cache.stats()
        return self.cache_report(own["mode"], own["path"], own)

    def cache_report(
        self, mode: str, path: str, own: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The workers' verdict cache counts, plus ``own`` (this process's
        ``VerdictCache.stats()``, when it has a cache), in that shape."""
        hits, misses = Counter(self.hits), Counter(self.misses)
        counters = Counter(self.cache_counters)
        if own is not None:
            for metric, seen in own["metrics"].items():
                hits[metric] += seen["hits"]
                misses[metric] += seen["misses"]
            counters.update(replayed=own["replayed"], recorded=own["recorded"])
        return {
            "mode": mode,
            "path": path,
            "metrics": {
                m: {"hits": hits[m], "misses": misses[m]} for m in sorted(set(hits) | set(misses))
            },
            "replayed": counters["replayed"],
            "recorded": counters["recorded"],
        }
