"""Big suites: N questions through the plugin against a plain parametrized test.

Both sides run in their own `pytest` process with llama-index imported, and do the same
work per question: ask a trivial sync app and check the answer contains the reference.
The plugin reads the questions from a data file (YAML or JSONL) and judges them with
`ContainsEvaluator`; the plain test is `@pytest.mark.parametrize` over the same
questions, loaded from JSON, calling the same app and the same check. Prints wall time
and peak RSS of each, and the plugin's ratio to the plain test. The plugin runs twice:
with the app as a sync function (called in the runner's threads, as sync apps are) and
as an `async def`.

    python benchmarks/bench_suite.py [--questions 1000 10000] [--formats yaml jsonl]
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
import llama_index.core  # both sides pay for it
import pytest
from pytest_rageval import ContainsEvaluator


def app(query):
    return (f"The answer to {query} is yes.", [query])


@pytest.fixture(scope="session")
def rag_query_engine():
    return app


@pytest.fixture(scope="session")
def rag_evaluators():
    return {"contains": ContainsEvaluator()}
"""

PLAIN = """
import json
import pathlib

import pytest
from conftest import app

QUESTIONS = json.loads((pathlib.Path(__file__).parent / "questions.json").read_text())


@pytest.mark.parametrize("question", QUESTIONS, ids=[q["id"] for q in QUESTIONS])
def test_plain(question):
    answer, contexts = app(question["query"])
    assert question["reference"].casefold() in " ".join(answer.split()).casefold()
"""


ASYNC_CONFTEST = CONFTEST.replace("def app(query):", "async def app(query):")


def questions(n: int) -> list[dict[str, str]]:
    return [
        {"id": f"q{i}", "query": f"What is question {i}?", "reference": "yes"} for i in range(n)
    ]


def write_project(folder: Path, n: int, fmt: str) -> None:
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nrag_thresholds = contains=1.0\n"
    )
    items = questions(n)
    (folder / "plain").mkdir()
    (folder / "plain" / "questions.json").write_text(json.dumps(items))
    (folder / "plain" / "test_plain.py").write_text(PLAIN)
    (folder / "plain" / "conftest.py").write_text(CONFTEST)
    for name, conftest in (("rag", CONFTEST), ("rag_async", ASYNC_CONFTEST)):
        rag = folder / name
        rag.mkdir()
        (rag / "conftest.py").write_text(conftest)
        if fmt == "jsonl":
            (rag / "rag_big.jsonl").write_text("\n".join(json.dumps(q) for q in items) + "\n")
        else:
            lines = ["questions:"] + [
                f'  - {{id: {q["id"]}, query: "{q["query"]}", reference: "{q["reference"]}"}}'
                for q in items
            ]
            (rag / "rag_big.yaml").write_text("\n".join(lines) + "\n")


def run(folder: Path, target: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one pytest process."""
    done = run_pytest(folder, target)
    return done.wall, done.peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--formats", nargs="+", default=["yaml", "jsonl"])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"# python {platform.python_version()} | {os.cpu_count()} cores | best of {args.repeat}")
    header = ("questions", "format", "app", "plain s", "plugin s", "time ratio")
    header += ("plain MB", "plugin MB", "RSS ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for n in args.questions:
        for fmt in args.formats:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                write_project(folder, n, fmt)
                runs: dict[str, list[tuple[float, float]]] = {"plain": [], "rag": []}
                runs["rag_async"] = []
                for _ in range(args.repeat):  # interleaved, so that drift hits all alike
                    for target, seen in runs.items():
                        seen.append(run(folder, target))
            plain = min(runs["plain"])
            for target, app in (("rag", "sync"), ("rag_async", "async")):
                ours = min(runs[target])
                print(
                    f"| {n} | {fmt} | {app} | {plain[0]:.2f} | {ours[0]:.2f} | "
                    f"{ours[0] / plain[0]:.2f}x | {plain[1]:.0f} | {ours[1]:.0f} | "
                    f"{ours[1] / plain[1]:.2f}x |"
                )


if __name__ == "__main__":
    main()
