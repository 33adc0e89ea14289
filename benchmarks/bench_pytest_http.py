"""Through pytest over HTTP: 200 questions, with and without pytest-xdist.

The same app and judges as `bench_http.py` (a llama-index vector index whose LLM is
llama-index's `OpenAI`; the plugin's default `rag_judge_llm`), against the loopback
OpenAI-compatible server in its own process answering each request after 50 ms, but run
the way users run them: `pytest --rag-workers N`, 200 questions in data files of 50
(pytest-xdist keeps a set on one worker, so one file would leave the second worker idle).
Each run is its own pytest process; wall time includes pytest's start and collection.
`-n 2` shares the `--rag-workers` budget between two workers, so the ideal is the same;
what changes is that two event loops share the client CPU.

    python benchmarks/bench_pytest_http.py [--workers 8 32] [--questions 200] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

from bench_http import start_server
from harness import run_pytest

HERE = Path(__file__).resolve().parent

CONFTEST = """
import sys

import pytest

sys.path.insert(0, {here!r})
from bench_http import build_app, documents  # noqa: E402


@pytest.fixture(scope="session")
def rag_query_engine():
    import os

    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding

    index = VectorStoreIndex.from_documents(documents(), embed_model=MockEmbedding(embed_dim=16))
    return build_app(index, os.environ["OPENAI_API_BASE"])
"""

PER_FILE = 50


def write_project(folder: Path, questions: int) -> None:
    (folder / "conftest.py").write_text(CONFTEST.format(here=str(HERE)))
    (folder / "pytest.ini").write_text(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "rag_thresholds =\n    faithfulness=0.0\n    relevancy=0.0\n"
    )
    for f in range(questions // PER_FILE):
        lines = ["questions:"] + [
            f'  - {{id: q{i}, query: "What property does the volcano {f * PER_FILE + i} have?"}}'
            for i in range(PER_FILE)
        ]
        (folder / f"rag_set{f}.yaml").write_text("\n".join(lines) + "\n")


def run(folder: Path, workers: int, xdist: int, questions: int) -> float:
    # every run judges afresh: with the verdict cache on, a repeat would only ask the app
    args = (f"--rag-workers={workers}", "-n", str(xdist), "--rag-cache=off")
    return run_pytest(folder, *args, expect=f"{questions} passed").wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--questions", type=int, default=200, help="a multiple of 50")
    args = parser.parse_args()
    server, url = start_server(args.latency)
    os.environ.update(OPENAI_API_KEY="sk-bench", OPENAI_API_BASE=url)
    questions = args.questions
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_project(folder, questions)
            run(folder, 8, 0, questions)  # warm up the server and the file system cache
            print(
                f"# {questions} questions x (app + faithfulness + relevancy) over HTTP through "
                f"pytest, {args.latency * 1000:g} ms a request | python "
                f"{platform.python_version()} | {os.cpu_count()} cores | best of {args.repeat}"
            )
            print("| --rag-workers | ideal s (calls only) | -n 0 s | -n 2 s | speed-up of -n 2 |")
            print("|---|---|---|---|---|")
            for workers in args.workers:
                walls: dict[int, list[float]] = {0: [], 2: []}
                for _ in range(args.repeat):
                    for xdist, seen in walls.items():
                        seen.append(run(folder, workers, xdist, questions))
                ideal = questions * 3 * args.latency / workers
                one, two = min(walls[0]), min(walls[2])
                print(f"| {workers} | {ideal:.2f} | {one:.2f} | {two:.2f} | {one / two:.2f}x |")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
