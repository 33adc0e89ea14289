"""The sequential gate end to end, through pytest: a 5,000-question file judged by a
deterministic local metric (``contains``), with an app that counts its calls. For each
true pass rate, the same file runs with ``--rag-sample sequential`` and with
``--rag-sample all``; it prints the app's calls, the questions the gate visited, both
verdicts (they must agree) and both wall times.

    python benchmarks/bench_sequential_pytest.py [--n 5000] [--rates 0.80 0.85 0.95 0.99]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from harness import run_pytest

CONFTEST = """
import pytest
from llama_index.core.base.response.schema import Response

ASKED = []

class App:
    def query(self, q):
        ASKED.append(q)
        return Response(response="yes" if q.startswith("pass") else "no", source_nodes=[])

@pytest.fixture(scope="session")
def rag_query_engine():
    return App()

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"app calls: {len(ASKED)}")
"""


def write_project(folder: Path, n: int, rate: float, tau: float) -> None:
    passes = round(rate * n)
    words = ["pass"] * passes + ["fail"] * (n - passes)
    random.Random(0).shuffle(words)
    lines = ["evaluators: [contains]", f"thresholds: {{contains: {tau}}}", "questions:"]
    lines += [f"  - {{id: q{i}, query: '{w} {i}', reference: 'yes'}}" for i, w in enumerate(words)]
    (folder / "rag_big.yaml").write_text("\n".join(lines) + "\n")
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


def one(folder: Path, sample: str) -> tuple[float, int, str, int]:
    run = run_pytest(folder, f"--rag-sample={sample}", "--rag-report=r.json", codes=(0, 1))
    calls = int(run.output.split("app calls: ")[1].split()[0])
    entry = json.loads((folder / "r.json").read_text())["sets"][0]
    verdict = entry["metrics"]["contains"]["verdict"]
    visited = entry.get("sample", {}).get("visited", calls)
    return run.wall, calls, verdict, visited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--tau", type=float, default=0.9)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.80, 0.85, 0.95, 0.99])
    args = parser.parse_args()
    print(f"{args.n} questions, threshold {args.tau}, local metric, sync app")
    print("rate   verdict(seq/all)   app calls seq   visited   all   saving   wall seq   wall all")
    for rate in args.rates:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_project(folder, args.n, rate, args.tau)
            seq_wall, seq_calls, seq_verdict, visited = one(folder, "sequential")
            all_wall, all_calls, all_verdict, _ = one(folder, "all")
        assert seq_calls == visited, (seq_calls, visited)
        agree = "" if seq_verdict == all_verdict else "  DISAGREE"
        print(
            f"{rate:<6} {seq_verdict}/{all_verdict}{agree:<10} {seq_calls:>13}   {visited:>7}   "
            f"{all_calls:>4}   {1 - seq_calls / all_calls:>6.1%}   {seq_wall:>7.1f}s   "
            f"{all_wall:>7.1f}s"
        )


if __name__ == "__main__":
    main()
