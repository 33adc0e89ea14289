"""What the run counted, added up over xdist workers (no pytester: the sums alone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_rageval.cache import VerdictCache
from pytest_rageval.totals import Totals, WorkerOutput

NOTHING = {
    "records": [],
    "gates": {},
    "notices": [],
    "metrics": [],
    "stopped": None,
    "complete": True,
    "counts": {},
    "usage": {},
    "cache": None,
}


def output(**changes: object) -> WorkerOutput:
    return WorkerOutput(**{**NOTHING, **changes})  # type: ignore[typeddict-item]


def meter(prompt: int, completion: int, calls: int, model: str) -> dict[str, object]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "calls": calls,
        "models": {model: calls},
    }


def test_two_workers_add_up() -> None:
    totals = Totals()
    totals.add(
        output(
            notices=["slow judge", "rpm"],
            counts={"app_calls": 3, "judge_calls": 6, "retries": 1},
            usage={
                "usage": {"faithfulness": meter(1000, 10, 3, "gpt-4o-mini-2024-07-18")},
                "saved": {},
                "models": {"faithfulness": "gpt-4o-mini"},
            },
            cache={
                "replayed": 0,
                "recorded": 3,
                "metrics": {"faithfulness": {"hits": 1, "misses": 2}},
            },
        )
    )
    totals.add(
        output(
            notices=["rpm", "disk"],
            counts={"app_calls": 2, "judge_calls": 2},
            usage={
                "usage": {"faithfulness": meter(500, 5, 2, "gpt-4o-mini-2024-07-18")},
                "saved": {"faithfulness": meter(250, 2, 1, "gpt-4o-mini-2024-07-18")},
                "models": {"faithfulness": "gpt-4o-mini"},
            },
            cache={
                "replayed": 2,
                "recorded": 0,
                "metrics": {"faithfulness": {"hits": 4, "misses": 0}},
            },
        )
    )
    assert totals.notices == ["slow judge", "rpm", "disk"]
    assert totals.run_counts(None) == {"app_calls": 5, "judge_calls": 8, "retries": 1}
    # $0.15 / $0.60 per million tokens in / out
    report = totals.usage_report(None, {"gpt-4o-mini": (0.15, 0.60)})
    spent = report["faithfulness"]
    assert (spent["prompt_tokens"], spent["completion_tokens"], spent["calls"]) == (1500, 15, 5)
    assert spent["cost"] == pytest.approx((1500 * 0.15 + 15 * 0.60) / 1e6)
    assert spent["saved"]["prompt_tokens"] == 250
    assert spent["saved"]["cost"] == pytest.approx((250 * 0.15 + 2 * 0.60) / 1e6)


def test_the_cache_counts_are_this_process_and_its_workers(tmp_path: Path) -> None:
    totals = Totals()
    assert totals.cache_stats(None) is None
    totals.add(
        output(
            cache={"replayed": 1, "recorded": 2, "metrics": {"relevancy": {"hits": 3, "misses": 1}}}
        )
    )
    cache = VerdictCache(tmp_path)
    assert cache.get("faithfulness", "k") is None  # one miss in this process
    stats = totals.cache_stats(cache)
    cache.close()
    assert stats is not None
    assert stats["metrics"] == {
        "faithfulness": {"hits": 0, "misses": 1},
        "relevancy": {"hits": 3, "misses": 1},
    }
    assert (stats["replayed"], stats["recorded"]) == (1, 2)
