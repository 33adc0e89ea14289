"""The verdict cache: a 1,000-question suite run cold, then warm, through pytest.

The judges (two metrics) wait 50 ms per call; the app answers at once. The cold run
judges everything and fills the cache; the warm run should make no judge call at all.
Its wall time is compared with the same suite judged by zero-latency judges and no
cache (the floor: what pytest, the app and the runner cost without judging). Each run is
its own pytest process.

    python benchmarks/bench_cache.py [--questions 1000] [--latency 0.05] [--workers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from harness import run_pytest

CONFTEST = """
import asyncio
import json
import os

import pytest
from llama_index.core.evaluation import EvaluationResult

CALLS = []


class SleepingJudge:
    def __init__(self, latency):
        self.latency = latency

    async def aevaluate(self, **kwargs):
        CALLS.append(1)
        await asyncio.sleep(self.latency)
        return EvaluationResult(passing=True, score=1.0, feedback="YES")


async def app(query):
    return (f"Answer: {query}", [f"Context: {query}"])


@pytest.fixture(scope="session")
def rag_query_engine():
    return app


@pytest.fixture(scope="session")
def rag_evaluators():
    latency = float(os.environ["JUDGE_LATENCY"])
    return {"faithfulness": SleepingJudge(latency), "relevancy": SleepingJudge(latency)}


def pytest_sessionfinish(session):
    with open("calls.json", "w") as out:
        json.dump(len(CALLS), out)
"""


def run(folder: Path, latency: float, workers: int, *extra: str) -> tuple[float, int]:
    env = {**os.environ, "JUDGE_LATENCY": str(latency)}
    wall = run_pytest(folder, f"--rag-workers={workers}", *extra, env=env).wall
    return wall, json.loads((folder / "calls.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "conftest.py").write_text(CONFTEST)
        (folder / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        lines = ["questions:"] + [
            f'  - {{id: q{i}, query: "Question {i}?"}}' for i in range(args.questions)
        ]
        (folder / "rag_suite.yaml").write_text("\n".join(lines) + "\n")
        floor, floor_calls = run(folder, 0.0, args.workers, "--rag-cache=off")
        cold, cold_calls = run(folder, args.latency, args.workers)
        warm, warm_calls = run(folder, args.latency, args.workers)
    print(
        f"# {args.questions} questions x 2 judges at {args.latency * 1000:g} ms, "
        f"{args.workers} workers | python {platform.python_version()} | {os.cpu_count()} cores"
    )
    print("| run | wall s | judge calls | ratio to zero-latency judges |")
    print("|---|---|---|---|")
    print(f"| zero-latency judges, no cache | {floor:.2f} | {floor_calls} | 1.00x |")
    print(f"| cold cache | {cold:.2f} | {cold_calls} | {cold / floor:.2f}x |")
    print(f"| warm cache | {warm:.2f} | {warm_calls} | {warm / floor:.2f}x |")


if __name__ == "__main__":
    main()
