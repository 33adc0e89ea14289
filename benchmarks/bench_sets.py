"""Many small sets against one big one, through pytest.

The same 500 questions as one data file and as 100 files of 5, each in its own pytest
process. The app and both judges (faithfulness, relevancy) wait 50 ms per call and cost
no CPU to speak of, so the difference is how full the runner's pool stays: a set is
submitted when its first item runs, and a small set's last questions leave the pool
half empty before the next set starts.

    python benchmarks/bench_sets.py [--latency 0.05] [--workers 8] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from harness import run_pytest

CONFTEST = """
import asyncio

import pytest
from llama_index.core.evaluation import EvaluationResult

LATENCY = {latency!r}


class SleepOnlyJudge:
    async def aevaluate(self, **kwargs):
        await asyncio.sleep(LATENCY)
        return EvaluationResult(passing=True, score=1.0)


async def app(query):
    await asyncio.sleep(LATENCY)
    return (f"Answer: {{query}}", [f"Context: {{query}}"])


@pytest.fixture(scope="session")
def rag_query_engine():
    return app


@pytest.fixture(scope="session")
def rag_evaluators():
    return {{"faithfulness": SleepOnlyJudge(), "relevancy": SleepOnlyJudge()}}
"""


def write(folder: Path, files: int, per_file: int, latency: float) -> None:
    folder.mkdir()
    (folder / "conftest.py").write_text(CONFTEST.format(latency=latency))
    (folder / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    for f in range(files):
        lines = ["questions:"] + [
            f'  - {{id: q{i}, query: "Question {f}-{i}?"}}' for i in range(per_file)
        ]
        (folder / f"rag_set{f:03d}.yaml").write_text("\n".join(lines) + "\n")


def run(folder: Path, workers: int) -> float:
    # every run judges afresh: with the verdict cache on, a repeat would only ask the app
    return run_pytest(folder, f"--rag-workers={workers}", "--rag-cache=off").wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    ideal = 500 * 3 * args.latency / args.workers
    print(
        f"# 500 questions x 3 calls at {args.latency * 1000:g} ms, {args.workers} workers | "
        f"python {platform.python_version()} | {os.cpu_count()} cores | best of {args.repeat}"
    )
    print("| layout | wall s (pytest included) | ideal s (calls only) | ratio to one set |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        write(one, 1, 500, args.latency)
        write(many, 100, 5, args.latency)
        big = min(run(one, args.workers) for _ in range(args.repeat))
        small = min(run(many, args.workers) for _ in range(args.repeat))
    print(f"| one set of 500 | {big:.2f} | {ideal:.2f} | 1.00x |")
    print(f"| 100 sets of 5 | {small:.2f} | {ideal:.2f} | {small / big:.2f}x |")


if __name__ == "__main__":
    main()
