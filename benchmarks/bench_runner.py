"""pytest_rageval.BatchRunner against llama-index's BatchEvalRunner, same workload, one run.

200 queries against a small vector index (chunks of ~600 tokens, top 2), faithfulness +
relevancy, every LLM call (the query engine's answer and each judgement) answered by a
CustomLLM that sleeps 50 ms. For each worker count the two runners alternate; the script
prints wall time, the ideal (LLM calls x latency / workers), their ratio and CPU
milliseconds per item, and checks that both gave the same verdicts.

Two more rows per worker count show where the rest of the time goes, on our runner only:
the same run with the judges replaced by ones that only sleep (what the app's own CPU
costs), and with the app replaced too (what the event loop and timers cost on their own).

    python benchmarks/bench_runner.py [--queries 200] [--latency 0.05] [--repeat 2]
                                      [--facts 40] [--workers 8 32] [--judge-rounds 100]

Last, the CPU per judgement of the default judge over HTTP at zero latency, on llama-index's
apredict chain and on the lean path (``bench_judge_cpu.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
import warnings
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.evaluation import (
    BatchEvalRunner,
    EvaluationResult,
    FaithfulnessEvaluator,
    RelevancyEvaluator,
)
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import PrivateAttr

import pytest_rageval
from pytest_rageval import BatchRunner


class SleepyLLM(CustomLLM):
    """Answers after ``latency`` seconds: judges get YES/NO, the app gets a sentence."""

    latency: float = 0.05
    _calls: int = PrivateAttr(default=0)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="sleepy")

    def _text(self, prompt: str) -> str:
        self._calls += 1
        if "YES" in prompt:  # the judge templates ask for YES or NO
            return "NO" if "volcano 7" in prompt else "YES"
        return "The answer is in the context."

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        time.sleep(self.latency)
        return CompletionResponse(text=self._text(prompt))

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        await asyncio.sleep(self.latency)
        return CompletionResponse(text=self._text(prompt))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise NotImplementedError


def build(latency: float, facts: int = 40) -> tuple[Any, dict[str, Any], SleepyLLM]:
    llm = SleepyLLM(latency=latency)
    topics = ["honeybee", "volcano", "lighthouse", "glacier", "comet"]
    # one chunk per document, of a realistic size: 40 facts are ~600 tokens
    documents = [
        Document(
            text=" ".join(
                f"Fact {j} about the {topics[i % 5]} {i}: it has property {i * 7 + j}."
                for j in range(facts)
            )
        )
        for i in range(40)
    ]
    index = VectorStoreIndex.from_documents(documents, embed_model=MockEmbedding(embed_dim=16))
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    evaluators = {
        "faithfulness": FaithfulnessEvaluator(llm=llm),
        "relevancy": RelevancyEvaluator(llm=llm),
    }
    return engine, evaluators, llm


def run_ours(engine: Any, evaluators: dict[str, Any], queries: list[str], workers: int) -> Any:
    with BatchRunner(evaluators, workers=workers) as runner:
        return runner.evaluate_queries(engine, queries=queries)


def run_peer(engine: Any, evaluators: dict[str, Any], queries: list[str], workers: int) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # asyncio_module() is deprecated
        runner = BatchEvalRunner(evaluators, workers=workers)
    return asyncio.run(runner.aevaluate_queries(engine, queries=queries))


class SleepOnlyJudge:
    """A judge with no CPU to speak of: it waits one LLM latency and passes."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    async def aevaluate(self, **kwargs: Any) -> Any:
        await asyncio.sleep(self.latency)
        return EvaluationResult(passing=True, score=1.0)


def sleep_only_app(latency: float, response: Any) -> Any:
    """An app with no CPU to speak of: it waits one LLM latency and gives ``response``."""

    async def app(query: str) -> Any:
        await asyncio.sleep(latency)
        return response

    return app


def verdicts(results: dict[str, list[Any]]) -> dict[str, list[bool | None]]:
    return {name: [r.passing for r in rs] for name, rs in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--facts", type=int, default=40, help="facts per chunk (40: ~600 tokens)")
    parser.add_argument(
        "--judge-rounds",
        type=int,
        default=100,
        help="rounds of bench_judge_cpu.py after the table (0: none)",
    )
    args = parser.parse_args()

    engine, evaluators, llm = build(args.latency, args.facts)
    queries = [f"What property does the volcano {i} have?" for i in range(args.queries)]
    run_ours(engine, evaluators, queries[:4], 4)  # warm up imports and caches
    run_peer(engine, evaluators, queries[:4], 4)

    print(
        f"# {args.queries} queries, faithfulness + relevancy, "
        f"LLM latency {args.latency * 1000:g} ms"
        f" | python {platform.python_version()} | pytest-rageval {pytest_rageval.__version__}"
    )
    header = ("workers", "runner", "wall s", "ideal s", "ratio", "CPU ms/item", "LLM calls")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for workers in args.workers:
        best: dict[str, float] = {}
        reference = None
        for _ in range(args.repeat):
            for name, run in (("pytest-rageval", run_ours), ("BatchEvalRunner", run_peer)):
                llm._calls = 0
                wall, cpu = time.perf_counter(), time.process_time()
                results = run(engine, evaluators, queries, workers)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                calls = llm._calls
                ideal = calls * args.latency / workers
                if reference is None:
                    reference = verdicts(results)
                elif verdicts(results) != reference:
                    raise SystemExit(f"{name} gave different verdicts at {workers} workers")
                best[name] = min(best.get(name, wall), wall)
                print(
                    f"| {workers} | {name} | {wall:.2f} | {ideal:.2f} | {wall / ideal:.2f}x"
                    f" | {cpu / len(queries) * 1000:.2f} | {calls} |"
                )
        speedup = best["BatchEvalRunner"] / best["pytest-rageval"]
        print(f"| {workers} | speed-up (best of {args.repeat}) | | | {speedup:.2f}x | | |")
        judges = {name: SleepOnlyJudge(args.latency) for name in evaluators}
        app = sleep_only_app(args.latency, engine.query(queries[0]))
        calls = len(queries) * (1 + len(judges))
        ideal = calls * args.latency / workers
        for name, query_engine in (
            ("pytest-rageval, judges without CPU", engine),
            ("pytest-rageval, app and judges without CPU", app),
        ):
            walls = []
            for _ in range(args.repeat):
                wall = time.perf_counter()
                run_ours(query_engine, judges, queries, workers)
                walls.append(time.perf_counter() - wall)
            wall, ratio = min(walls), min(walls) / ideal
            print(f"| {workers} | {name} | {wall:.2f} | {ideal:.2f} | {ratio:.2f}x | | {calls} |")
    if args.judge_rounds:
        judge_cpu(args.judge_rounds)


def judge_cpu(rounds: int) -> None:
    """CPU per judgement of the default judge over HTTP at zero latency, llama-index's
    apredict chain against the lean path (``bench_judge_cpu.py``)."""
    import os

    import bench_judge_cpu
    from bench_http import start_server

    server, url = start_server(0.0)
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    os.environ["OPENAI_API_BASE"] = url
    try:
        for path in ("today", "lean"):
            bench_judge_cpu.set_path(path)
            per_call, _ = bench_judge_cpu.measure(rounds, profile=False, top=0)
            print(f"# default judge over HTTP, {path} path: {per_call:.2f} CPU ms per judgement")
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
