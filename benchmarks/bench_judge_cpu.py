"""CPU per judgement at zero latency: the default judge (llama-index's ``OpenAI`` on the
aiohttp transport) against `tests/openai_server.py` in its own process, answering at once.

Each round judges one question with faithfulness, relevancy and correctness, one after
another, as the runner prepares and awaits them (usage metered). The server runs in
another process, so the CPU counted here is the client's alone. ``--path today`` turns
the lean request path off (llama-index's ``apredict`` -> ``achat`` chain); ``--profile``
prints cProfile's top entries.

    python benchmarks/bench_judge_cpu.py [--rounds 300] [--path lean|today|both]
                                         [--profile] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import time
from typing import Any

from bench_http import start_server

from pytest_rageval import judges, usage

QUERY = "What property does the volcano 7 have?"
RESPONSE = "The volcano 7 has property 49."
CONTEXTS = [
    " ".join(f"Fact {j} about the volcano 7: it has property {49 + j}." for j in range(20)),
    " ".join(f"Fact {j} about the comet 9: it has property {63 + j}." for j in range(20)),
]
REFERENCE = "Property 49."


def set_path(path: str) -> None:
    """Turn the lean path on or off (off: every judge takes llama-index's chain)."""
    from pytest_rageval import lean

    lean.ENABLED = path == "lean"


async def judge_rounds(evaluators: dict[str, Any], rounds: int) -> list[Any]:
    results = []
    for _ in range(rounds):
        for evaluator in evaluators.values():
            call = judges.prepare(
                evaluator, query=QUERY, response=RESPONSE, contexts=CONTEXTS, reference=REFERENCE
            )
            meter = usage.Meter()
            token = usage.metering(meter)
            try:
                results.append(await call())
            finally:
                usage.reset(token)
    return results


def measure(rounds: int, profile: bool, top: int) -> tuple[float, list[Any]]:
    """CPU ms per judgement over ``rounds`` (after a warm-up), and the verdicts."""

    async def main() -> tuple[float, list[Any], str]:
        llm, client = judges.default_judge(judges.JudgeSpec("openai", "gpt-4o-mini"), 30)
        evaluators = judges.default_evaluators(llm)
        judges.warm_up(evaluators)
        await judge_rounds(evaluators, 20)
        profiler = cProfile.Profile() if profile else None
        cpu = time.process_time()
        if profiler is not None:
            profiler.enable()
        results = await judge_rounds(evaluators, rounds)
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - cpu
        await client.aclose()
        text = ""
        if profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs()
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(top)
            text = out.getvalue()
        return cpu / (rounds * len(evaluators)) * 1000, results, text

    per_call, results, text = asyncio.run(main())
    if text:
        print(text)
    return per_call, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--path", choices=("lean", "today", "both"), default="both")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    server, url = start_server(0.0)
    os.environ["OPENAI_API_KEY"] = "sk-bench"
    os.environ["OPENAI_API_BASE"] = url
    try:
        paths = ("today", "lean") if args.path == "both" else (args.path,)
        verdicts = {}
        for path in paths:
            set_path(path)
            per_call, results = measure(args.rounds, args.profile, args.top)
            verdicts[path] = [(r.passing, r.score, r.feedback) for r in results]
            print(f"{path}: {per_call:.3f} CPU ms per judgement ({args.rounds} rounds x 3)")
        if len(verdicts) == 2 and verdicts["today"] != verdicts["lean"]:
            raise SystemExit("the two paths gave different verdicts")
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
