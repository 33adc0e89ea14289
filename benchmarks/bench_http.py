"""The HTTP path: llama-index's OpenAI client against a loopback OpenAI-compatible server.

200 queries x (the app's answer + faithfulness + relevancy) = 600 chat requests to
`tests/openai_server.py`, run in its own process, answering each after 50 ms. The app
is a llama-index vector index (MockEmbedding, top 2) whose LLM is llama-index's `OpenAI`
on its default transport, as a user's app would be. For each worker count:

- app alone: the same queries with nothing judged: the app's own client, synthesizer and
  tokenizer already cost this much on one loop. The floor is max(ideal, app alone);
- pytest-rageval: BatchRunner with the judge built as the default `rag_judge_llm` builds
  it (aiohttp transport);
- pytest-rageval, judge on httpx: the same with the openai SDK's default transport (the
  judge before it moved to aiohttp);
- pytest-rageval, apredict path: the default judge with the lean path off
  (``lean.ENABLED = False``), each judgement through llama-index's ``apredict`` chain.
  The server records every request body: both rows must send the same bodies, byte for
  byte (compared as sorted lists, since the order of concurrent requests varies);
- BatchEvalRunner: llama-index's runner, judge on the default transport;
- app + SDK judge requests: no runner and no llama-index judge: ``workers`` coroutines on
  one loop each take a question, ask the app, and send its two judge prompts
  (llama-index's own templates) one after the other straight through
  ``AsyncOpenAI.chat.completions.create`` on the aiohttp transport: every slot is always
  busy, with no scheduling of any kind. The least any runner that sends its judges' requests through
  the openai SDK on one event loop can take on this machine;
- pytest-rageval, judges without CPU: judges that only wait one latency, so what is left
  is the app and the runner: the gap to the pytest-rageval row is the judge client's own
  CPU (the openai SDK and llama-index's wrappers), which the plugin does not control.

Both runners must give the same verdicts. Every LLM object is built anew for each run:
a client used on one event loop fails on the next.

    python benchmarks/bench_http.py [--queries 200] [--latency 0.05] [--repeat 2]
                                    [--workers 8 32 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bench_runner import SleepOnlyJudge  # the same judge as the in-process benchmark
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.evaluation import BatchEvalRunner, FaithfulnessEvaluator, RelevancyEvaluator
from llama_index.llms.openai import OpenAI

import pytest_rageval
from pytest_rageval import BatchRunner, judges, lean

TESTS = Path(__file__).resolve().parent.parent / "tests"
SERVER = """
import hashlib, sys, time
sys.path.insert(0, {tests!r})
from openai_server import serve
with serve() as (url, state):
    state.delay = {latency!r}
    print(url, flush=True)
    for line in sys.stdin:  # until the benchmark closes our stdin
        with state.lock:
            bodies, state.bodies = sorted(state.bodies), []
        print(len(bodies), hashlib.sha256(b"\\n".join(bodies)).hexdigest(), flush=True)
"""


def bodies_since(server: subprocess.Popen[str]) -> str:
    """The count and digest of the request bodies the server received since last asked
    (sorted: the order of concurrent requests varies)."""
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write("bodies\n")
    server.stdin.flush()
    return server.stdout.readline().strip()


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tests=str(TESTS), latency=latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def documents() -> list[Document]:
    topics = ["honeybee", "volcano", "lighthouse", "glacier", "comet"]
    return [
        Document(
            text=" ".join(
                f"Fact {j} about the {topics[i % 5]} {i}: it has property {i * 7 + j}."
                for j in range(20)
            )
        )
        for i in range(40)
    ]


def build_app(index: Any, url: str) -> Any:
    llm = OpenAI(model="gpt-4o-mini", api_base=url, api_key="sk-bench", max_retries=0)
    return index.as_query_engine(llm=llm, similarity_top_k=2)


def evaluators(llm: Any) -> dict[str, Any]:
    return {
        "faithfulness": FaithfulnessEvaluator(llm=llm),
        "relevancy": RelevancyEvaluator(llm=llm),
    }


LATENCY = 0.05


async def sdk_alone(app: Any, url: str, queries: list[str], workers: int) -> None:
    """The app, then each question's two judge requests straight through the SDK."""
    from llama_index.core.evaluation.faithfulness import DEFAULT_EVAL_TEMPLATE as FAITH
    from llama_index.core.evaluation.relevancy import DEFAULT_EVAL_TEMPLATE as RELEVANT
    from openai import AsyncOpenAI, DefaultAioHttpClient

    client = AsyncOpenAI(
        api_key="sk-bench", base_url=url, max_retries=0, http_client=DefaultAioHttpClient()
    )

    async def judge(prompt: str) -> str | None:
        answer = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            temperature=0.0,
        )
        return answer.choices[0].message.content

    async def worker(todo: list[str]) -> None:
        while todo:  # each worker takes one question through the app and both judges
            query = todo.pop()
            response = await app.aquery(query)
            context = "\n\n".join(node.get_content() for node in response.source_nodes)
            await judge(FAITH.format(query_str=str(response), context_str=context))
            relevancy_query = f"Question: {query}\nResponse: {response}"
            await judge(RELEVANT.format(query_str=relevancy_query, context_str=context))

    todo = list(reversed(queries))
    await asyncio.gather(*(worker(todo) for _ in range(workers)))
    await client.close()


