"""Merging a sharded run: time and peak memory of ``rageval merge`` over N parts holding
100,000 question records in all, and a part's size per question against the merged
(full) report's. Records are synthetic (each as big as a judged question's with a short
response and context); the merge runs in a child process so its peak RSS is its own.

    python benchmarks/bench_shards.py [--questions 100000] [--shards 4]

Targets (issue 20): under 10 s and under 500 MB for 100,000 records; a part under 2x the
full report's size per question.
"""

from __future__ import annotations

import argparse
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_rageval.parts import Shard, part_document
from pytest_rageval.reports.json import write_json

SETS = 20


def record(set_name: str, i: int, rng: random.Random) -> dict[str, object]:
    passing = rng.random() < 0.85
    return {
        "set": set_name,
        "id": f"q{i}",
        "query": f"What does section {i} of the handbook say about refunds?",
        "reference": f"Refunds within {i % 30} days",
        "must_pass": False,
        "tags": [],
        "response": f"Section {i} says refunds are accepted within {i % 30} days of purchase.",
        "contexts": [f"Handbook section {i}: refunds are accepted within {i % 30} days."],
        "outcome": "passed" if passing else "judged",
        "evaluated": True,
        "error": None,
        "metrics": {
            "correctness": {
                "result": "passing" if passing else "failing",
                "passing": passing,
                "score": 4.5 if passing else 2.0,
                "feedback": "The answer matches the reference." if passing else "It does not.",
                "invalid": False,
                "reason": None,
                "error": None,
            }
        },
        "baseline": None,
    }


def write_parts(folder: Path, questions: int, shards: int) -> list[Path]:
    rng = random.Random(0)
    per_set = questions // SETS
    names = [f"rag_set{n:02}.yaml" for n in range(SETS)]
    everything = [record(name, i, rng) for name in names for i in range(per_set)]
    positions = {(r["set"], r["id"]): n for n, r in enumerate(everything)}
    gates = {name: {"thresholds": {"correctness": 0.8}} for name in names}
    settings = {"report_text": "truncate", "thresholds": {}}
    paths = []
    for index in range(1, shards + 1):
        shard = Shard(index, shards)
        mine = [r for r in everything if shard.keeps(str(r["set"]), str(r["id"]))]
        document = part_document(
            shard,
            fingerprint="bench",
            sizes=dict.fromkeys(names, per_set),
            gates=gates,
            records=mine,
            positions=positions,  # type: ignore[arg-type]
            run={
                "settings": settings,
                "thresholds_where": "rag_thresholds",
                "prices": {},
                "baseline": {"path": None, "digest": None},
                "versions": {},
                "complete": True,
                "stopped": None,
                "exitstatus": 0,
                "others_failed": 0,
                "notices": [],
                "metrics": ["correctness"],
                "counts": {},
                "usage": {},
                "cache": None,
                "timing": {"wall_seconds": 1.0},
                "deselected": questions - len(mine),
            },
        )
        path = folder / f"part-{index}.json"
        write_json(path, document)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        parts = write_parts(folder, args.questions, args.shards)
        merged = folder / "merged.json"
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest_rageval.cli",
                "merge",
                *map(str, parts),
                "--out",
                str(merged),
            ],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        assert done.returncode in (0, 1), done.stderr
        part_bytes = sum(path.stat().st_size for path in parts)
        full_bytes = merged.stat().st_size
        print(
            f"merge of {args.questions:,} records from {args.shards} parts: {seconds:.1f} s, "
            f"peak RSS {peak_mb:.0f} MB (targets < 10 s, < 500 MB)"
        )
        print(
            f"parts {part_bytes / args.questions:.0f} B/question, merged report "
            f"{full_bytes / args.questions:.0f} B/question: ratio "
            f"{part_bytes / full_bytes:.2f} (target < 2)"
        )


if __name__ == "__main__":
    main()