def run(kind: str, index: Any, url: str, queries: list[str], workers: int) -> Any:
    app = build_app(index, url)
    if kind == "pytest-rageval, judges without CPU":
        sleepers = {name: SleepOnlyJudge(LATENCY) for name in ("faithfulness", "relevancy")}
        with BatchRunner(sleepers, workers=workers) as runner:
            runner.evaluate_queries(app, queries=queries)
        return None
    if kind == "app + SDK judge requests":
        asyncio.run(sdk_alone(app, url, queries, workers))
        return None
    if kind == "app alone":
        with BatchRunner({}, workers=workers) as runner:
            runner.evaluate_queries(app, queries=queries)
        return None
    if kind in ("pytest-rageval", "pytest-rageval, apredict path"):
        lean.ENABLED = kind == "pytest-rageval"
        try:
            judge, client = judges.default_judge(judges.JudgeSpec("openai", "gpt-4o-mini"), 120)
            with BatchRunner(evaluators(judge), workers=workers) as runner:
                results = runner.evaluate_queries(app, queries=queries)
                runner.runner.submit(client.aclose()).result()
        finally:
            lean.ENABLED = True
        return results
    judge = OpenAI(model="gpt-4o-mini", max_retries=0)
    if kind == "pytest-rageval, judge on httpx":
        with BatchRunner(evaluators(judge), workers=workers) as runner:
            return runner.evaluate_queries(app, queries=queries)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # asyncio_module() is deprecated
        peer = BatchEvalRunner(evaluators(judge), workers=workers)
    return asyncio.run(peer.aevaluate_queries(app, queries=queries))


def verdicts(results: dict[str, list[Any]]) -> dict[str, list[bool | None]]:
    return {name: [r.passing for r in rs] for name, rs in results.items()}


def unjudged(results: Any) -> int:
    """Evaluations without a verdict (errors, invalid answers)."""
    if results is None:
        return 0
    return sum(r.passing is None for rs in results.values() for r in rs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32, 64])
    args = parser.parse_args()

    global LATENCY
    LATENCY = args.latency
    server, url = start_server(args.latency)
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    os.environ["OPENAI_API_BASE"] = url
    try:
        index = VectorStoreIndex.from_documents(
            documents(), embed_model=MockEmbedding(embed_dim=16)
        )
        queries = [f"What property does the volcano {i} have?" for i in range(args.queries)]
        kinds = (
            "app alone",
            "app + SDK judge requests",
            "pytest-rageval, judges without CPU",
            "pytest-rageval",
            "pytest-rageval, apredict path",
            "pytest-rageval, judge on httpx",
            "BatchEvalRunner",
        )
        for kind in kinds:  # warm up imports, tokenizers and the server
            run(kind, index, url, queries[:8], 4)
        bodies_since(server)
        same_bodies = 0
        print(
            f"# {args.queries} queries x (app + faithfulness + relevancy) over HTTP, "
            f"{args.latency * 1000:g} ms a request | python {platform.python_version()} | "
            f"pytest-rageval {pytest_rageval.__version__} | {os.cpu_count()} cores"
        )
        header = (
            "workers",
            "runner",
            "wall s",
            "ideal s",
            "floor s",
            "ratio to floor",
            "CPU ms/call",
            "unjudged",
        )
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for workers in args.workers:
            best: dict[str, float] = {}
            cpu_of: dict[str, float] = {}
            missing: dict[str, int] = {}
            reference = None
            sent: dict[str, str] = {}
            for _ in range(args.repeat):
                for kind in kinds:
                    wall, cpu = time.perf_counter(), time.process_time()
                    results = run(kind, index, url, queries, workers)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    sent[kind] = bodies_since(server)
                    missing[kind] = max(missing.get(kind, 0), unjudged(results))
                    if results is not None and not unjudged(results):
                        if reference is None:
                            reference = verdicts(results)
                        elif verdicts(results) != reference:
                            raise SystemExit(f"{kind} gave different verdicts at {workers} workers")
                    if kind == "pytest-rageval, apredict path":
                        if sent[kind] != sent["pytest-rageval"]:
                            raise SystemExit(
                                f"the lean and apredict paths sent different request bodies "
                                f"at {workers} workers: {sent['pytest-rageval']} against "
                                f"{sent[kind]} (count, sha256 of the sorted bodies)"
                            )
                        same_bodies += int(sent[kind].split()[0])
                    if wall < best.get(kind, float("inf")):
                        best[kind] = wall
                        calls = len(queries) * (1 if kind == "app alone" else 3)
                        cpu_of[kind] = cpu / calls * 1000
            ideal = len(queries) * 3 * args.latency / workers
            floor = max(ideal, best["app alone"])
            for kind in kinds:
                print(
                    f"| {workers} | {kind} | {best[kind]:.2f} | {ideal:.2f} | {floor:.2f} | "
                    f"{best[kind] / floor:.2f}x | {cpu_of[kind]:.2f} | {missing[kind]} |"
                )
            sdk = best["pytest-rageval"] / best["app + SDK judge requests"]
            print(
                f"| {workers} | pytest-rageval / app + SDK judge requests | | | | {sdk:.2f}x | | |"
            )
            speedup = best["BatchEvalRunner"] / best["pytest-rageval"]
            label = f"speed-up over BatchEvalRunner (best of {args.repeat})"
            print(f"| {workers} | {label} | | | | {speedup:.2f}x | | |")
        print(
            f"\nrequest bodies: the lean and apredict paths sent the same {same_bodies:,} "
            f"bodies, byte for byte (sorted, sha256)"
        )
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
